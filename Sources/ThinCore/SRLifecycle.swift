public import FoundationEssentials
import ThinDeviceMapper
import ThinLVM
import ThinTools

/// What `thinsr-create` is asked to make.
public struct SRCreateRequest: Sendable {
    public enum Placement: Sendable {
        /// Own the world: pvcreate and vgcreate on these raw devices.
        case devices([String])
        /// Be nice: live in this existing VG, beside LVs that are not ours.
        case volumeGroup(String)
    }

    public var uuid: UUID?
    public var name: String
    public var description: String
    public var placement: Placement
    public var poolBytes: UInt64?
    public var blockBytes: UInt64?
    public var metadataBytes: UInt64?
    public var onFull: OnFullPolicy

    public init(uuid: UUID?, name: String, description: String, placement: Placement, poolBytes: UInt64?,
                blockBytes: UInt64?, metadataBytes: UInt64? = nil, onFull: OnFullPolicy = .queue) {
        self.metadataBytes = metadataBytes
        self.onFull = onFull
        self.uuid = uuid
        self.name = name
        self.description = description
        self.placement = placement
        self.poolBytes = poolBytes
        self.blockBytes = blockBytes
    }
}

public enum SRLifecycle {
    public static let catalogBytes: UInt64 = 64 << 20
    public static let defaultBlockBytes: UInt64 = 64 << 10
    /// Metadata is sized for this many thin devices (volumes, snapshots and
    /// clones): 1,000 per GiB of VG, between 10,000 and 100,000, so a small SR
    /// does not spend most of its space on metadata it cannot use.
    static func plannedThins(vgBytes: UInt64) -> UInt64 {
        min(max(vgBytes / (1 << 30) * 1000, 10_000), 100_000)
    }
    /// dm-thin uses at most ~15.9 GiB of metadata; LVM caps at 15.81 GiB.
    public static let maximumMetadataBytes: UInt64 = 16_189 << 20
    static let minimumMetadataBytes: UInt64 = 8 << 20
    /// The smallest metadata `--metadata-size` accepts (as lvcreate's --poolmetadatasize).
    static let smallestMetadataBytes: UInt64 = 2 << 20

    /// Metadata for a pool that may grow to `vgBytes`, from `thin_metadata_size`.
    static func plannedMetadataBytes(vgBytes: UInt64, blockBytes: UInt64) async throws(ThinError) -> UInt64 {
        let metadata: UInt64
        do {
            metadata = try await ThinTools.metadataSize(blockBytes: blockBytes, poolBytes: vgBytes,
                                                        maximumThins: plannedThins(vgBytes: vgBytes))
        } catch {
            throw .backend("thin_metadata_size failed", error)
        }
        return min(max(metadata, minimumMetadataBytes), maximumMetadataBytes)
    }

    // MARK: create

