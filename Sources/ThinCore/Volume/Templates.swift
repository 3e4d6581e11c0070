import FoundationEssentials
import ThinDeviceMapper
public import ThinTools

/// Templates: read-only images named by URI that clones read.
public struct SRTemplates: SRConcern {
    let sr: AttachedSR
}

/// Templates: read-only images that live elsewhere, named by URI. A
/// template's row holds a real, empty thin device that is never activated;
/// a clone or snapshot of it is `create_snap` of that device (as LVM's
/// `lvcreate -s --thinpool P ExternalLV`), attached with the image as its
/// external origin, so it reads the image where it has no block of its own.
extension SRTemplates {
    /// Registers the image at `uri` (its format read from its header by
    /// thinsr unless given; only self-contained images) as a template. The URI is resolved once to check that it
    /// names an image of that format and to read its size, then released.
    public func introduceTemplate(uri: String, name: String?, description: String,
                                  format: ImageFormat?) async throws(ThinError) -> VolumeRecord {
        guard !uri.isEmpty, !uri.contains(where: \.isNewline) else { throw .invalid("give the template's URI") }
        _ = try SchemeScripts.script(for: uri)
        let label = name ?? Self.templateName(uri)
        try Naming.validateLabel(label, what: "template name")
        try Naming.validateLabel(description, what: "template description")
        let usage = try sr.recovered()
        try SpaceReserve.requireRoomForNewDevice(usage, sr: names)
        let image = try await SchemeScripts.attach(uri)
        let inspected: InspectedImage
        let info: ImageInfo
        do {
            inspected = try ImageInspector.inspect(image, declared: format, what: uri)
            info = try await DiskImages.info(inspected)
        } catch let refusal as ImageRefusal {
            SchemeScripts.detach(uri, path: image)
            throw .invalid(refusal.message)
        } catch {
            SchemeScripts.detach(uri, path: image)
            throw .invalid("\(uri) is not \(format.map { "a \($0.rawValue)" } ?? "a disk") image: "
                           + messageLine((error as? ExternalCommandError)?.standardError ?? "\(error)"))
        }
        SchemeScripts.detach(uri, path: image)
        let detected = inspected.format
        guard info.virtualSize > 0, info.virtualSize % 512 == 0 else {
            throw .invalid("\(uri)'s disk is \(info.virtualSize) bytes, not a positive multiple of 512; a template's "
                           + "disk is a whole number of sectors")
        }
        try VolumeRecord.requireSize(info.virtualSize)
        return try sr.volumes.insertWithNewThinDevice(label: label) { key, thinID in
            var template = VolumeRecord(
                uuid: UUID(), key: key, name: label,
                description: description, thinID: thinID, virtualSize: info.virtualSize, kind: .template,
                readWrite: false, sharable: false, createdAt: System.currentTime(), keys: [:], parentUUID: nil,
                snapshotOf: nil, state: .creating)
            template.templateURI = uri
            template.templateFormat = detected.rawValue
            return template
        }
    }

    /// Deregisters a template: refused while a volume still reads its image
    /// (hydrated volumes no longer do). Its image is never touched.
    public func forgetTemplate(_ reference: String) throws(ThinError) {
        try sr.recovered()
        let template = try sr.requireVolume(reference, allowingTemplate: true)
        guard template.isTemplate else {
            throw .invalid("\(template.key) is a \(template.kind.rawValue), not a template; destroy it with "
                           + "thinvdi-destroy")
        }
        let dependents = try catalog.dependents(ofTemplate: template.uuid)
        guard dependents.isEmpty else {
            let listed = dependents.prefix(5).joined(separator: ", ") + (dependents.count > 5 ? ", ..." : "")
            throw ThinError(.volumeInUse, "template \(template.key) is still read by \(dependents.count) volume(s) "
                            + "(\(listed)); hydrate them with thinvdi-hydrate or destroy them first",
                            parameters: [template.key] + dependents)
        }
        origins.releaseIfUnused(template.uuid)
        try sr.transact([.delete(template.thinID)]) { catalog throws(ThinError) in
            try catalog.setState(.destroying, volume: template.uuid)
        }
    }

    /// A name from the URI's last path element (`debian-12.qcow2`).
    static func templateName(_ uri: String) -> String {
        let path = uri.split(separator: "?").first.map(String.init) ?? uri
        let last = path.split(separator: "/").last.map(String.init) ?? ""
        let name = last.filter { $0.isLetter || $0.isNumber || "._+-".contains($0) }
        return name.isEmpty || last.contains(":") ? "template" : name
    }
}
