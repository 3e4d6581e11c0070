import FoundationEssentials
import ThinLVM

/// The operations on whole SRs: create, attach, detach, destroy, check and
/// list. Operations inside an attached SR are `AttachedSR`'s.
public struct SRLifecycle: Sendable {
    let host: Host

    public init(host: Host = .live) { self.host = host }

    var discovery: Discovery { Discovery(host: host) }

    /// An SR as LVM shows it, opened when it is attached here.
    enum LocatedSR {
        case attached(AttachedSR, DiscoveredSR)
        case detached(DiscoveredSR)
    }

    /// The one way lifecycle operations find an SR: by its LVM tags (so a
    /// detached SR is found too), opened with `access` when it is attached.
    func locate(_ reference: String, for access: SRAccess) throws(ThinError) -> LocatedSR {
        let sr = try discovery.find(reference)
        guard sr.attached else { return .detached(sr) }
        return .attached(try AttachedSR.open(sr.names, for: access, host: host), sr)
    }

    /// Every SR this host can see, attached or not.
    public func list() throws(ThinError) -> [DiscoveredSR] {
        let physicalVolumes: [PhysicalVolumeReport]
        do { physicalVolumes = try host.lvm.physicalVolumes() } catch { throw .backend("pvs failed", error) }
        return try discovery.all().map { sr in
            var sr = sr
            sr.devices = physicalVolumes.filter { $0.volumeGroup == sr.volumeGroup }.map(\.device).sorted()
            return sr
        }
    }

    /// Removes an SR's LVs (and, if it owns them, its VG and the devices'
    /// labels); an incomplete SR's pool and catalog mount go first.
    func removeStorage(_ sr: DiscoveredSR) throws(ThinError) {
        let names = sr.names
        try Pool(names: names, deviceMapper: host.deviceMapper).disassemble()
        if host.system.isMounted(names.catalogMount) { try host.system.unmount(names.catalogMount) }
        System.removeDirectory(names.catalogMount)
        System.removeDirectory(names.runDirectory)
        if sr.volumeGroup == names.ownVolumeGroup { return try removeOwnVolumeGroup(sr.volumeGroup) }
        do {
            try host.lvm.removeLogicalVolumes(group: sr.volumeGroup, names: sr.volumes.values.map(\.name).sorted())
        } catch {
            throw .backend("removing the LVs of SR \(names.uuidString) failed", error)
        }
    }

    /// Removes a VG an own-the-world SR made, and the LVM labels of its devices.
    func removeOwnVolumeGroup(_ group: String) throws(ThinError) {
        do {
            let devices = try host.lvm.physicalVolumes().filter { $0.volumeGroup == group }.map(\.device)
            try host.lvm.removeVolumeGroup(group)
            FaultInjection.point("volume-group-removed")
            try host.lvm.removePhysicalVolumes(devices)
        } catch {
            throw .backend("removing volume group \(group) failed", error)
        }
    }

    /// Mounts the catalog LV at the SR's catalog mount; the undo unmounts it.
    func mountCatalog(_ device: String, names: SRNames, undo: inout UndoStack) throws(ThinError) {
        try host.system.mount(device: device, at: names.catalogMount, type: "ext4", readOnly: false)
        FaultInjection.point("catalog-mounted")
        let system = host.system
        undo.push {
            try? system.unmount(names.catalogMount)
            System.removeDirectory(names.catalogMount)
            System.removeDirectory(names.runDirectory)
        }
    }

    /// The lock files exist from the start, so no operation adds a file to the catalog volume.
    static func createLockFiles(_ names: SRNames) throws(ThinError) {
        try FileLock(path: names.lockFile).release()
        try FileLock(path: names.metadataSnapshotLockFile).release()
    }
}
