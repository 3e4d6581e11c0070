import FoundationEssentials

/// Disk image formats, all read and written by qemu-img (thinsr only inspects their headers).
public enum ImageFormat: String, CaseIterable, Sendable {
    case raw, qcow2, vpc, vmdk, vhdx

    /// What `thinvdi-export` writes (qemu-img cannot create vhdx from a stream of extents as cheaply; import reads it).
    public static let exportable: [ImageFormat] = [.raw, .qcow2, .vpc, .vmdk]

    /// Formats with a backing file qemu-img can write: an incremental export needs one.
    public var takesBackingFile: Bool { self == .qcow2 || self == .vmdk }

    /// Formats whose allocation qemu-img map reports (its vhdx driver has no block status).
    public var reportsAllocation: Bool { self != .vhdx }

    /// Formats `qemu-img check` can verify before an import reads them.
    var checkable: Bool { self == .qcow2 || self == .vmdk || self == .vhdx }

    /// qemu-img's creation options: a VHD keeps the exact size (not one
    /// rounded to a CHS geometry), so it compares equal to the volume.
    public var creationOptions: [String] { self == .vpc ? ["-o", "force_size=on"] : [] }
}

/// What `qemu-img info` says about an image.
public struct ImageInfo: Sendable, Equatable {
    public var format: String
    public var virtualSize: UInt64
    public var fileSize: UInt64
    public var backingFile: String?
}

/// qemu-img's view of image files: their format and size, their allocated
/// data, their consistency.
public enum DiskImages {
    private struct InfoJSON: Decodable {
        var format: String
        var virtualSize: UInt64
        var actualSize: UInt64?
        var backingFilename: String?
        enum CodingKeys: String, CodingKey {
            case format, virtualSize = "virtual-size", actualSize = "actual-size", backingFilename = "backing-filename"
        }
    }

    private struct MapEntry: Decodable {
        var start: UInt64
        var length: UInt64
        var data: Bool
        var zero: Bool
    }

    /// The image's virtual size and qemu's name for its format. The image
    /// was inspected first: qemu opens it with its format named, never probed.
    public static func info(_ image: InspectedImage) async throws(ExternalCommandError) -> ImageInfo {
        let arguments = ["info", "--output=json"] + image.qemuInfoSource
        let output = try await ExternalCommand.check(Program.qemuImage, arguments)
        let parsed: InfoJSON
        do { parsed = try JSONDecoder().decode(InfoJSON.self, from: Data(output.utf8)) } catch {
            throw ExternalCommandError(program: Program.qemuImage.name, arguments: arguments, exitStatus: 0,
                                       standardError: "unreadable qemu-img info output: \(error)")
        }
        return ImageInfo(format: parsed.format, virtualSize: parsed.virtualSize, fileSize: parsed.actualSize ?? 0,
                         backingFile: parsed.backingFilename)
    }

    /// The bytes of the image's virtual disk that hold data (zero clusters
    /// and holes excluded): what an import provisions at most.
    public static func allocatedBytes(_ image: InspectedImage) async throws(ExternalCommandError) -> UInt64 {
        try await map(image).filter { $0.data && !$0.zero }.reduce(0) { $0 + $1.length }
    }

    /// The byte ranges of the image's virtual disk that read as zeros
    /// (holes and zero clusters; not what a backing file provides).
    public static func zeroRanges(_ image: InspectedImage) async throws(ExternalCommandError) -> [Range<UInt64>] {
        try await map(image).filter(\.zero).map { $0.start..<($0.start + $0.length) }
    }

    private static func map(_ image: InspectedImage) async throws(ExternalCommandError) -> [MapEntry] {
        let arguments = ["map", "--output=json"] + image.qemuSource
        let result = try await ExternalCommand.run(Program.qemuImage, arguments, outputLimit: 256 << 20)
        guard result.exitStatus == 0 else {
            throw ExternalCommandError(program: Program.qemuImage.name, arguments: arguments, exitStatus: result.exitStatus,
                                       standardError: result.standardError)
        }
        let entries: [MapEntry]
        do { entries = try JSONDecoder().decode([MapEntry].self, from: Data(result.standardOutput.utf8)) } catch {
            throw ExternalCommandError(program: Program.qemuImage.name, arguments: arguments, exitStatus: 0,
                                       standardError: "unreadable qemu-img map output: \(error)")
        }
        return entries
    }

    /// `qemu-img check` for formats that have one: nil when the image is
    /// consistent (leaked clusters only waste space), else what is wrong.
    public static func problem(_ image: InspectedImage) async throws(ExternalCommandError) -> String? {
        guard image.format.checkable else { return nil }
        let result = try await ExternalCommand.run(Program.qemuImage, ["check"] + image.qemuSource)
        switch result.exitStatus {
        case 0, 3: return nil
        default:
            let lines = (result.standardError + "\n" + result.standardOutput).split(separator: "\n")
            let detail = lines.first { $0.contains("ERROR") || $0.contains("rror") || $0.contains("corrupt") } ?? lines.first
            return detail.map(String.init) ?? "qemu-img check exited with status \(result.exitStatus)"
        }
    }
}
