import FoundationEssentials
import Synchronization
import Testing
import ThinDeviceMapper
@testable import ThinTools
@testable import ThinCore
#if canImport(Glibc)
import Glibc
#endif

/// thinsr as a storage-motion destination (issue 31): compose, and the
/// servers of a holder's attachment, against the recording doubles.
@Suite("inbound migration")
struct InboundTests {
    /// A leaf (thin id 1, 4 MiB) mapping blocks 0-1 and 10, and a parent (thin id 2, 4 MiB).
    private func leafAndParent(parentSize: UInt64 = 4 << 20) throws -> (TestSR, VolumeRecord, VolumeRecord) {
        let sr = try TestSR()
        let leaf = try sr.addVolume("leaf", thinID: 1, size: 4 << 20)
        let parent = try sr.addVolume("parent", thinID: 2, size: parentSize)
        sr.programs.state.withLock {
            $0.mappings[1] = ThinDeviceMappings(deviceID: 1, creationTime: 0, runs: [
                .init(begin: 0, length: 2, time: 1), .init(begin: 10, length: 1, time: 1)])
        }
        return (sr, leaf, parent)
    }

    @Test("compose snapshots the parent, copies only the leaf's mapped blocks onto it, then switches the leaf")
    func compose() async throws {
        let (sr, leaf, parent) = try leafAndParent()
        sr.watchMarker()
        let open = try sr.open()
        let composed = try await open.volumes.composeVolume("leaf", onto: "parent")
        open.close()
        // (thin_dump reads the child's mappings through the pool's metadata snapshot.)
        #expect(sr.poolMessages.filter { !$0.hasSuffix("metadata_snap") }
                    == ["create_snap 3 2", "set_transaction_id 0 1", "delete 1", "set_transaction_id 1 2"])
        let source = sr.names.hydrationDevice(leaf.uuid, .source)
        let destination = sr.names.hydrationDevice(leaf.uuid, .destination)
        let block: UInt64 = 65536
        #expect(sr.system.state.withLock { $0.calls }.filter { $0.hasPrefix("copy") }
                    == ["copy \(source.path) \(destination.path) 0-\(2 * block),\(10 * block)-\(11 * block)"])
        let after = try #require(try sr.catalog().volume(matching: "leaf"))
        #expect(after.uuid == leaf.uuid && after.thinID == 3 && composed.thinID == 3)
        #expect(after.dataSource == parent.uuid && after.hydrateMetaID == nil && after.hydrateOwner == nil)
        #expect(sr.poolThinIDs == [2, 3])
        // The copy's devices are gone; the parent is untouched.
        #expect(sr.deviceMapper.device(source.name) == nil && sr.deviceMapper.device(destination.name) == nil)
        #expect(try sr.catalog().volume(matching: "parent")?.thinID == 2)
        // The devices-changing marker covered the whole compose (a read after a kill recovers first)
        // and is gone once it is whole.
        #expect(sr.markerPresent(at: sr.message("create_snap 3 2")) == true)
        #expect(sr.markerPresent(at: "create \(source.name)") == true)
        #expect(sr.markerPresent(at: sr.message("delete 1")) == true)
        #expect(!System.exists(sr.names.devicesChangingMarker))
    }

    @Test("compose refuses itself, a snapshot child, a larger parent, an attached volume and an unknown parent, sending nothing")
    func composeRefusals() async throws {
        let (sr, leaf, _) = try leafAndParent(parentSize: 8 << 20)
        try sr.addVolume("small", thinID: 4, size: 1 << 20)
        let snapshot = try sr.addVolume("snap", thinID: 5, kind: .snapshot, parent: leaf.uuid, size: 4 << 20)
        let cases: [(String, String, ErrorCode)] = [
            ("leaf", "leaf", .invalidArgument), ("snap", "small", .invalidArgument),
            ("leaf", "parent", .invalidArgument), ("leaf", "nosuch", .volumeDoesNotExist),
        ]
        for (child, parent, code) in cases {
            let open = try sr.open()
            defer { open.close() }
            await #expect { try await open.volumes.composeVolume(child, onto: parent) } throws: {
                ($0 as? ThinError)?.code == code
            }
        }
        sr.attachDevice(snapshot, readOnly: true)
        sr.attachDevice(leaf)
        let open = try sr.open()
        defer { open.close() }
        await #expect { try await open.volumes.composeVolume("leaf", onto: "small") } throws: {
            ($0 as? ThinError)?.code == .volumeInUse
        }
        #expect(sr.poolMessages.filter { !$0.hasSuffix("metadata_snap") }.isEmpty)
        #expect(!sr.system.state.withLock { $0.calls }.contains { $0.hasPrefix("copy") })
    }

    @Test("a compose killed after its snapshot is undone by the next writer: the new device deleted, the leaf as it was")
    func killedComposeIsUndone() throws {
        let (sr, leaf, _) = try leafAndParent()
        // What a compose killed between its two transactions leaves: the new device, owned by a dead process.
        let catalog = try sr.catalog()
        try catalog.setHydrateMetaID(3, volume: leaf.uuid)
        try catalog.setOwner("\(System.bootID()) 999999 1", of: .hydrating, volume: leaf.uuid)
        catalog.close()
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.thinIDs.insert(3) }
        let open = try sr.open()
        _ = try open.recovered()
        open.close()
        #expect(sr.poolMessages == ["delete 3", "set_transaction_id 0 1"])
        let after = try #require(try sr.catalog().volume(matching: "leaf"))
        #expect(after.thinID == 1 && after.hydrateMetaID == nil && after.hydrateOwner == nil)
    }

    @Test("a holder's server needs the volume attached for it (a receiver: active), and is given again while it lives")
    func holderServerPlan() async throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("disk", thinID: 1, size: 1 << 20)
        var open = try sr.open()
        #expect(throws: ThinError.self) { try open.attachments.holderServerPlan("disk", holder: "MIR1", kind: .nbd) }
        _ = try await open.attachments.attachVolume("disk", readOnly: false, inactive: true, holder: "MIR1")
        do {
            try open.attachments.holderServerPlan("disk", holder: "MIR1", kind: .receiver)
            Issue.record("a receiver for an inactive volume was not refused")
        } catch { #expect(error.code == .volumeNotActive) }
        guard case .start(let setup) = try open.attachments.holderServerPlan("disk", holder: "MIR1", kind: .nbd) else {
            Issue.record("no server to start")
            return
        }
        #expect(setup.socket.hasPrefix("\(Paths.runRoot)/nbd/") && setup.socket.utf8.count < 108)
        #expect(setup.address.split(separator: ":", omittingEmptySubsequences: false).count == 4)
        #expect(setup.address == "nbd:unix:\(setup.socket):exportname=\(volume.uuid.lowercased)" && !setup.readOnly)
        #expect(setup.socket != HolderServer.socketPath(volume: volume.uuid, holder: "MIR2", kind: .nbd))
        // A live record (this test process stands for the server) makes the plan give it again.
        let server = HolderServer(holder: "MIR1", kind: .nbd, pid: getpid(), startTime: System.processStartTime(getpid()),
                                  socket: setup.socket, address: setup.address)
        try System.makeDirectories(sr.names.serversDirectory(volume.uuid))
        try System.writeFile(setup.record, server.content)
        guard case .running(let running) = try open.attachments.holderServerPlan("disk", holder: "MIR1", kind: .nbd) else {
            Issue.record("a live server was not given again")
            return
        }
        #expect(running == server)
        // A dead one's record is dropped.
        try System.writeFile(setup.record, "999999 1\n\(setup.socket)\n\(setup.address)\n")
        guard case .start = try open.attachments.holderServerPlan("disk", holder: "MIR1", kind: .nbd) else {
            Issue.record("a dead server was given")
            return
        }
        #expect(!System.exists(setup.record))
        open.close()
        open = try sr.open()
        try open.attachments.detachVolume("disk", holder: "MIR1")
        open.close()
    }

    @Test("a receiver serves each passed descriptor with nbdkit -s until stopped, then stops them and flushes")
    func receiver() async throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("disk", thinID: 1, size: 1 << 20)
        let open = try sr.open()
        _ = try await open.attachments.attachVolume("disk", readOnly: false, holder: "7")
        open.close()
        let system = RecordingJobSystem()
        system.state.withLock { $0.passed = [("dp-7", 41)] }
        let looks = Atomic<Int>(0)
        let context = JobContext(sr: sr.names.uuidString, host: sr.host, system: system,
                                 cancellation: JobCancellation { looks.add(1, ordering: .relaxed).newValue > 3 })
        let address = Mutex<String?>(nil)
        try await ServeJob(context).runForHolder("disk", holder: "7", kind: .receiver, pidFile: nil) { server in
            address.withLock { $0 = server.address }
        }
        let socket = HolderServer.socketPath(volume: volume.uuid, holder: "7", kind: .receiver)
        #expect(address.withLock { $0 } == socket)
        let calls = system.calls
        #expect(calls.first == "listen \(socket)")
        #expect(calls.contains("serve nbdkit on 41") && calls.contains("close 41"))
        #expect(system.lastArguments == ["-s", "--exit-with-parent", "file", "file=\(sr.names.volumeDevice(volume.uuid).path)"])
        #expect(calls.last == "close 101" && calls.contains { $0.hasPrefix("stop ") })
        #expect(sr.system.state.withLock { $0.calls }.contains("flush \(sr.names.volumeDevice(volume.uuid).path)"))
        #expect(!System.exists(sr.names.serverRecord(volume.uuid, holder: "7", kind: .receiver)))
    }
}
