import FoundationEssentials
import ThinDeviceMapper

/// Snapshots, clones and revert: metadata-only on dm-thin, each one pool transaction.
extension AttachedSR {
    /// Makes a read-only snapshot (`.snapshot`) or a writable clone (`.clone`) of
    /// any volume, snapshot or clone. An attached writable source is suspended
    /// around `create_snap` (flushing what was written before) and resumed.
    @discardableResult
    public func copyVolume(_ reference: String, kind: VolumeKind, name: String?) throws(ThinError) -> VolumeRecord {
        precondition(kind != .volume)
        if let name { try Naming.validateLabel(name, what: "name") }
        let usage = try recovered()
        try SpaceReserve.requireRoomForNewDevice(usage, sr: names)
        let source = try requireVolume(reference)
        let thinID = try allocateThinID()
        let label = name ?? source.name
        var copy = VolumeRecord(
            uuid: UUID(), key: Naming.deriveKey(fromName: label, existing: try catalog.allKeys()), name: label,
            description: source.description, thinID: thinID, virtualSize: source.virtualSize, kind: kind,
            readWrite: kind == .clone, sharable: false, createdAt: System.currentTime(), keys: [:],
            parentUUID: source.uuid, snapshotOf: kind == .snapshot ? source.uuid : nil, state: .creating)
        let record = { (catalog: Catalog) throws(ThinError) in
            try catalog.insert(copy)
            try catalog.setNextThinID(thinID.successor)
        }
        let message = PoolMessage.createSnapshot(thinID, origin: source.thinID)
        // Recovery ran above: inside `changing` it would find this operation's own marker.
        if let info = try devices.info(source.uuid), !info.readOnly, !info.suspended {
            try devices.changing { () throws(ThinError) in
                try whileSuspended(source) { () throws(ThinError) in try transact([message], prepare: record) }
            }
        } else {
            try transact([message], prepare: record)
        }
        copy.state = .ready
        return copy
    }

    /// Runs `body` with the volume's device suspended (its writes flushed), then
    /// resumes it. A resume that fails is an error even when `body` succeeded,
    /// so the devices-changing marker stays and the next operation resumes it.
    private func whileSuspended(_ volume: VolumeRecord, _ body: () throws(ThinError) -> Void) throws(ThinError) {
        let device = names.volumeDevice(volume.uuid).name
        do { try host.deviceMapper.suspend(name: device, flush: true) } catch {
            throw .backend("cannot suspend \(volume.key) for a consistent snapshot", error)
        }
        FaultInjection.point("origin-suspended")
        let outcome = Result { () throws(ThinError) in try body() }
        do { try host.deviceMapper.resume(name: device, udev: .standard) } catch {
            let done = (try? outcome.get()) != nil ? "the snapshot was made, but " : ""
            throw .backend("\(done)\(volume.key) could not be resumed (the next thinsr operation on this SR resumes it)",
                           error)
        }
        try outcome.get()
    }

    /// Makes `reference`'s contents those of `snapshotReference`, in place and
    /// in O(1): a new thin id is snapshotted from the snapshot and the volume
    /// switches to it; its key, uuid, name, description and keys stay. An
    /// attached volume is refused with `Volume_in_use` (its device holds the
    /// old thin id open).
    public func revertVolume(_ reference: String, to snapshotReference: String) throws(ThinError) {
        let usage = try recovered()
        try SpaceReserve.requireRoomForNewDevice(usage, sr: names)
        let volume = try requireVolume(reference)
        let snapshot = try requireVolume(snapshotReference)
        guard volume.readWrite else {
            throw .invalid("\(volume.key) is a read-only snapshot; revert a writable volume to one of its snapshots")
        }
        guard volume.uuid != snapshot.uuid else { throw .invalid("cannot revert \(volume.key) to itself") }
        try requireDetached(volume, "detach it with thinvdi-detach before reverting it")
        let thinID = try allocateThinID()
        try transact([.createSnapshot(thinID, origin: snapshot.thinID), .delete(volume.thinID)]) { catalog throws(ThinError) in
            try catalog.setPendingSwitch(volume: volume.uuid, thinID: thinID, virtualSize: snapshot.virtualSize)
            try catalog.setNextThinID(thinID.successor)
        }
    }
}
