import FoundationEssentials
import Synchronization
import Testing
import ThinLVM
import ThinDeviceMapper
@testable import ThinCore

/// The transaction protocol's branches, against the recording double: what
/// reaches the pool, in what order, and what the catalog holds after.
/// Volume `v` (thin id 1) and its snapshot `s` (thin id 2), attached
/// read-only; returns the SR and the snapshot's device.
private func volumeWithAttachedSnapshot() throws -> (TestSR, String) {
    let sr = try TestSR()
    let volume = try sr.addVolume("v", thinID: 1)
    let snapshot = try sr.addVolume("s", thinID: 2, kind: .snapshot, parent: volume.uuid)
    sr.attachDevice(snapshot, readOnly: true)
    return (sr, sr.names.volumeDevice(snapshot.uuid).name)
}

@Suite("pool transactions")
struct TransactionTests {
    @Test("a transaction records, sends its messages, sets the transaction id and settles, in that order")
    func success() throws {
        let sr = try TestSR()
        let open = try sr.open()
        let volume = try open.volumes.createVolume(name: "a", description: "", sizeBytes: 1 << 20, sharable: false)
        #expect(sr.poolMessages == ["create_thin 1", "set_transaction_id 0 1"])
        #expect(sr.poolThinIDs == [1] && sr.poolTransactionID == 1)
        let catalog = try sr.catalog()
        #expect(try catalog.pending() == nil)
        #expect(try catalog.srRecord().transactionID == 1 && catalog.srRecord().nextThinID == 2)
        #expect(try catalog.volume(matching: volume.key)?.state == .ready)
        #expect(volume.thinID == 1 && volume.state == .ready)
    }

    @Test("a refused create is undone: nothing was created, the rows roll back, the id stays")
    func refusedCreate() throws {
        let sr = try TestSR()
        sr.deviceMapper.fail(sr.message("create_thin 1"), .noSpace)
        #expect { try sr.open().volumes.createVolume(name: "a", description: "", sizeBytes: 1 << 20, sharable: false) }
            throws: { ($0 as? ThinError)?.message.contains("pool message \"create_thin 1\" failed") == true }
        #expect(sr.poolMessages == ["create_thin 1"])
        #expect(sr.poolThinIDs.isEmpty && sr.poolTransactionID == 0)
        let catalog = try sr.catalog()
        #expect(try catalog.pending() == nil && catalog.volumes(includingUnfinished: true).isEmpty)
    }

    @Test("a failure part way deletes what the transaction created, newest first")
    func undoNewestFirst() throws {
        let sr = try TestSR()
        let open = try sr.open()
        sr.deviceMapper.fail(sr.message("create_thin 7"))
        #expect { try open.transact([.createThin(5), .createThin(6), .createThin(7)]) { _ throws(ThinError) in } }
            throws: { ($0 as? ThinError)?.message.hasPrefix("pool message \"create_thin 7\" failed") == true }
        #expect(sr.poolMessages == ["create_thin 5", "create_thin 6", "create_thin 7", "delete 6", "delete 5"])
        #expect(sr.poolThinIDs.isEmpty && sr.openTransaction == nil)
    }

    @Test("once a delete is sent the change is kept for recovery, which completes it")
    func completeAfterDelete() throws {
        let sr = try TestSR()
        try sr.addVolume("a", thinID: 1)
        try sr.addVolume("b", thinID: 2)
        let open = try sr.open()
        sr.deviceMapper.fail(sr.message("delete 2"))
        #expect { try open.transact([.delete(1), .delete(2)]) { _ throws(ThinError) in } }
            throws: { ($0 as? ThinError)?.message.contains("completed by the next thinsr operation") == true }
        #expect(sr.openTransaction?.mustComplete == true)
        open.close()
        sr.deviceMapper.clearCalls()
        try sr.open().recovered()
        // delete 1 took effect before: its ENODATA means done.
        #expect(sr.poolMessages == ["delete 1", "delete 2", "set_transaction_id 0 1"])
        #expect(sr.poolThinIDs.isEmpty && sr.poolTransactionID == 1 && sr.openTransaction == nil)
    }