    public static func create(_ request: SRCreateRequest) async throws(ThinError) -> SRRecord {
        try System.requireRoot("thinsr-create")
        try Naming.validateLabel(request.name, what: "SR name", maximumBytes: TagText.maximumBytes)
        try Naming.validateLabel(request.description, what: "SR description")
        let blockBytes = request.blockBytes ?? defaultBlockBytes
        guard ThinPoolTable.isValidBlockSize(sectors: blockBytes / 512), blockBytes % 512 == 0 else {
            throw .invalid("block size \(ByteSize.format(blockBytes)) is invalid; use a multiple of 64K between 64K and 1G")
        }
        if let metadataBytes = request.metadataBytes,
           !(smallestMetadataBytes...maximumMetadataBytes).contains(metadataBytes) {
            throw .invalid("metadata size \(ByteSize.format(metadataBytes)) is out of range; give 2M to 15G")
        }
        if let poolBytes = request.poolBytes, poolBytes < blockBytes {
            throw .invalid("pool size \(poolBytes) is smaller than one block (\(ByteSize.format(blockBytes)))")
        }
        let uuid = request.uuid ?? UUID()
        let names = SRNames(uuid: uuid)
        // A create of this uuid that was interrupted left an incomplete SR:
        // remove it and start again, so the retry makes the SR entirely.
        if let existing = try Discovery.all().first(where: { $0.uuid == uuid }) {
            guard existing.isIncomplete else {
                throw .invalid("an SR with uuid \(names.uuidString) already exists")
            }
            try removeStorage(existing)
        }
        if case .devices = request.placement {
            let groups: [VolumeGroupReport]
            do { groups = try LVM.shared.volumeGroups() } catch { throw ThinError.backend("vgs failed", error) }
            if let group = groups.first(where: { $0.name == names.ownVolumeGroup }), group.tags.contains(names.srTag) {
                try removeOwnVolumeGroup(group.name)
            }
        }

        var undo = UndoStack()
        do throws(ThinError) {
            let group: String
            let mode: SRMode
            switch request.placement {
            case .devices(let devices):
                try await DeviceChecks.validateFreeDevices(devices)
                group = names.ownVolumeGroup
                mode = .ownTheWorld
                // vgcreate labels the devices itself: one step, not two.
                do { try LVM.shared.createVolumeGroup(group, devices: devices, tags: [names.srTag]) } catch {
                    throw ThinError.backend("vgcreate failed", error)
                }
                undo.push {
                    try? LVM.shared.removeVolumeGroup(group)
                    try? LVM.shared.removePhysicalVolumes(devices)
                }
                FaultInjection.point("volume-group-created")
            case .volumeGroup(let vg):
                guard request.poolBytes != nil else {
                    throw ThinError.invalid("--vg needs --pool-size: a be-nice SR takes only the space it is given")
                }
                guard LVMNames.isValidVGName(vg) else { throw ThinError.invalid("\"\(vg)\" is not a valid VG name") }
                group = vg
                mode = .beNice
            }
            let vgReports: [VolumeGroupReport]
            do { vgReports = try LVM.shared.volumeGroups() } catch { throw ThinError.backend("vgs failed", error) }
            guard let vg = vgReports.first(where: { $0.name == group }) else {
                throw ThinError.invalid("volume group \"\(group)\" does not exist; create it with vgcreate or use --device")
            }
            let layout = try await plan(vg: vg, mode: mode, poolBytes: request.poolBytes, blockBytes: blockBytes,
                                        metadataBytes: request.metadataBytes)

            let roleSizes: [(role: String, lv: String, bytes: UInt64)] = [
                ("catalog", names.catalogLV, catalogBytes), ("meta", names.metadataLV, layout.metadataBytes),
                ("spare", names.spareLV, layout.metadataBytes), ("data", names.dataLV, layout.dataBytes),
            ]
            for (role, lv, bytes) in roleSizes {
                var tags = [names.srTag, SRNames.roleTag(role)]
                if role == "catalog" {
                    tags += [SRNames.modeTagPrefix + mode.rawValue, SRNames.incompleteTag]
                    if !request.name.isEmpty { tags.append(SRNames.nameTagPrefix + TagText.encode(request.name)) }
                }
                do { try LVM.shared.createLinearVolume(group: group, name: lv, sizeBytes: bytes, tags: tags) } catch {
                    throw ThinError.backend("lvcreate of the SR's \(role) volume failed", error)
                }
                if mode == .beNice { undo.push { try? LVM.shared.removeLogicalVolumes(group: group, names: [lv]) } }
                FaultInjection.point("\(role)-volume-created")
            }
            let metadataPath = mapperPath(group, names.metadataLV)
            let dataPath = mapperPath(group, names.dataLV)
            let catalogPath = mapperPath(group, names.catalogLV)
            try DirectIO.zero(device: metadataPath)
            try DirectIO.zero(device: mapperPath(group, names.spareLV))
            FaultInjection.point("metadata-zeroed")
            do {
                try await ExternalCommand.check("mkfs.ext4", ["-q", "-F", "-L", "thinsr-catalog", "-E",
                                                              "lazy_itable_init=0,lazy_journal_init=0", catalogPath])
            } catch {
                throw ThinError.backend("mkfs.ext4 on the catalog volume failed", error)
            }
            FaultInjection.point("catalog-formatted")
            try Mounts.mount(device: catalogPath, at: names.catalogMount, type: "ext4", readOnly: false)
            FaultInjection.point("catalog-mounted")
            undo.push {
                try? Mounts.unmount(names.catalogMount)
                System.removeDirectory(names.catalogMount)
                System.removeDirectory(names.runDirectory)
            }
            let record = SRRecord(uuid: uuid, name: request.name, description: request.description, mode: mode,
                                  volumeGroup: group, blockSizeBytes: blockBytes, transactionID: 0, nextThinID: 1,
                                  createdAt: System.currentTime(), onFull: request.onFull)
            let catalog = try Catalog.create(path: names.catalogDatabase, record: record)
            undo.push { catalog.database.close() }
            // The lock files exist from the start, so the first operation adds no file to the catalog volume.
            try FileLock(path: names.lockFile).release()
            try FileLock(path: names.metadataSnapshotLockFile).release()
            FaultInjection.point("catalog-written")
            let pool = Pool(names: names)
            let dataLVBytes = layout.dataBytes
            try pool.assemble(metadataDevice: metadataPath, dataDevice: dataPath, dataBytes: dataLVBytes,
                              blockBytes: blockBytes, onFull: request.onFull)
            undo.push { try? pool.disassemble() }
            FaultInjection.point("pool-assembled")
            let usage = try pool.usage()
            guard usage.transactionID == 0, usage.usedDataBlocks == 0 else {
                throw ThinError(.backendFailure, "the new pool's metadata is not empty (transaction id "
                                + "\(usage.transactionID)); was the metadata device zeroed?")
            }
            do {
                try LVM.shared.retag(group: group, name: names.catalogLV, remove: [SRNames.incompleteTag], add: [])
            } catch {
                throw ThinError.backend("cannot mark the SR complete", error)
            }
            undo.discard()
            catalog.database.close()
            return record
        } catch {
            undo.run()
            throw error
        }
    }

