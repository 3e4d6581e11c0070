import ThinTools
public import FoundationEssentials
import ThinDeviceMapper
import ThinLVM

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
        self.uuid = uuid
        self.name = name
        self.description = description
        self.placement = placement
        self.poolBytes = poolBytes
        self.blockBytes = blockBytes
        self.metadataBytes = metadataBytes
        self.onFull = onFull
    }

    /// The data block size, after checking every size the request gives.
    func validatedBlockBytes() throws(ThinError) -> UInt64 {
        try Naming.validateSRName(name)
        try Naming.validateLabel(description, what: "SR description")
        let blockBytes = self.blockBytes ?? StoragePlan.defaultBlockBytes
        guard ThinPoolTable.isValidBlockSize(sectors: blockBytes / 512), blockBytes % 512 == 0 else {
            throw .invalid("block size \(ByteSize.format(blockBytes)) is invalid; use a multiple of 64K between 64K and 1G")
        }
        if let metadataBytes { try StoragePlan.validateMetadataSize(metadataBytes) }
        if let poolBytes, poolBytes < blockBytes {
            throw .invalid("pool size \(poolBytes) is smaller than one block (\(ByteSize.format(blockBytes)))")
        }
        if case .volumeGroup(let group) = placement {
            guard poolBytes != nil else {
                throw .invalid("--vg needs --pool-size: a be-nice SR takes only the space it is given")
            }
            guard LVMNames.isValidVGName(group) else { throw .invalid("\"\(group)\" is not a valid VG name") }
        }
        return blockBytes
    }
}

extension SRLifecycle {
    /// Makes an SR: its VG (own-the-world) or its LVs in the user's VG
    /// (be-nice), a formatted catalog, and an empty pool. Each step is undone
    /// if a later one fails; an SR a killed create left half made is marked
    /// incomplete, and creating it again with its uuid starts over.
    public func create(_ request: SRCreateRequest) async throws(ThinError) -> AttachedSR {
        let blockBytes = try request.validatedBlockBytes()
        let names = SRNames(uuid: request.uuid ?? UUID())
        let lock = try FileLock(path: names.lockFile)
        defer { withExtendedLifetime(lock) {} }  // held through any undo; the returned SR holds it after
        try removeInterruptedCreate(of: names, placement: request.placement)
        var undo = UndoStack()
        do throws(ThinError) {
            let (group, mode) = try await placeVolumeGroup(request.placement, names: names, undo: &undo)
            let vg = try volumeGroup(group)
            let plan = try await StoragePlan.make(vg: vg, poolBytes: request.poolBytes, blockBytes: blockBytes,
                                                  metadataBytes: request.metadataBytes, programs: host.programs)
            try createVolumes(plan, group: group, mode: mode, names: names, label: request.name, undo: &undo)
            let path = { (role: LVRole) in names.mapperPath(role, group: group) }
            try host.system.zeroStart(of: path(.metadata))
            try host.system.zeroStart(of: path(.spare))
            FaultInjection.point("metadata-zeroed")
            try await formatCatalogFilesystem(path(.catalog), "catalog volume")
            try await formatCatalogFilesystem(path(.catalogCopy), "catalog copy's volume")
            FaultInjection.point("catalog-formatted")
            try mountCatalog(path(.catalog), names: names, undo: &undo)
            try mountCatalogCopy(path(.catalogCopy), names: names, undo: &undo)
            let record = SRRecord(uuid: names.uuid, name: request.name, description: request.description, mode: mode,
                                  volumeGroup: group, blockSizeBytes: blockBytes, transactionID: 0, nextThinID: .first,
                                  createdAt: System.currentTime(), onFull: request.onFull)
            let catalog = try Catalog.create(path: names.catalogDatabase, record: record)
            undo.push { catalog.close() }
            guard try catalog.copy.attach(at: names.catalogCopyDatabase) else {
                throw ThinError(.backendFailure, "cannot make the catalog copy \(names.catalogCopyDatabase)")
            }
            FaultInjection.point("catalog-written")
            let sr = AttachedSR(names: names, catalog: catalog, lock: lock, host: host)
            try assembleEmptyPool(sr, layout: Pool.Layout(
                metadataDevice: path(.metadata), dataDevice: path(.data), dataBytes: plan.dataBytes,
                blockBytes: blockBytes, onFull: request.onFull,
                lowWaterPercent: try catalog.srRecord().autoextend.lowWaterPercent), undo: &undo)
            do { try host.lvm.retag(group: group, name: names.lv(.catalog), remove: [SRNames.incompleteTag], add: []) } catch {
                throw ThinError.backend("cannot mark the SR complete", error)
            }
            undo.discard()
            return sr
        } catch {
            undo.run()
            throw error
        }
    }

