import ThinTools

/// A disk image format as the tools name it (`--format`): the core's own
/// word for qemu-img's formats, so the tools need not see ThinTools.
public enum DiskFormat: String, CaseIterable, Sendable {
    case raw, qcow2, vpc, vmdk, vhdx

    /// Formats with a backing file qemu-img can write: an incremental export needs one.
    public var takesBackingFile: Bool { image.takesBackingFile }

    var image: ImageFormat { ImageFormat(rawValue: rawValue)! }
}

extension SRTemplates {
    /// `introduceTemplate` with the format as the tools name it.
    public func introduceTemplate(uri: String, name: String?, description: String,
                                  declaredFormat format: DiskFormat?) async throws(ThinError) -> VolumeRecord {
        try await introduceTemplate(uri: uri, name: name, description: description, format: format?.image)
    }
}