    struct Layout { var metadataBytes: UInt64; var dataBytes: UInt64 }

    /// Sizes metadata for the largest the pool could grow to (the whole VG) and
    /// the data LV as asked, or 90% of what is left in an own-the-world VG.
    static func plan(vg: VolumeGroupReport, mode: SRMode, poolBytes: UInt64?, blockBytes: UInt64,
                     metadataBytes: UInt64? = nil) async throws(ThinError) -> Layout {
        let extent = max(vg.extentBytes, 512)
        var metadata = try await plannedMetadataBytes(vgBytes: vg.sizeBytes, blockBytes: blockBytes)
        if let metadataBytes {
            guard (smallestMetadataBytes...maximumMetadataBytes).contains(metadataBytes) else {
                throw .invalid("metadata size \(ByteSize.format(metadataBytes)) is out of range; give 2M to 15G")
            }
            metadata = metadataBytes
        }
        metadata = ByteSize.roundUp(metadata, to: extent)
        let overhead = catalogBytes + 2 * metadata
        guard vg.freeBytes > overhead else {
            throw ThinError(.noSpace, "volume group \(vg.name) has \(ByteSize.format(vg.freeBytes)) free; the SR "
                            + "needs \(ByteSize.format(overhead)) for its catalog and metadata before any data")
        }
        let available = (vg.freeBytes - overhead) / extent * extent
        var data: UInt64
        if let poolBytes {
            data = ByteSize.roundUp(ByteSize.roundUp(poolBytes, to: blockBytes), to: extent)
            guard data <= available else {
                throw ThinError(.noSpace, "pool size \(ByteSize.format(poolBytes)) does not fit: volume group "
                                + "\(vg.name) has \(ByteSize.format(available)) left after catalog and metadata")
            }
        } else {
            data = available / 10 * 9 / extent * extent
        }
        data = data / blockBytes * blockBytes
        guard data >= blockBytes else {
            throw ThinError(.noSpace, "volume group \(vg.name) leaves no room for pool data")
        }
        return Layout(metadataBytes: metadata, dataBytes: data)
    }

    static func mapperPath(_ group: String, _ lv: String) -> String {
        let escape = { (text: String) in text.split(separator: "-", omittingEmptySubsequences: false).joined(separator: "--") }
        return "/dev/mapper/\(escape(group))-\(escape(lv))"
    }

    // MARK: attach

