import FoundationEssentials
import ThinDeviceMapper

/// Snapshots, clones and revert: metadata-only on dm-thin, each one pool transaction.
extension SRVolumes {
    /// Makes a read-only snapshot (`.snapshot`) or a writable clone (`.clone`) of
    /// any volume, snapshot or clone. An attached source is suspended around
    /// `create_snap` (flushing what was written before) and resumed.
    @discardableResult
    public func copyVolume(_ reference: String, kind: VolumeKind, name: String?) throws(ThinError) -> VolumeRecord {
        precondition(kind != .volume)
        if let name { try Naming.validateLabel(name, what: "name") }
        let usage = try sr.recovered()
        try SpaceReserve.requireRoomForNewDevice(usage, sr: names)
        let source = try sr.requireVolume(reference, allowingTemplate: true)
        try source.requireData(to: "be snapshotted or cloned")
        try source.requireNotImporting(to: "be snapshotted or cloned")
        try source.requireThin(to: "be snapshotted or cloned")
        let thinID = try sr.allocateThinID()
        let label = name ?? source.name
        var copy = VolumeRecord(
            uuid: UUID(), key: Naming.deriveKey(fromName: label, existing: try catalog.allKeys()), name: label,
            description: source.description, thinID: thinID, virtualSize: source.virtualSize, kind: kind,
            readWrite: kind == .clone, sharable: false, createdAt: System.currentTime(), keys: [:],
            parentUUID: source.uuid, snapshotOf: kind == .snapshot ? source.uuid : nil, state: .creating,
            cbtEnabled: kind == .snapshot && source.cbtEnabled, dataSource: source.uuid)
        // The kernel needs every descendant of a thin device over an external origin to name the same origin.
        copy.originTemplate = source.isTemplate ? source.uuid : source.originTemplate
        let record = { (catalog: Catalog) throws(ThinError) in
            try catalog.insert(copy)
            try catalog.setNextThinID(thinID.successor)
        }
        try transact(fromOrigin: source, [.createSnapshot(thinID, origin: source.thinID)], prepare: record)
        copy.state = .ready
        return copy
    }

    /// Runs a transaction whose messages snapshot `origin`. The kernel needs
    /// an active origin suspended while `create_snap` runs: only the sending
    /// is inside that window, the catalog's commits (and fsyncs) are outside.
    private func transact(fromOrigin origin: VolumeRecord, _ messages: [PoolMessage],
                          prepare: (Catalog) throws(ThinError) -> Void) throws(ThinError) {
        // Recovery runs first: inside `changing` it would find this operation's own marker.
        try sr.recovered()
        // (An inactive device's error table is suspended too: harmless, and it saves reading its table.)
        guard let info = try devices.info(origin.uuid), info.hasLiveTable, !info.suspended else {
            return try sr.transact(messages, prepare: prepare)
        }
        // A resume that fails after the messages went through must not undo
        // them: the transaction completes, then the failure is reported (and
        // the marker stays, so the next thinsr command resumes the device).
        var resumeFailure: ThinError?
        try devices.changing(try sr.devicesRecovered()) { () throws(ThinError) in
            try sr.transact(messages, prepare: prepare) { send throws(ThinError) in
                resumeFailure = try whileSuspended(origin, send)
            }
            if let resumeFailure { throw resumeFailure }
        }
    }

    /// Runs `body` with the volume's device suspended (its writes flushed),
    /// then resumes it. When `body` succeeded but the resume failed, returns
    /// that failure for the caller to report once its transaction is whole.
    private func whileSuspended(_ volume: VolumeRecord,
                                _ body: () throws(ThinError) -> Void) throws(ThinError) -> ThinError? {
        let device = names.volumeDevice(volume.uuid).name
        do { try host.deviceMapper.suspend(name: device, flush: true) } catch {
            throw .backend("cannot suspend \(volume.key) for a consistent snapshot", error)
        }
        FaultInjection.point("origin-suspended")
        let outcome = Result { () throws(ThinError) in try body() }
        do { try host.deviceMapper.resume(name: device, udev: .standard) } catch {
            let failure = ThinError.backend("\(volume.key) could not be resumed (the next thinsr command on this SR "
                                            + "resumes it)", error)
            guard case .success = outcome else { throw failure }
            return ThinError(failure.code, "the snapshot was made, but " + failure.message, parameters: failure.parameters)
        }
        FaultInjection.point("origin-resumed")
        try outcome.get()
        return nil
    }

