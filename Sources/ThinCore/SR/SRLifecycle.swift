import FoundationEssentials
import ThinLVM
import ThinTools

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
    /// detached SR is found too), with the SR lock held, and opened when it is
    /// attached (the AttachedSR then holds the lock; else the caller does).
    func locate(_ reference: String) throws(ThinError) -> (LocatedSR, FileLock) {
        let (sr, lock) = try lockedFind(reference)
        guard sr.attached else { return (.detached(sr), lock) }
        return (.attached(try AttachedSR.open(sr.names, for: .write, lock: lock, host: host), sr), lock)
    }

    /// Finds the SR `reference` names with its SR lock held, as LVM shows it
    /// once the lock is held: every lifecycle operation runs alone on its SR.
    func lockedFind(_ reference: String) throws(ThinError) -> (DiscoveredSR, FileLock) {
        if let uuid = UUID(uuidString: reference) {
            let lock = try FileLock(path: SRNames(uuid: uuid).lockFile)
            return (try discovery.find(reference), lock)
        }
        // A name: find its uuid, lock, then look again (it may have changed meanwhile).
        let names = try discovery.find(reference).names
        let lock = try FileLock(path: names.lockFile)
        return (try discovery.find(names.uuidString), lock)
    }

    /// Unmounts the SR's catalog once no reader has it open: readers hold
    /// the readers lock shared, so this waits for them rather than failing
    /// with EBUSY, and readers that come later find the SR detached.
    func unmountCatalog(_ names: SRNames) throws(ThinError) {
        let barrier = try FileLock(path: names.readersLockFile, mode: .exclusive)
        defer { barrier.release() }
        try host.system.unmount(names.catalogMount)
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
        if host.system.isMounted(names.catalogMount) { try unmountCatalog(names) }
        try unmountCatalogCopy(names)
        System.removeDirectory(names.catalogMount)
        SRMetrics.remove(names)   // a detached SR has none; a host that crashed while attached may have left one
        System.removeDirectory(names.runDirectory)
        if sr.volumeGroup == names.ownVolumeGroup { return try removeOwnVolumeGroup(sr.volumeGroup) }
        // The catalog LV goes last: a destroy killed half way leaves an SR
        // with its catalog, which the next destroy counts and finishes.
        let catalog = sr.volumes[.catalog]?.name
        do {
            try host.lvm.removeLogicalVolumes(group: sr.volumeGroup,
                                              names: (sr.volumes.values.map(\.name) + sr.rawVolumes.map(\.name))
                                                .filter { $0 != catalog }.sorted())
            FaultInjection.point("volumes-removed")
            if let catalog { try host.lvm.removeLogicalVolumes(group: sr.volumeGroup, names: [catalog]) }
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

    /// mkfs.ext4 of the catalog's or its copy's LV (`what` names it in the error).
    func formatCatalogFilesystem(_ device: String, _ what: String) async throws(ThinError) {
        do { try await host.programs.makeCatalogFilesystem(device: device) } catch {
            throw .backend("mkfs.ext4 on the \(what) failed", error)
        }
    }

    /// Mounts the catalog copy's LV (a mount a killed detach left goes first); the undo unmounts it.
    func mountCatalogCopy(_ device: String, names: SRNames, undo: inout UndoStack) throws(ThinError) {
        try unmountCatalogCopy(names)
        try host.system.mount(device: device, at: names.catalogCopyMount, type: "ext4", readOnly: false)
        undo.push { try? unmountCatalogCopy(names) }
    }

    /// Unmounts the catalog copy if it is mounted. Only writers, which hold
    /// the SR lock, ever open it, so nothing else can hold it busy.
    func unmountCatalogCopy(_ names: SRNames) throws(ThinError) {
        if host.system.isMounted(names.catalogCopyMount) { try host.system.unmount(names.catalogCopyMount) }
        System.removeDirectory(names.catalogCopyMount)
    }

    /// Mounts the catalog LV at the SR's catalog mount; the undo unmounts it.
    func mountCatalog(_ device: String, names: SRNames, undo: inout UndoStack) throws(ThinError) {
        try host.system.mount(device: device, at: names.catalogMount, type: "ext4", readOnly: false)
        FaultInjection.point("catalog-mounted")
        undo.push {
            try? unmountCatalog(names)
            System.removeDirectory(names.catalogMount)
            System.removeDirectory(names.runDirectory)
        }
    }
}