    /// Attaches the SR: activates its LVs, checks the pool metadata, mounts the
    /// catalog, assembles the pool and settles any open transaction. Attaching
    /// an attached SR succeeds and changes nothing.
    public static func attach(_ reference: String, takeOver: Bool = false) async throws(ThinError) -> SRRecord {
        try System.requireRoot("thinsr-attach")
        var sr = try Discovery.find(reference)
        let names = sr.names
        do {
            try sr.requireOwned()
        } catch where error.code == .activatedOnAnotherHost && takeOver {
            let local: String
            do { local = try LVM.shared.localSystemID() } catch { throw .backend("cannot read this host's LVM system ID", error) }
            guard !local.isEmpty else {
                throw ThinError(.invalidArgument, "this host has no LVM system ID to take SR \(names.uuidString) over "
                                + "with; set system_id_source in lvm.conf (see lvmsystemid(7))")
            }
            do { try LVM.shared.takeOver(group: sr.volumeGroup, from: sr.owner, to: local) } catch {
                throw .backend("taking over VG \(sr.volumeGroup) failed", error)
            }
            sr = try Discovery.find(names.uuidString)
        }
        if sr.attached {
            if try Pool(names: names).exists() {
                let attached = try AttachedSR.open(names.uuidString, exclusive: false)
                defer { attached.close() }
                return try attached.record
            }
            // A catalog left mounted without its pool (an interrupted attach or
            // detach): start the attach again from the beginning.
            try Mounts.unmount(names.catalogMount)
        }
        guard !sr.isIncomplete || !sr.isComplete else {
            throw ThinError(.catalogInconsistent, "SR \(names.uuidString) was not completely created (thinsr-create "
                            + "was interrupted); run thinsr-create --uuid \(names.uuidString) again, or remove it "
                            + "with thinsr-destroy \(names.uuidString)")
        }
        guard sr.isComplete else {
            throw ThinError(.catalogInconsistent, "SR \(names.uuidString) in VG \(sr.volumeGroup) is missing some "
                            + "of its LVs (has: \(sr.volumes.keys.sorted().joined(separator: ", ")))")
        }
        let activeRoles = ["catalog", "meta", "data"]
        let lvNames = activeRoles.compactMap { sr.volumes[$0]?.name }
        var undo = UndoStack()
        do throws(ThinError) {
            do { try LVM.shared.setActive(true, group: sr.volumeGroup, names: lvNames) } catch {
                throw ThinError.backend("cannot activate the SR's LVs", error)
            }
            undo.push { try? LVM.shared.setActive(false, group: sr.volumeGroup, names: lvNames) }
            FaultInjection.point("volumes-activated")
            let metadataPath = mapperPath(sr.volumeGroup, names.metadataLV)
            let check: ThinTools.CheckResult
            do { check = try await ThinTools.check(metadataDevice: metadataPath, clearNeedsCheckFlag: true) } catch {
                throw ThinError.backend("thin_check could not run", error)
            }
            guard check.clean else {
                throw ThinError(.metadataCheckFailed, "pool metadata of SR \(names.uuidString) fails thin_check; "
                                + "repair it with thinsr-check --repair \(names.uuidString), then attach again")
            }
            FaultInjection.point("metadata-checked")
            try Mounts.mount(device: mapperPath(sr.volumeGroup, names.catalogLV), at: names.catalogMount,
                             type: "ext4", readOnly: false)
            FaultInjection.point("catalog-mounted")
            undo.push {
                try? Mounts.unmount(names.catalogMount)
                System.removeDirectory(names.catalogMount)
                System.removeDirectory(names.runDirectory)
            }
            let catalog = try Catalog(path: names.catalogDatabase)
            undo.push { catalog.database.close() }
            let record = try catalog.srRecord()
            guard record.uuid == names.uuid else {
                throw ThinError(.catalogInconsistent, "catalog on \(names.catalogLV) belongs to SR "
                                + "\(record.uuid.uuidString.lowercased()), not \(names.uuidString)")
            }
            let pool = Pool(names: names)
            let dataBytes = sr.volumes["data"]?.sizeBytes ?? 0
            try pool.assemble(metadataDevice: metadataPath, dataDevice: mapperPath(sr.volumeGroup, names.dataLV),
                              dataBytes: dataBytes, blockBytes: record.blockSizeBytes, onFull: record.onFull)
            undo.push { try? pool.disassemble() }
            FaultInjection.point("pool-assembled")
            let attached = AttachedSR(names: names, catalog: catalog, lock: try FileLock(path: names.lockFile))
            undo.push { attached.close() }
            try FileLock(path: names.metadataSnapshotLockFile).release()
            try attached.recover()
            FaultInjection.point("recovered")
            try VolumeDevices.removeStaleLinks(names: names)
            let result = try catalog.srRecord()
            undo.discard()
            attached.close()
            return result
        } catch {
            undo.run()
            throw error
        }
    }

    // MARK: detach