    /// A create of this uuid that was interrupted left an incomplete SR:
    /// remove it, so the retry makes the SR entirely.
    private func removeInterruptedCreate(of names: SRNames, placement: SRCreateRequest.Placement) throws(ThinError) {
        if let existing = try discovery.all().first(where: { $0.uuid == names.uuid }) {
            guard existing.isIncomplete else { throw .invalid("an SR with uuid \(names.uuidString) already exists") }
            try removeStorage(existing)
        }
        guard case .devices = placement else { return }
        // A create killed after vgcreate and before the first LV left only a tagged VG.
        if let group = try volumeGroups().first(where: { $0.name == names.ownVolumeGroup }),
           group.tags.contains(names.srTag) {
            try removeOwnVolumeGroup(group.name)
        }
    }

    /// The VG the SR lives in: made on the devices, or the user's own.
    private func placeVolumeGroup(_ placement: SRCreateRequest.Placement, names: SRNames,
                                  undo: inout UndoStack) async throws(ThinError) -> (String, SRMode) {
        switch placement {
        case .volumeGroup(let group):
            return (group, .beNice)
        case .devices(let devices):
            try await FreeDeviceCheck(host: host).validate(devices)
            let group = names.ownVolumeGroup
            // vgcreate labels the devices itself: one step, not two.
            do { try host.lvm.createVolumeGroup(group, devices: devices, tags: [names.srTag]) } catch {
                throw ThinError.backend("vgcreate failed", error)
            }
            let lvm = host.lvm
            undo.push {
                try? lvm.removeVolumeGroup(group)
                try? lvm.removePhysicalVolumes(devices)
            }
            FaultInjection.point("volume-group-created")
            return (group, .ownTheWorld)
        }
    }

    func volumeGroups() throws(ThinError) -> [VolumeGroupReport] {
        do { return try host.lvm.volumeGroups() } catch { throw ThinError.backend("vgs failed", error) }
    }

    func volumeGroup(_ name: String) throws(ThinError) -> VolumeGroupReport {
        guard let group = try volumeGroups().first(where: { $0.name == name }) else {
            throw ThinError.invalid("volume group \"\(name)\" does not exist; create it with vgcreate or use --device")
        }
        return group
    }

    /// The five LVs, catalog first: its tags say the SR is incomplete until the end.
    private func createVolumes(_ plan: StoragePlan, group: String, mode: SRMode, names: SRNames, label: String,
                               undo: inout UndoStack) throws(ThinError) {
        for role in [LVRole.catalog, .catalogCopy, .metadata, .spare, .data] {
            var tags = [names.srTag, role.tag]
            if role == .catalog {
                tags += [SRNames.modeTagPrefix + mode.rawValue, SRNames.incompleteTag]
                if !label.isEmpty { tags.append(SRNames.nameTagPrefix + TagText.encode(label)) }
            }
            let lv = names.lv(role)
            do { try host.lvm.createLinearVolume(group: group, name: lv, sizeBytes: plan.bytes(of: role), tags: tags) } catch {
                throw ThinError.backend("lvcreate of the SR's \(role.rawValue) volume failed", error)
            }
            let lvm = host.lvm
            if mode == .beNice { undo.push { try? lvm.removeLogicalVolumes(group: group, names: [lv]) } }
            FaultInjection.point("\(role.rawValue)-volume-created")
        }
    }

    /// Assembles the pool on zeroed metadata and checks the kernel made it empty.
    private func assembleEmptyPool(_ sr: AttachedSR, layout: Pool.Layout, undo: inout UndoStack) throws(ThinError) {
        try sr.pool.assemble(layout)
        let pool = sr.pool
        undo.push { try? pool.disassemble() }
        FaultInjection.point("pool-assembled")
        let usage = try sr.pool.usage()
        guard usage.transactionID == 0, usage.usedDataBlocks == 0 else {
            throw ThinError(.backendFailure, "the new pool's metadata is not empty (transaction id "
                            + "\(usage.transactionID)); was the metadata device zeroed?")
        }
    }
}