    @Test("a failed set_transaction_id leaves the transaction open; recovery undoes a create")
    func interruptedCreate() throws {
        let sr = try TestSR()
        sr.deviceMapper.fail(sr.message("set_transaction_id 0 1"))
        #expect { try sr.open().volumes.createVolume(name: "a", description: "", sizeBytes: 1 << 20, sharable: false) }
            throws: { ($0 as? ThinError)?.message.contains("cannot set the pool's transaction id") == true }
        #expect(sr.poolThinIDs == [1] && sr.openTransaction != nil)
        sr.deviceMapper.clearCalls()
        try sr.open().recovered()
        #expect(sr.poolMessages == ["delete 1"])
        let catalog = try sr.catalog()
        #expect(sr.poolThinIDs.isEmpty && sr.poolTransactionID == 0)
        #expect(try catalog.pending() == nil && catalog.volumes(includingUnfinished: true).isEmpty)
    }

    @Test("rows that fail to record send nothing")
    func prepareFails() throws {
        let sr = try TestSR()
        #expect {
            try sr.open().transact([.createThin(1)]) { _ throws(ThinError) in throw ThinError(.backendFailure, "boom") }
        } throws: { ($0 as? ThinError)?.message == "boom" }
        #expect(sr.poolMessages.isEmpty && sr.openTransaction == nil)
    }

    @Test("destroying a node moves its children up to its parent")
    func lineageStaysWhole() throws {
        let sr = try TestSR()
        let a = try sr.addVolume("a", thinID: 1)
        let b = try sr.addVolume("b", thinID: 2, kind: .snapshot, parent: a.uuid)
        let c = try sr.addVolume("c", thinID: 3, kind: .clone, parent: b.uuid)
        try sr.open().volumes.destroyVolume("b")
        #expect(sr.poolMessages == ["delete 2", "set_transaction_id 0 1"])
        #expect(try sr.catalog().volume(matching: "c")?.parentUUID == a.uuid)
        #expect(try sr.catalog().volume(matching: "b") == nil && c.parentUUID == b.uuid)
    }

    @Test("a revert snapshots the snapshot, deletes the old id and switches the volume on settling")
    func revert() throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("v", thinID: 1)
        try sr.addVolume("s", thinID: 2, kind: .snapshot, parent: volume.uuid, size: 1 << 20)
        try sr.open().volumes.revertVolume("v", to: "s")
        #expect(sr.poolMessages == ["create_snap 3 2", "delete 1", "set_transaction_id 0 1"])
        let reverted = try #require(try sr.catalog().volume(matching: "v"))
        #expect(reverted.thinID == 3 && reverted.virtualSize == 1 << 20 && reverted.uuid == volume.uuid)
    }

    @Test("a revert takes the snapshot's external origin, its absence included, only when it settles")
    func revertTakesOrigin() throws {
        let sr = try TestSR()
        let template = UUID()
        let volume = try sr.addVolume("v", thinID: 1)
        let early = try sr.addVolume("early", thinID: 2, kind: .snapshot, parent: volume.uuid)
        let late = try sr.addVolume("late", thinID: 3, kind: .snapshot, parent: volume.uuid)
        // "early" was taken while the volume read the template; "late" after a hydration dropped it.
        try sr.catalog().setOriginTemplate(template, volume: early.uuid)
        try sr.open().volumes.revertVolume("v", to: "early")
        #expect(try sr.catalog().volume(matching: "v")?.originTemplate == template)
        try sr.open().volumes.revertVolume("v", to: "late")
        #expect(try sr.catalog().volume(matching: "v")?.originTemplate == nil)
        // Rolled back (the pool never took the messages): the volume keeps what it had.
        try sr.catalog().setOriginTemplate(template, volume: volume.uuid)
        let current = try #require(try sr.catalog().volume(matching: "v")).thinID
        sr.deviceMapper.fail(sr.message("create_snap \(current.value + 1) 3"))
        #expect(throws: ThinError.self) { try sr.open().volumes.revertVolume("v", to: "late") }
        #expect(try sr.catalog().volume(matching: "v")?.originTemplate == template)
    }

    @Test("revert accepts only snapshots of the volume's own lineage, and changes nothing otherwise")
    func revertLineage() throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("v", thinID: 1)
        let own = try sr.addVolume("own", thinID: 2, kind: .snapshot, parent: volume.uuid)
        try sr.addVolume("own-of-own", thinID: 3, kind: .snapshot, parent: own.uuid)
        let other = try sr.addVolume("other", thinID: 4)
        try sr.addVolume("foreign", thinID: 5, kind: .snapshot, parent: other.uuid)
        let clone = try sr.addVolume("clone", thinID: 6, kind: .clone, parent: own.uuid)
        try sr.addVolume("of-clone", thinID: 7, kind: .snapshot, parent: clone.uuid)
        for (target, snapshot) in [("v", "foreign"), ("v", "of-clone"), ("v", "clone"), ("clone", "foreign"),
                                   ("v", "other")] {
            let before = try sr.catalog().volumes()
            #expect(throws: ThinError.self) { try sr.open().volumes.revertVolume(target, to: snapshot) }
            #expect(try sr.catalog().volumes() == before)
        }
        #expect(sr.poolMessages.isEmpty)
        // Its own snapshots (transitively) and, for a clone, the snapshot it came from.
        try sr.open().volumes.revertVolume("v", to: "own-of-own")
        try sr.open().volumes.revertVolume("clone", to: "own")
        try sr.open().volumes.revertVolume("clone", to: "of-clone")
        #expect(sr.poolMessages.filter { $0.hasPrefix("create_snap") } == ["create_snap 8 3", "create_snap 9 2",
                                                                             "create_snap 10 7"])
    }

    @Test("a clone of a live volume reverts to its origin's snapshots taken before it was cloned, not after")
    func revertCloneOfLiveVolume() throws {
        let sr = try TestSR()
        let origin = try sr.addVolume("v", thinID: 1, createdAt: 10)
        try sr.addVolume("before", thinID: 2, kind: .snapshot, parent: origin.uuid, createdAt: 20)
        try sr.addVolume("c", thinID: 3, kind: .clone, parent: origin.uuid, createdAt: 30)
        try sr.addVolume("after", thinID: 4, kind: .snapshot, parent: origin.uuid, createdAt: 40)
        #expect(throws: ThinError.self) { try sr.open().volumes.revertVolume("c", to: "after") }
        try sr.open().volumes.revertVolume("c", to: "before")
        #expect(sr.poolMessages.first == "create_snap 5 2")
    }

    @Test("a revert to an attached snapshot suspends it around create_snap only")
    func revertSuspendsAttachedSnapshot() throws {
        let (sr, device) = try volumeWithAttachedSnapshot()
        try sr.open().volumes.revertVolume("v", to: "s")
        let calls = sr.deviceMapper.calls
        let suspend = try #require(calls.firstIndex(of: "suspend \(device)"))
        let resume = try #require(calls.firstIndex(of: "resume \(device)"))
        let snap = try #require(calls.firstIndex(of: sr.message("create_snap 3 2")))
        let delete = try #require(calls.firstIndex(of: sr.message("delete 1")))
        let setID = try #require(calls.firstIndex(of: sr.message("set_transaction_id 0 1")))
        #expect(suspend < snap && delete < resume && resume < setID)
        #expect(sr.deviceMapper.device(device)?.suspended == false)
    }
}