    /// Detaches the SR. Refuses while volumes are attached unless `force`,
    /// which detaches them first (refusing any that a process holds open, so
    /// no written data is lost). Detaching a detached SR succeeds.
    public static func detach(_ reference: String, force: Bool) throws(ThinError) {
        try System.requireRoot("thinsr-detach")
        let sr = try Discovery.find(reference)
        let lvNames = ["catalog", "meta", "spare", "data"].compactMap { sr.volumes[$0]?.name }
        guard sr.attached else {
            // A detach killed after unmounting left LVs active: finish it.
            let active = ["catalog", "meta", "spare", "data"].compactMap { sr.volumes[$0] }.filter(\.active)
            guard !active.isEmpty, try !Pool(names: sr.names).exists() else { return }
            do { try LVM.shared.setActive(false, group: sr.volumeGroup, names: active.map(\.name)) } catch {
                throw .backend("cannot deactivate the SR's LVs", error)
            }
            return
        }
        let attached = try AttachedSR.open(sr.names.uuidString, exclusive: true)
        let names = attached.names
        let active = try attached.activeVolumeDevices()
        if !active.isEmpty {
            let volumes = try attached.catalog.volumes(includingUnfinished: true)
            let keys = active.keys.map { uuid in volumes.first { $0.uuid == uuid }?.key ?? uuid.uuidString.lowercased() }
                .sorted()
            guard force else {
                throw ThinError(.volumeInUse, "SR \(names.uuidString) has attached volumes (\(keys.joined(separator: ", "))); "
                                + "detach them with thinvdi-detach or use --force", parameters: keys)
            }
            for (uuid, info) in active where info.openCount > 0 {
                let key = volumes.first { $0.uuid == uuid }?.key ?? uuid.uuidString.lowercased()
                throw ThinError(.volumeInUse, "volume \(key) is open by a process; close it before detaching the SR",
                                parameters: [key])
            }
            for uuid in active.keys {
                let volume = volumes.first { $0.uuid == uuid }
                try VolumeDevices.deactivate(names: names, volume: uuid, key: volume?.key)
            }
            FaultInjection.point("volumes-detached")
        }
        // A detach interrupted after removing the pool finds no pool: carry on.
        if try attached.pool.exists() {
            try attached.recover()
            try attached.pool.disassemble()
            FaultInjection.point("pool-removed")
        }
        attached.close()
        try Mounts.unmount(names.catalogMount)
        FaultInjection.point("catalog-unmounted")
        System.removeDirectory(names.catalogMount)
        System.removeDirectory(names.runDirectory)
        System.removeDirectory(names.deviceDirectory)
        do { try LVM.shared.setActive(false, group: sr.volumeGroup, names: lvNames) } catch {
            throw .backend("the SR is detached but its LVs could not be deactivated", error)
        }
    }

    // MARK: destroy

    /// Destroys a detached SR: its LVs (and, if it owns them, its VG and PVs).
    /// Refuses while it holds volumes unless `force`.
    public static func destroy(_ reference: String, force: Bool) async throws(ThinError) {
        try System.requireRoot("thinsr-destroy")
        let sr = try Discovery.find(reference)
        let names = sr.names
        try sr.requireOwned()
        if sr.isIncomplete { return try removeStorage(sr) }
        guard !sr.attached else {
            throw ThinError(.srInUse, "SR \(names.uuidString) is attached; detach it with thinsr-detach first",
                            parameters: [reference])
        }
        if !force {
            let count = try withCatalogReadOnly(sr) { catalog throws(ThinError) in
                try catalog.volumes(includingUnfinished: true).count
            }
            guard count == 0 else {
                throw ThinError(.srInUse, "SR \(names.uuidString) holds \(count) volume(s); destroy them first or "
                                + "use --force to destroy them with the SR", parameters: [reference])
            }
        }
        try removeStorage(sr)
    }

    /// Removes an SR's LVs (and, if it owns them, its VG and the devices'
    /// labels); an incomplete SR's pool and catalog mount go first.
    static func removeStorage(_ sr: DiscoveredSR) throws(ThinError) {
        let names = sr.names
        try Pool(names: names).disassemble()
        if Mounts.isMounted(names.catalogMount) { try Mounts.unmount(names.catalogMount) }
        System.removeDirectory(names.catalogMount)
        System.removeDirectory(names.runDirectory)
        let ownsGroup = sr.volumeGroup == names.ownVolumeGroup
        if ownsGroup { return try removeOwnVolumeGroup(sr.volumeGroup) }
        do {
            try LVM.shared.removeLogicalVolumes(group: sr.volumeGroup, names: sr.volumes.values.map(\.name).sorted())
        } catch {
            throw .backend("removing the LVs of SR \(names.uuidString) failed", error)
        }
    }

    /// Removes a VG an own-the-world SR made, and the LVM labels of its devices.
    static func removeOwnVolumeGroup(_ group: String) throws(ThinError) {
        do {
            let devices = try LVM.shared.physicalVolumes().filter { $0.volumeGroup == group }.map(\.device)
            try LVM.shared.removeVolumeGroup(group)
            FaultInjection.point("volume-group-removed")
            try LVM.shared.removePhysicalVolumes(devices)
        } catch {
            throw .backend("removing volume group \(group) failed", error)
        }
    }

}

/// Undo steps for a multi-step operation, run newest first on failure.
struct UndoStack {
    private var steps: [() -> Void] = []
    mutating func push(_ step: @escaping () -> Void) { steps.append(step) }
    mutating func discard() { steps.removeAll() }
    mutating func run() {
        for step in steps.reversed() { step() }
        steps.removeAll()
    }
}