    /// Makes `reference`'s contents those of `snapshotReference`, in place and
    /// in O(1): a new thin id is snapshotted from the snapshot and the volume
    /// switches to it; its key, uuid, name, description and keys stay. Only a
    /// snapshot of the volume's own lineage is accepted (see
    /// `isEarlierState`). An attached volume is refused with `Volume_in_use`
    /// (its device holds the old thin id open); an attached snapshot is
    /// suspended around `create_snap`.
    public func revertVolume(_ reference: String, to snapshotReference: String) throws(ThinError) {
        let usage = try sr.recovered()
        try SpaceReserve.requireRoomForNewDevice(usage, sr: names)
        let volume = try sr.requireVolume(reference)
        let snapshot = try sr.requireVolume(snapshotReference)
        guard volume.readWrite else {
            throw .invalid("\(volume.key) is a read-only snapshot; revert a writable volume to one of its snapshots")
        }
        guard volume.uuid != snapshot.uuid else { throw .invalid("cannot revert \(volume.key) to itself") }
        try snapshot.requireData(to: "be reverted to")
        try volume.requireNotImporting(to: "be reverted")
        try volume.requireThin(to: "be reverted")
        guard snapshot.kind == .snapshot else {
            throw .invalid("\(snapshot.key) is a \(snapshot.kind.rawValue), not a snapshot; revert \(volume.key) to one "
                           + "of its own snapshots (thinvdi-tree shows them)")
        }
        let all = Dictionary(try catalog.volumes().map { ($0.uuid, $0) }, uniquingKeysWith: { first, _ in first })
        guard Self.isEarlierState(snapshot, of: volume, volumes: all) else {
            throw .invalid("snapshot \(snapshot.key) is not of \(volume.key)'s lineage; revert \(volume.key) only to "
                           + "one of its own snapshots (thinvdi-tree shows them)")
        }
        try sr.requireDetached(volume, "detach it with thinvdi-detach before reverting it")
        // (After the refusals: a copy-on-read gives way only to a revert that goes ahead.)
        try sr.requireNotHydrating(volume, to: "be reverted")
        let thinID = try sr.allocateThinID()
        try transact(fromOrigin: snapshot, [.createSnapshot(thinID, origin: snapshot.thinID), .delete(volume.thinID)]) {
            catalog throws(ThinError) in
            try catalog.setPendingSwitch(volume: volume.uuid, thinID: thinID, virtualSize: snapshot.virtualSize,
                                         dataSource: snapshot.uuid)
            // The volume's external origin becomes the snapshot's, its absence included, when the switch
            // settles (a hydrated point in history must not read the template again, nor an earlier one lose it).
            try catalog.setNextThinID(thinID.successor)
        }
    }

    /// Whether `snapshot` holds an earlier state of `volume`, as `zfs rollback`
    /// and xapi's `Volume.revert` mean it: a snapshot of the volume itself
    /// (or of one of its snapshots, transitively); the snapshot it was cloned
    /// from; or, up its ancestry, a snapshot of an ancestor taken no later
    /// than the volume (or the ancestor's child it descends from) was made
    /// from that ancestor. A snapshot of another disk, of a clone of this one,
    /// or of an ancestor after the volume branched off, is another history.
    static func isEarlierState(_ snapshot: VolumeRecord, of volume: VolumeRecord, volumes: [UUID: VolumeRecord]) -> Bool {
        // The volume the snapshot was taken of, and when (through snapshots of snapshots).
        var taken = snapshot
        var steps = 0
        while let origin = taken.snapshotOf, let next = volumes[origin], next.kind == .snapshot, steps < volumes.count {
            taken = next
            steps += 1
        }
        guard let origin = taken.snapshotOf else { return false }
        if origin == volume.uuid { return true }
        var node = volume
        steps = 0
        while let parentUUID = node.parentUUID, let parent = volumes[parentUUID], steps < volumes.count {
            if parent.uuid == snapshot.uuid { return true }
            if parent.kind != .snapshot, parent.uuid == origin, taken.createdAt <= node.createdAt { return true }
            node = parent
            steps += 1
        }
        return false
    }
}