@Suite("recovery")
struct RecoveryTests {
    /// Leaves `messages` recorded as the open transaction from the pool's current id.
    func leaveOpen(_ sr: TestSR, _ messages: [PoolMessage], rows: (Catalog) throws -> Void = { _ in }) throws {
        let catalog = try sr.catalog()
        defer { catalog.close() }
        try rows(catalog)
        try catalog.setPending(PendingTransaction(from: sr.poolTransactionID ?? 0, messages: messages))
    }

    func row(_ key: String, _ id: ThinDeviceID, _ state: VolumeState) -> VolumeRecord {
        VolumeRecord(uuid: UUID(), key: key, name: key, description: "", thinID: id, virtualSize: 1 << 20,
                     kind: .volume, readWrite: true, sharable: false, createdAt: 1, keys: [:], parentUUID: nil,
                     snapshotOf: nil, state: state)
    }

    @Test("nothing open and the ids agree: nothing is sent")
    func clean() throws {
        let sr = try TestSR()
        let usage = try sr.open().recovered()
        #expect(usage.transactionID == 0 && sr.poolMessages.isEmpty)
    }

    @Test("nothing open but the ids differ: the SR needs checking")
    func idsDiffer() throws {
        let sr = try TestSR()
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.transactionID = 5 }
        #expect { try sr.open().recovered() } throws: { ($0 as? ThinError)?.code == .catalogInconsistent }
        #expect(sr.poolMessages.isEmpty)
    }

    @Test("the pool reached the new id: the rows settle, nothing is sent")
    func settleOnly() throws {
        let sr = try TestSR()
        try leaveOpen(sr, [.createThin(1)]) { try $0.insert(row("a", 1, .creating)) }
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.transactionID = 1; $0.thinIDs = [1] }
        #expect(try sr.open().recovered().transactionID == 1)
        #expect(sr.poolMessages.isEmpty)
        #expect(try sr.catalog().volume(matching: "a")?.state == .ready)
        #expect(try sr.catalog().srRecord().transactionID == 1)
    }

    @Test("a delete at the old id must complete: messages resent (done ones ignored), id set, rows settled",
          arguments: [false, true])
    func completes(createSent: Bool) throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("v", thinID: 1)
        try sr.addVolume("s", thinID: 2, kind: .snapshot, parent: volume.uuid)
        if createSent { sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.thinIDs.insert(3) } }
        try leaveOpen(sr, [.createSnapshot(3, origin: 2), .delete(1)]) {
            try $0.setPendingSwitch(volume: volume.uuid, thinID: 3, virtualSize: 1 << 30, dataSource: volume.uuid)
        }
        try sr.open().recovered()
        #expect(sr.poolMessages == ["create_snap 3 2", "delete 1", "set_transaction_id 0 1"])
        #expect(sr.poolThinIDs == [2, 3])
        #expect(try sr.catalog().volume(matching: "v")?.thinID == 3)
    }

    @Test("a resend refused for another reason than done stops recovery")
    func resendRefused() throws {
        let sr = try TestSR()
        try sr.addVolume("v", thinID: 1)
        try leaveOpen(sr, [.createSnapshot(3, origin: 9), .delete(1)])
        #expect { try sr.open().recovered() } throws: { ($0 as? ThinError)?.message.hasPrefix("recovery:") == true }
        #expect(sr.openTransaction != nil)
    }

    @Test("creates at the old id are undone, whether or not they were sent", arguments: [false, true])
    func undoes(sent: Bool) throws {
        let sr = try TestSR()
        if sent { sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.thinIDs = [1] } }
        try leaveOpen(sr, [.createThin(1)]) { try $0.insert(row("a", 1, .creating)) }
        try sr.open().recovered()
        #expect(sr.poolMessages == ["delete 1"] && sr.poolThinIDs.isEmpty)
        let catalog = try sr.catalog()
        #expect(try catalog.pending() == nil && catalog.volumes(includingUnfinished: true).isEmpty)
    }

    @Test("an undo that cannot delete stops recovery")
    func undoRefused() throws {
        let sr = try TestSR()
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.thinIDs = [1] }
        try leaveOpen(sr, [.createThin(1)]) { try $0.insert(row("a", 1, .creating)) }
        sr.deviceMapper.fail(sr.message("delete 1"), .busy)
        #expect { try sr.open().recovered() } throws: { ($0 as? ThinError)?.message.hasPrefix("recovery:") == true }
        #expect(sr.openTransaction != nil)
    }

    @Test("a destroy at the old id is undone by putting the row back")
    func undoDestroyRow() throws {
        let sr = try TestSR()
        try sr.addVolume("a", thinID: 1)
        try leaveOpen(sr, [.createThin(2)]) { try $0.setState(.destroying, volume: try #require(try $0.volume(matching: "a")).uuid) }
        try sr.open().recovered()
        #expect(try sr.catalog().volume(matching: "a")?.state == .ready)
    }

    @Test("a pool id on neither side of the open transaction: the SR needs checking")
    func neither() throws {
        let sr = try TestSR()
        try leaveOpen(sr, [.createThin(1)])
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.transactionID = 7 }
        #expect { try sr.open().recovered() } throws: { ($0 as? ThinError)?.code == .catalogInconsistent }
    }

    @Test("a failed transaction makes the next operation on the same open SR recover again")
    func recoverAfterFailure() throws {
        let sr = try TestSR()
        let open = try sr.open()
        sr.deviceMapper.fail(sr.message("set_transaction_id 0 1"))
        #expect(throws: ThinError.self) { try open.volumes.createVolume(name: "a", description: "", sizeBytes: 1 << 20, sharable: false) }
        sr.deviceMapper.clearCalls()
        try open.volumes.createVolume(name: "b", description: "", sizeBytes: 1 << 20, sharable: false)
        // The open create is undone first (delete 1); ids are not reused at once (next id is a hint that only grows).
        #expect(sr.poolMessages == ["delete 1", "create_thin 2", "set_transaction_id 0 1"])
        #expect(try sr.catalog().volumes().map(\.key) == ["b"])
    }

    @Test("one recovery finishes everything a kill left: devices first, then the open transaction")
    func everythingAtOnce() throws {
        let sr = try TestSR()
        let held = try sr.addVolume("held", thinID: 1)
        sr.attachDevice(held, suspended: true)
        try System.touch(sr.names.devicesChangingMarker)
        try leaveOpen(sr, [.createSnapshot(2, origin: 1)]) {
            try $0.insert(row("snap", 2, .creating))
        }
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.thinIDs.insert(2) }
        try sr.open().recovered()
        let calls = sr.deviceMapper.calls
        let resume = try #require(calls.firstIndex(of: "resume \(sr.names.volumeDevice(held.uuid).name)"))
        let undo = try #require(calls.firstIndex(of: sr.message("delete 2")))
        #expect(resume < undo)
        #expect(sr.poolThinIDs == [1] && sr.openTransaction == nil && !System.exists(sr.names.devicesChangingMarker))
    }

    @Test("recovery runs once per open SR: two operations read the pool's status once")
    func once() throws {
        let sr = try TestSR()
        let open = try sr.open()
        try open.volumes.createVolume(name: "a", description: "", sizeBytes: 1 << 20, sharable: false)
        try open.volumes.createVolume(name: "b", description: "", sizeBytes: 1 << 20, sharable: false)
        #expect(sr.deviceMapper.calls.filter { $0.hasPrefix("status ") }.count == 1)
        #expect(sr.poolMessages == ["create_thin 1", "set_transaction_id 0 1", "create_thin 2", "set_transaction_id 1 2"])
    }

    @Test("opening by uuid reads no device and runs no LVM command; a write op adds only what it needs")
    func onePass() throws {
        let sr = try TestSR()
        let open = try sr.open()
        #expect(sr.deviceMapper.calls.isEmpty && sr.lvm.calls.isEmpty)
        try open.volumes.createVolume(name: "a", description: "", sizeBytes: 1 << 20, sharable: false)
        #expect(sr.deviceMapper.calls == ["status \(sr.names.poolDevice)", sr.message("create_thin 1"),
                                          sr.message("set_transaction_id 0 1")])
        #expect(sr.lvm.calls.isEmpty)
    }
}

