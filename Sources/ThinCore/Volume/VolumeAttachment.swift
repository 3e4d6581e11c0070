import FoundationEssentials
import ThinDeviceMapper

/// Volumes as block devices: attach, detach, and who holds each.
public struct SRAttachments: SRConcern {
    let sr: AttachedSR
}

/// Attaching and detaching volumes as block devices.
extension SRAttachments {
    /// Attaches a volume and returns it with its device path. With `inactive`
    /// only the device node is made (see `VolumeDevices.createNode`); a later
    /// attach without it loads the table. Attaching an attached volume in the
    /// same mode succeeds and changes nothing.
    /// A volume over a template's image brings that image up first (see
    /// `TemplateOrigins`); a failed activation releases it again.
    public func attachVolume(_ reference: String, readOnly: Bool,
                             inactive: Bool = false) async throws(ThinError) -> (VolumeRecord, path: String) {
        try sr.recovered()
        return try await attach(try sr.requireVolume(reference), readOnly: readOnly, inactive: inactive)
    }

    /// Attaches the volume a caller resolved after recovery (see `attachVolume`).
    func attach(_ volume: VolumeRecord, readOnly: Bool,
                inactive: Bool = false) async throws(ThinError) -> (VolumeRecord, path: String) {
        try sr.recovered()
        try volume.requireData(to: "be attached")
        try volume.requireNotImporting(to: "be attached")
        let readOnly = readOnly || !volume.readWrite
        guard let info = try devices.info(volume.uuid) else {
            if inactive || volume.virtualSize == 0 {
                let path = try devices.createNode(volume)
                return (volume, path)
            }
            return (volume, try await withOrigin(of: volume) { () throws(ThinError) in
                try devices.activate(volume, readOnly: readOnly)
            })
        }
        guard try !devices.isInactive(volume.uuid, info: info) else {
            if !inactive {
                try await withOrigin(of: volume) { () throws(ThinError) in try devices.load(volume, readOnly: readOnly, try sr.devicesRecovered()) }
            }
            return (volume, try devices.link(volume))
        }
        // An attached volume over an image that stopped answering is read again from a fresh one.
        if let template = volume.originTemplate, !inactive { _ = try await origins.bringUp(try sr.requireTemplate(template), try sr.devicesRecovered()) }
        guard inactive || info.readOnly == readOnly else {
            let mode = info.readOnly ? "read-only" : "read-write"
            throw ThinError(.volumeInUse, "volume \(volume.key) is already attached \(mode); detach it first "
                            + "to attach it \(readOnly ? "read-only" : "read-write")", parameters: [volume.key])
        }
        return (volume, try devices.link(volume))
    }

    /// Detaches a volume for every holder; detaching a detached volume succeeds.
    public func detachVolume(_ reference: String) throws(ThinError) {
        try detach(try sr.requireVolume(reference))
    }

    func detach(_ volume: VolumeRecord) throws(ThinError) {
        try deactivate(volume)
        holders(of: volume).clear()
    }

    /// Removes the volume's device, then its template's origin if no other
    /// device reads it. A hydration of it (copy-on-read above all) stops
    /// first: what it copied stays, and `thinvdi-hydrate` resumes it.
    func deactivate(_ volume: VolumeRecord) throws(ThinError) {
        try sr.mirrors.endForDetach(of: volume, holder: nil)
        // Servers of the device (thinvdi-serve --holder) end first: each flushes it and closes it.
        stopServers(of: volume)
        if volume.hydrateOwner != nil, try devices.info(volume.uuid) != nil {
            try sr.tearDownHydration(volume, dropOrigin: false)
        }
        try devices.deactivate(volume.uuid, key: volume.key)
        if let template = volume.originTemplate { origins.releaseIfUnused(template) }
    }

    /// Runs `body` (which loads the volume's table) with its template's
    /// origin up; if `body` fails, an origin nothing else reads is released.
    private func withOrigin<T>(of volume: VolumeRecord, _ body: () throws(ThinError) -> T) async throws(ThinError) -> T {
        guard let template = volume.originTemplate else { return try body() }
        _ = try await origins.bringUp(try sr.requireTemplate(template), try sr.devicesRecovered())
        do { return try body() } catch {
            origins.releaseIfUnused(template)
            throw error
        }
    }
}
