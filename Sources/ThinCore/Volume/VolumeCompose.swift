import FoundationEssentials
import ThinDeviceMapper
import ThinTools

/// xapi's `Volume.compose` (`thinvdi-compose`): a child volume becomes its
/// parent's contents with the child's own writes on top.
extension SRVolumes {
    /// Composes `childReference` onto `parentReference`: a new thin device
    /// is snapshotted from the parent (it shares the parent's blocks; nothing
    /// is copied for them), the blocks the child maps are copied onto it
    /// (the pool's metadata says which: only what the child holds crosses),
    /// and the child switches to it in a second transaction that deletes its
    /// old thin device, as a revert does. Between the two the new device is
    /// the child's hidden device, owned by this process as a hydration's
    /// metadata device is, so a compose killed anywhere is undone by the next
    /// writer's recovery (the new device deleted, the child as it was) or
    /// finished by it (once the switch is recorded). The child's key, uuid,
    /// name, keys and snapshots stay; the parent is untouched and may be
    /// destroyed afterwards. Both must be detached.
    @discardableResult
    public func composeVolume(_ childReference: String, onto parentReference: String) async throws(ThinError) -> VolumeRecord {
        let usage = try sr.recovered()
        let child = try sr.requireVolume(childReference)
        let parent = try sr.requireVolume(parentReference)
        try Self.requireComposable(child, onto: parent)
        try sr.requireDetached(child, "deactivate and detach it before composing it")
        try sr.requireDetached(parent, "detach it before composing onto it")
        try sr.requireNotHydrating(child, to: "be composed")
        try sr.requireNotHydrating(parent, to: "be composed onto")
        try SpaceReserve.requireRoomForNewDevice(usage, sr: names)
        let blockBytes = try record.blockSizeBytes
        let mapped = ChangedBlocks.merged(try await sr.lineage.mappings(of: [child.thinID.value]).devices.first?
            .runs.map(\.blocks) ?? [])
        let ranges = Self.byteRanges(of: mapped, blockBytes: blockBytes, size: child.virtualSize)
        let blocks = mapped.reduce(UInt64(0)) { $0 + UInt64($1.count) }
        guard usage.totalDataBlocks - min(usage.usedDataBlocks, usage.totalDataBlocks) > blocks else {
            throw ThinError(.noSpace, "the pool of SR \(names.uuidString) has no room for the \(blocks) blocks "
                            + "\(child.key) holds; extend it (thinsr-extend) and compose again")
        }
        let newID = try sr.allocateThinID()
        // The devices-changing marker stays from the first transaction to the switch: a compose killed
        // anywhere in between makes the next command, a read included, recover before it looks.
        return try devices.changing(try sr.devicesRecovered()) { () throws(ThinError) -> VolumeRecord in
            try sr.transact([.createSnapshot(newID, origin: parent.thinID)]) { catalog throws(ThinError) in
                try catalog.setHydrateMetaID(newID, volume: child.uuid)
                try catalog.setOwner(ProcessClaim.current.ownerMark, of: .hydrating, volume: child.uuid)
                try catalog.setNextThinID(newID.successor)
            }
            FaultInjection.point("compose-snapshot-made")
            do throws(ThinError) {
                try copyHeldBlocks(of: child, onto: newID, ranges: ranges)
            } catch {
                try? sr.stopHydration(try sr.requireVolume(child.uuid.lowercased))
                throw error
            }
            FaultInjection.point("compose-copied")
            try sr.transact([.delete(child.thinID)]) { catalog throws(ThinError) in
                try catalog.setPendingSwitch(volume: child.uuid, thinID: newID, virtualSize: child.virtualSize,
                                             dataSource: parent.uuid)
                try catalog.setHydrateMetaID(nil, volume: child.uuid)
                try catalog.setOwner(nil, of: .hydrating, volume: child.uuid)
            }
            return try sr.requireVolume(child.uuid.lowercased)
        }
    }

    /// The refusals that need no device: same volume, a snapshot or template
    /// as child, no data, raw volumes, an import, a parent larger than the child.
    static func requireComposable(_ child: VolumeRecord, onto parent: VolumeRecord) throws(ThinError) {
        guard child.uuid != parent.uuid else {
            throw .invalid("cannot compose \(child.key) onto itself; name the volume whose contents go under it")
        }
        guard child.readWrite, child.kind != .snapshot else {
            throw .invalid("\(child.key) is a read-only snapshot; compose a writable volume (the child) onto another")
        }
        try child.requireData(to: "be composed")
        try parent.requireData(to: "be composed onto")
        try child.requireThin(to: "be composed")
        try parent.requireThin(to: "be composed onto")
        try child.requireNotImporting(to: "be composed")
        try parent.requireNotImporting(to: "be composed onto")
        guard parent.virtualSize <= child.virtualSize else {
            throw .invalid("\(parent.key) (\(ByteSize.format(parent.virtualSize))) is larger than \(child.key) "
                           + "(\(ByteSize.format(child.virtualSize))); resize \(child.key) first")
        }
    }

    /// The bytes of `blocks` (pool-block ranges) within a volume of `size` bytes.
    static func byteRanges(of blocks: [Range<UInt64>], blockBytes: UInt64, size: UInt64) -> [Range<UInt64>] {
        blocks.compactMap { run in
            let lower = run.lowerBound * blockBytes
            let upper = min(run.upperBound * blockBytes, size)
            return lower < upper ? lower..<upper : nil
        }
    }

    /// Copies `ranges` of the child's thin device onto thin device `newID`
    /// through two devices of the child's hydration names (which recovery
    /// removes with a killed compose), then removes them.
    private func copyHeldBlocks(of child: VolumeRecord, onto newID: ThinDeviceID,
                                ranges: [Range<UInt64>]) throws(ThinError) {
        let source = names.hydrationDevice(child.uuid, .source)
        let destination = names.hydrationDevice(child.uuid, .destination)
        let sectors = child.virtualSize / 512
        guard sectors > 0 else { return }
        let deviceMapper = host.deviceMapper
        // (Under the devices-changing marker `composeVolume` holds.)
        do {
            for device in [source, destination] { try? deviceMapper.remove(name: device.name) }
            try deviceMapper.create(name: source.name, uuid: source.dmUUID,
                                    table: [devices.thinTable(for: child, withOrigin: false)],
                                    readOnly: true, udev: .standard)
            try deviceMapper.create(name: destination.name, uuid: destination.dmUUID,
                                    table: [ThinTable(poolDevice: pool.path, deviceID: newID)
                                        .line(lengthSectors: sectors)],
                                    readOnly: false, udev: .standard)
        } catch { throw .backend("cannot set up the compose of \(child.key)", error) }
        if !ranges.isEmpty {
            _ = try host.system.copyRanges(from: source.path, to: destination.path, ranges: ranges)
        }
        for device in [source, destination] {
            do { try deviceMapper.remove(name: device.name) } catch {
                throw .backend("cannot remove \(device.name) after composing \(child.key)", error)
            }
        }
    }
}