@Suite("device recovery")
struct DeviceRecoveryTests {
    @Test("a reader resumes a device a dead writer left suspended, but leaves a live writer's alone")
    func readerResumes() throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("v", thinID: 1)
        sr.attachDevice(volume, suspended: true)
        let device = sr.names.volumeDevice(volume.uuid).name
        try System.touch(sr.names.devicesChangingMarker)
        let writer = try sr.open(.write)
        try sr.open(.read).close()
        #expect(sr.deviceMapper.device(device)?.suspended == true)
        writer.close()
        let reader = try sr.open(.read)
        #expect(sr.deviceMapper.device(device)?.suspended == false && !System.exists(sr.names.devicesChangingMarker))
        // The reader gave the SR lock back once it had recovered.
        #expect(try FileLock.attempt(path: sr.names.lockFile, mode: .exclusive) != nil)
        reader.close()
    }

    @Test("a reader settles an open transaction a dead writer left, so it lists what the pool holds")
    func readerSettles() throws {
        let sr = try TestSR()
        try sr.addVolume("a", thinID: 1)
        let catalog = try sr.catalog()
        let created = VolumeRecord(uuid: UUID(), key: "b", name: "b", description: "", thinID: 2, virtualSize: 1 << 20,
                                   kind: .volume, readWrite: true, sharable: false, createdAt: 1, keys: [:],
                                   parentUUID: nil, snapshotOf: nil, state: .creating)
        try catalog.insert(created)
        try catalog.setPending(PendingTransaction(from: 0, messages: [.createThin(2)]))
        catalog.close()
        // The kill came after set_transaction_id: the pool has b.
        sr.deviceMapper.updatePool(sr.names.poolDevice) { pool in
            pool.thinIDs.insert(2)
            pool.transactionID = 1
        }
        let reader = try sr.open(.read)
        defer { reader.close() }
        #expect(try reader.catalog.volumes().map(\.key).sorted() == ["a", "b"])
        #expect(sr.openTransaction == nil)
    }

    @Test("with the marker a killed change leaves, a suspended device is resumed and a short one grown")
    func reconciles() throws {
        let sr = try TestSR()
        let short = try sr.addVolume("short", thinID: 1, size: 2 << 20)
        let held = try sr.addVolume("held", thinID: 2)
        sr.attachDevice(short, sizeBytes: 1 << 20)
        sr.attachDevice(held, suspended: true)
        try System.touch(sr.names.devicesChangingMarker)
        try sr.open().recovered()
        #expect(sr.deviceMapper.device(sr.names.volumeDevice(held.uuid).name)?.suspended == false)
        #expect(sr.deviceMapper.device(sr.names.volumeDevice(short.uuid).name)?.table.first?.lengthSectors == 4096)
        #expect(!System.exists(sr.names.devicesChangingMarker))
    }

    @Test("without the marker no device is listed or touched")
    func noMarker() throws {
        let sr = try TestSR()
        let held = try sr.addVolume("held", thinID: 1)
        sr.attachDevice(held, suspended: true)
        try sr.open().recovered()
        #expect(!sr.deviceMapper.calls.contains("list"))
        #expect(sr.deviceMapper.device(sr.names.volumeDevice(held.uuid).name)?.suspended == true)
    }

    @Test("a snapshot of an attached origin suspends it, with the marker set, around the transaction")
    func snapshotSuspends() throws {
        let sr = try TestSR()
        let (_, device) = try sr.addAttachedVolume("origin", thinID: 1)
        sr.watchMarker()
        try sr.open().volumes.copyVolume("origin", kind: .snapshot, name: nil)
        #expect(sr.markerPresent(at: "suspend \(device)") == true)
        #expect(sr.markerPresent(at: "resume \(device)") == true)
        let calls = sr.deviceMapper.calls
        let suspend = try #require(calls.firstIndex(of: "suspend \(device)"))
        let resume = try #require(calls.firstIndex(of: "resume \(device)"))
        let snap = try #require(calls.firstIndex(of: sr.message("create_snap 2 1")))
        #expect(suspend < snap && snap < resume)
        #expect(!System.exists(sr.names.devicesChangingMarker))
    }

    @Test("a suspend that fails leaves no open transaction: a later command must not revert the volume after all")
    func suspendFails() throws {
        let (sr, device) = try volumeWithAttachedSnapshot()
        sr.deviceMapper.fail("suspend \(device)")
        #expect(throws: ThinError.self) { try sr.open().volumes.revertVolume("v", to: "s") }
        #expect(sr.openTransaction == nil && sr.poolMessages.isEmpty)
        try sr.open().recovered()
        let reverted = try sr.catalog().volume(matching: "v")
        #expect(sr.poolMessages.isEmpty && reverted?.thinID == 1)
    }

    @Test("a resume that fails after the snapshot keeps the marker; the next operation resumes the origin")
    func resumeFails() throws {
        let sr = try TestSR()
        let (_, device) = try sr.addAttachedVolume("origin", thinID: 1)
        sr.deviceMapper.fail("resume \(device)")
        #expect { try sr.open().volumes.copyVolume("origin", kind: .snapshot, name: nil) }
            throws: { ($0 as? ThinError)?.message.hasPrefix("the snapshot was made, but origin could not be resumed") == true }
        #expect(sr.deviceMapper.device(device)?.suspended == true && System.exists(sr.names.devicesChangingMarker))
        // The snapshot is whole: its transaction completed before the failure was reported.
        #expect(try sr.catalog().volumes().count == 2 && sr.poolMessages.last == "set_transaction_id 0 1")
        try sr.open().recovered()
        #expect(sr.deviceMapper.device(device)?.suspended == false && !System.exists(sr.names.devicesChangingMarker))
    }

    @Test("growing an attached volume loads the new table and resumes it, with the marker set")
    func resizeAttached() throws {
        let sr = try TestSR()
        let (_, device) = try sr.addAttachedVolume("v", thinID: 1, size: 1 << 20)
        sr.watchMarker()
        try sr.open().volumes.resizeVolume("v", to: 2 << 20)
        #expect(sr.markerPresent(at: "reload \(device)") == true)
        #expect(sr.deviceMapper.calls.filter { $0.hasSuffix(device) }.suffix(2) == ["reload \(device)", "resume \(device)"])
        #expect(sr.deviceMapper.device(device)?.table.first?.lengthSectors == 4096)
        #expect(try sr.catalog().volume(matching: "v")?.virtualSize == 2 << 20)
        #expect(!System.exists(sr.names.devicesChangingMarker))
    }
}

@Suite("finding an attached SR")
struct OpenTests {
    @Test("by name, among the catalogs mounted here; the others are left alone")
    func byName() throws {
        let sr = try TestSR()
        let other = try sr.addAttachedSR(named: "elsewhere")
        let name = try sr.catalog().srRecord().name
        let open = try AttachedSR.open(name, for: .write, host: sr.host)
        #expect(open.names == sr.names && other != sr.names)
        #expect(try AttachedSR.open("elsewhere", for: .read, host: sr.host).names == other)
    }

    @Test("a name two attached SRs share is ambiguous")
    func ambiguous() throws {
        let sr = try TestSR()
        _ = try sr.addAttachedSR(named: "twin")
        _ = try sr.addAttachedSR(named: "twin")
        #expect { try AttachedSR.open("twin", for: .read, host: sr.host) }
            throws: { ($0 as? ThinError)?.code == .invalidArgument && ($0 as? ThinError)?.message.contains("ambiguous") == true }
    }

    @Test("a detached SR is told from a missing one (through LVM, only then)")
    func notAttached() throws {
        let sr = try TestSR(attached: false)
        #expect { try AttachedSR.open(sr.names.uuidString, for: .read, host: sr.host) }
            throws: { ($0 as? ThinError)?.code == .srNotAttached }
        #expect { try AttachedSR.open("no-such-sr", for: .read, host: sr.host) }
            throws: { ($0 as? ThinError)?.code == .srDoesNotExist }
        let attached = try TestSR()
        _ = try attached.open(.read)
        #expect(attached.lvm.calls.isEmpty, "an attached SR is opened without LVM")
    }
}
