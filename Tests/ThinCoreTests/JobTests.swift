import FoundationEssentials
import Testing
import Synchronization
import ThinDeviceMapper
@testable import ThinLVM
import ThinTools
#if canImport(Glibc)
import Glibc
#endif
@testable import ThinCore

/// A job against the doubles: an SR with one volume of two mapped 64 KiB
/// blocks, the job system, progress and a cancel token the test holds.
struct JobBench {
    let sr: TestSR
    let system = RecordingJobSystem()
    let progress = RecordingProgress()
    let token = CancelToken()
    let volume: VolumeRecord
    let directory: String

    init() throws {
        sr = try TestSR()
        volume = try sr.addVolume("disk", thinID: 1, size: 1 << 20)
        let id = volume.thinID.value
        sr.programs.state.withLock {
            $0.mappings[id] = ThinDeviceMappings(deviceID: id, creationTime: 0, runs: [.init(begin: 0, length: 2, time: 1)])
        }
        directory = "\(TestSR.root)/images-\(sr.names.hex.prefix(8))"
        try System.makeDirectories(directory)
    }

    var context: JobContext {
        JobContext(sr: sr.names.uuidString, host: sr.host, system: system, progress: progress,
                   cancellation: token.cancellation)
    }

    func export(to name: String = "disk.qcow2", format: DiskFormat = .qcow2) -> ExportRequest {
        ExportRequest(volume: "disk", file: name == "-" ? "-" : "\(directory)/\(name)", format: format, base: nil,
                      baseImage: nil)
    }

    func serve(writable: Bool = false, volume: String = "disk") -> ServeRequest {
        ServeRequest(volume: volume, socket: "\(directory)/nbd.sock", port: nil, bind: nil, writable: writable,
                     tlsCertificates: nil, tlsPSK: nil, exportName: nil, pidFile: "\(directory)/serve.pid")
    }

    /// The volume's holders now, and whether its device exists.
    func holders(of volume: VolumeRecord? = nil) throws -> [String] {
        let open = try sr.open(.read)
        defer { open.close() }
        return open.attachments.volumeHolders(volume ?? self.volume)
    }

    func attached(_ volume: VolumeRecord? = nil) -> Bool {
        sr.deviceMapper.device(sr.names.volumeDevice((volume ?? self.volume).uuid).name) != nil
    }

    func transferFiles() -> [String] { System.directoryEntries("\(sr.names.runDirectory)/transfers") }

    /// Everything a lease takes is let go: no holder, no device, no descriptor, no scratch file.
    func expectReleased(_ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try holders().isEmpty, comment, sourceLocation: sourceLocation)
        #expect(!attached(), comment, sourceLocation: sourceLocation)
        #expect(system.held.isEmpty, comment, sourceLocation: sourceLocation)
        #expect(transferFiles().isEmpty, comment, sourceLocation: sourceLocation)
    }
}

@Suite("export job")
struct ExportJobTests {
    @Test("an export reads the mapped blocks through nbdkit's extent list into qemu-img, holding the volume meanwhile")
    func exportHoldsThenReleases() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.fractions = [0.5, 1] }
        let process = ProcessClaim.holderName()
        bench.system.whileRunning {
            // While the engine runs: attached read-only for this process, the device open, the extent list written.
            #expect((try? bench.holders()) == [process])
            #expect(bench.sr.deviceMapper.device(bench.sr.names.volumeDevice(bench.volume.uuid).name)?.readOnly == true)
            #expect(bench.system.held.count == 1)
            let list = bench.transferFiles().first.flatMap { System.readFile("\(bench.sr.names.runDirectory)/transfers/\($0)") }
            #expect(list == "0 131072\n131072 917504 hole,zero\n")
        }
        let outcome = try await ExportJob(bench.context).run(bench.export())
        #expect(outcome.extents.dataBytes == 131072 && outcome.volume.key == "disk" && outcome.recordFailure == nil)
        let arguments = bench.system.lastArguments
        #expect(arguments.starts(with: ["-U", "-", "-r", "--exit-with-parent", "--filter=extentlist", "file"]))
        let engine = try #require(arguments.last)
        #expect(engine.hasPrefix("'/usr/bin/qemu-img' 'convert' '-p' '-f' 'raw' '-O' 'qcow2' \"$uri\" '\(bench.directory)/.disk.qcow2.thinvdi-export-"))
        #expect(bench.progress.recorded == ["begin export 131072", "update 65536", "update 131072", "finish"])
        #expect(System.exists("\(bench.directory)/disk.qcow2"), "the temporary image is renamed over the file")
        #expect(ExportRecords.lastExport(sr: bench.sr.names, volume: bench.volume) == "\(bench.directory)/disk.qcow2")
        try bench.expectReleased()
        #expect(System.directoryEntries(bench.directory) == ["disk.qcow2"])
    }

    @Test("without nbdkit's filters (XCP-ng) a raw export writes the extents itself, renamed when whole")
    func exportWithoutFilters() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.missing = ["nbdkit-filters"] }
        var request = bench.export()
        request.format = .raw
        request.file = "\(bench.directory)/disk.raw"
        let outcome = try await ExportJob(bench.context).run(request)
        #expect(outcome.extents.dataBytes == 131072)
        #expect(!bench.system.calls.contains { $0.hasPrefix("engine") })
        #expect(bench.system.calls.contains { $0.hasPrefix("write extents") && $0.contains("/.disk.raw.thinvdi-export-") })
        #expect(bench.progress.recorded == ["begin export 131072", "update 131072", "finish"])
        #expect(System.directoryEntries(bench.directory) == ["disk.raw"])
        try bench.expectReleased()
    }

    @Test("without nbdkit's filters a qcow2 export goes through sparse raw and qemu-img; --base is refused, Not_available")
    func exportConvertedWithoutFilters() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.missing = ["nbdkit-filters"] }
        _ = try await ExportJob(bench.context).run(bench.export())
        let arguments = bench.system.lastArguments
        #expect(bench.system.calls.filter { $0.hasPrefix("engine") } == ["engine qemu-img"])
        #expect(arguments.starts(with: ["convert", "-p", "-f", "raw", "-O", "qcow2"]))
        #expect(arguments.last?.hasPrefix("\(bench.directory)/.disk.qcow2.thinvdi-export-") == true)
        #expect(System.directoryEntries(bench.directory) == ["disk.qcow2"], "the raw scratch image is gone")
        var incremental = bench.export()
        incremental.base = "snap"
        let refused = await #expect(throws: ThinError.self) { _ = try await ExportJob(bench.context).needsFallback(incremental) }
        #expect(refused?.code == .notAvailable && refused?.message.contains("extentlist filter") == true)
        try bench.expectReleased()
    }

    @Test("a failing engine: its last message in the error, the file untouched, the lease released")
    func engineFailure() async throws {
        let bench = try JobBench()
        try System.writeFile("\(bench.directory)/disk.qcow2", "old image")
        bench.system.state.withLock {
            $0.exitStatus = 1
            $0.messages = "qemu-img: first\nqemu-img: Could not write\n"
        }
        let refused = await #expect(throws: ThinError.self) { try await ExportJob(bench.context).run(bench.export()) }
        #expect(refused?.code == .backendFailure && refused?.message == "export of disk failed: qemu-img: Could not write")
        #expect(System.readFile("\(bench.directory)/disk.qcow2") == "old image")
        #expect(System.directoryEntries(bench.directory) == ["disk.qcow2"], "no temporary image is left")
        try bench.expectReleased()
    }

    @Test("a cancel during the copy: Cancelled, the file as it was, the lease released")
    func cancelDuringCopy() async throws {
        let bench = try JobBench()
        let token = bench.token
        bench.system.whileRunning { token.cancel() }
        let refused = await #expect(throws: ThinError.self) { try await ExportJob(bench.context).run(bench.export()) }
        #expect(refused?.code == .cancelled && refused?.message.contains("\(bench.directory)/disk.qcow2 is unchanged") == true)
        #expect(!System.exists("\(bench.directory)/disk.qcow2"))
        #expect(!bench.progress.recorded.contains("finish"))
        try bench.expectReleased()
    }

    @Test("a device that cannot be opened ends the job before any copy, with the volume let go")
    func holdFailure() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.holdFailure = ThinError(.backendFailure, "cannot open the device") }
        await #expect(throws: ThinError.self) { try await ExportJob(bench.context).run(bench.export()) }
        #expect(!bench.system.calls.contains { $0.hasPrefix("engine") })
        try bench.expectReleased()
    }

    @Test("a missing engine is named with its package; the lease is released")
    func missingEngine() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.missing = ["qemu-img"] }
        let refused = await #expect(throws: ThinError.self) { try await ExportJob(bench.context).run(bench.export()) }
        #expect(refused?.message == "qemu-img not found; install qemu-utils (qemu-dp on XCP-ng)")
        try bench.expectReleased()
        #expect(System.directoryEntries(bench.directory).isEmpty)
    }

    @Test("a volume attached read-write is refused before anything is held")
    func refusedWhileWritable() async throws {
        let bench = try JobBench()
        bench.sr.attachDevice(bench.volume)
        let refused = await #expect(throws: ThinError.self) { try await ExportJob(bench.context).run(bench.export()) }
        #expect(refused?.code == .volumeInUse)
        #expect(bench.system.calls.isEmpty)
        #expect(bench.attached() && bench.sr.deviceMapper.device(bench.sr.names.volumeDevice(bench.volume.uuid).name)?.readOnly == false)
        #expect(try !bench.holders().contains(ProcessClaim.holderName()))
    }

    @Test("to standard output: nbdcopy with its progress on stderr, nothing renamed or recorded")
    func toStandardOutput() async throws {
        let bench = try JobBench()
        let outcome = try await ExportJob(bench.context).run(bench.export(to: "-", format: .raw))
        #expect(bench.system.lastArguments.last == "'/usr/bin/nbdcopy' --progress=2 \"$uri\" -")
        #expect(outcome.recordFailure == nil)
        #expect(ExportRecords.lastExport(sr: bench.sr.names, volume: bench.volume) == nil)
        try bench.expectReleased()
    }
}

@Suite("serve job and leases")
struct ServeJobTests {
    @Test("a server gets the extent list, announces its URI and pid file, and lets everything go when it stops")
    func serveAndStop() async throws {
        let bench = try JobBench()
        let announced = Mutex<[String]>([])
        let pidFile = "\(bench.directory)/serve.pid"
        bench.system.whileRunning {
            #expect(System.readFile(pidFile) == "\(getpid())\n")
            #expect((try? bench.holders()) == [ProcessClaim.holderName()])
        }
        try await ServeJob(bench.context).run(bench.serve()) { uri in announced.withLock { $0.append(uri) } }
        #expect(announced.withLock { $0 } == ["nbd+unix:///disk?socket=\(bench.directory)/nbd.sock"])
        let arguments = bench.system.lastArguments
        #expect(arguments.contains("-r") && arguments.contains("--filter=extentlist") && arguments.contains("disk"))
        #expect(!System.exists(pidFile))
        try bench.expectReleased()
    }

    @Test("a server that fails says its status; one stopped by a cancel does not fail")
    func serverStatus() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.exitStatus = 3 }
        let refused = await #expect(throws: ThinError.self) { try await ServeJob(bench.context).run(bench.serve()) { _ in } }
        #expect(refused?.message == "nbdkit exited with status 3 serving disk (see its messages above)")
        try bench.expectReleased()
        let token = bench.token
        bench.system.whileRunning { token.cancel() }
        try await ServeJob(bench.context).run(bench.serve()) { _ in }
        try bench.expectReleased()
    }

    @Test("another process's read lease is shared: a writable server is refused, and the device stays after ours")
    func readersShareWritersWait() async throws {
        let bench = try JobBench()
        let other = ProcessClaim.holderName(1)   // init: a live process other than this one
        let open = try bench.sr.open()
        // As that process's own lease leaves it: attached read-only, its holder beside the device.
        _ = try await open.attachments.attachVolume("disk", readOnly: true)
        try open.attachments.holders(of: bench.volume).add(other)
        open.close()
        let refused = await #expect(throws: ThinError.self) {
            try await ServeJob(bench.context).run(bench.serve(writable: true)) { _ in }
        }
        #expect(refused?.code == .volumeInUse && bench.system.calls.isEmpty)
        let process = ProcessClaim.holderName()
        bench.system.whileRunning { #expect((try? bench.holders()) == [other, process].sorted()) }
        _ = try await ExportJob(bench.context).run(bench.export())
        #expect(try bench.holders() == [other] && bench.attached(), "the other reader still holds it")
        #expect(bench.system.held.isEmpty)
        let closing = try bench.sr.open()
        defer { closing.close() }
        // That process ends: its holder goes, and a detach removes the device.
        closing.attachments.holders(of: bench.volume).remove(other)
        try closing.attachments.detachVolume("disk")
        try bench.expectReleased()
    }

    @Test("a dead process's lease does not count: its holder is dropped and the attach is kept as a plain one")
    func deadProcessLease() async throws {
        let bench = try JobBench()
        let dead = ProcessClaim.holderName(999_999_999)
        let open = try bench.sr.open()
        _ = try await open.attachments.attachVolume("disk", readOnly: true)
        try open.attachments.holders(of: bench.volume).add(dead)
        open.close()
        _ = try await ExportJob(bench.context).run(bench.export())
        #expect(try bench.holders() == [VolumeHolders.unnamed] && bench.attached(),
                "the device it left stays attached until a detach, as any attach without a holder")
        #expect(bench.system.held.isEmpty && bench.transferFiles().isEmpty)
    }

    @Test("a writable server takes a detached volume alone, and refuses a snapshot before holding anything")
    func writableServer() async throws {
        let bench = try JobBench()
        bench.system.whileRunning {
            #expect(bench.sr.deviceMapper.device(bench.sr.names.volumeDevice(bench.volume.uuid).name)?.readOnly == false)
        }
        try await ServeJob(bench.context).run(bench.serve(writable: true)) { _ in }
        #expect(bench.system.lastArguments.suffix(4) == ["--filter=limit", "file",
                                                           "file=\(bench.sr.names.devicePath(key: "disk"))", "limit=1"])
        try bench.expectReleased()
        let snapshot = try bench.sr.addVolume("snap", thinID: 2, kind: .snapshot, parent: bench.volume.uuid)
        let refused = await #expect(throws: ThinError.self) { try await ServeJob(bench.context).run(bench.serve(writable: true, volume: "snap")) { _ in } }
        #expect(refused?.code == .invalidArgument)
        #expect(!bench.attached(snapshot))
    }
}

@Suite("serve without nbdkit's filters: qemu-nbd")
struct ServeFallbackTests {
    @Test("without nbdkit's extentlist filter a read-only server is qemu-nbd, read-only for any number of readers")
    func readOnlyThroughQemuNBD() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.missing = ["nbdkit-filters"] }
        let announced = Mutex<[String]>([])
        try await ServeJob(bench.context).run(bench.serve()) { uri in announced.withLock { $0.append(uri) } }
        #expect(announced.withLock { $0 } == ["nbd+unix:///disk?socket=\(bench.directory)/nbd.sock"], "the same URI")
        #expect(bench.system.calls.contains("server qemu-nbd"))
        let arguments = bench.system.lastArguments
        #expect(arguments.contains("-r") && arguments.contains("--shared=0") && arguments.contains("-t"))
        #expect(Array(arguments.drop { $0 != "-k" }.prefix(2)) == ["-k", "\(bench.directory)/nbd.sock"])
        #expect(arguments.last == bench.sr.names.devicePath(key: "disk"))
        #expect(!System.exists("\(bench.directory)/serve.pid"))
        try bench.expectReleased()
    }

    @Test("without nbdkit a writable TCP server is qemu-nbd, one client at a time, and the device is flushed after it")
    func writableThroughQemuNBD() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.missing = ["nbdkit"] }
        var request = bench.serve(writable: true)
        request.socket = nil
        request.port = 10899
        try await ServeJob(bench.context).run(request) { _ in }
        let arguments = bench.system.lastArguments
        #expect(bench.system.calls.contains("server qemu-nbd"))
        #expect(Array(arguments.drop { $0 != "-b" }.prefix(4)) == ["-b", "127.0.0.1", "-p", "10899"])
        #expect(!arguments.contains("-r") && !arguments.contains { $0.hasPrefix("--shared") }, "qemu-nbd's default: one client")
        #expect(bench.sr.system.calls.contains("flush \(bench.sr.names.devicePath(key: "disk"))"))
        try bench.expectReleased()
    }

    @Test("TLS without nbdkit, or neither engine, is refused in one line before anything is held")
    func refusedBeforeHolding() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.missing = ["nbdkit"] }
        var request = bench.serve()
        request.tlsPSK = "/etc/keys.psk"
        let tls = await #expect(throws: ThinError.self) { try await ServeJob(bench.context).run(request) { _ in } }
        #expect(tls?.code == .notAvailable && tls?.message.contains("TLS needs nbdkit") == true)
        #expect(tls?.message.contains("install nbdkit") == true && tls?.message.contains("\n") == false)
        bench.system.state.withLock { $0.missing = ["nbdkit", "qemu-nbd"] }
        let neither = await #expect(throws: ThinError.self) { try await ServeJob(bench.context).run(bench.serve()) { _ in } }
        #expect(neither?.code == .notAvailable && neither?.message.contains("qemu-utils") == true)
        #expect(bench.system.calls.isEmpty && !bench.attached())
        #expect(try bench.holders().isEmpty)
    }
}

@Suite("import job")
struct ImportJobTests {
    func request(size: UInt64 = 1 << 20) -> ImportRequest {
        ImportRequest(name: "in", description: "", file: "-", format: nil, backing: [], size: size, preallocate: false,
                      describe: false)
    }

    @Test("a stream import fills a new volume marked as this process's, then clears the mark and detaches it")
    func streamImport() async throws {
        let bench = try JobBench()
        let outcome = try await ImportJob(bench.context).run(request())
        #expect(outcome.volume.key == "in" && outcome.volume.importOwner == nil && outcome.detachFailure == nil)
        #expect(bench.system.calls == ["copy stdin \(bench.sr.names.devicePath(key: "in")) 1048576"])
        #expect(bench.progress.recorded == ["begin import 0", "update 1048576", "finish"])
        #expect(!bench.attached(outcome.volume))
        #expect(try bench.holders(of: outcome.volume).isEmpty)
    }

    @Test("a stream that ends early imports nothing: the volume it made is removed")
    func shortStream() async throws {
        let bench = try JobBench()
        bench.system.state.withLock { $0.standardInputBytes = 4096 }
        let refused = await #expect(throws: ThinError.self) { try await ImportJob(bench.context).run(request()) }
        #expect(refused?.message.hasPrefix("standard input ended after 4096 of the 1048576 bytes") == true)
        let open = try bench.sr.open(.read)
        defer { open.close() }
        #expect(try open.catalog.volume(matching: "in") == nil)
        #expect(bench.sr.deviceMapper.state.withLock { $0.devices.keys.contains { $0.contains("_v") } } == false)
    }

    @Test("a cancel before the copy removes the volume and reports import cancelled")
    func cancelledImport() async throws {
        let bench = try JobBench()
        bench.token.cancel()
        let refused = await #expect(throws: ThinError.self) { try await ImportJob(bench.context).run(request()) }
        #expect(refused?.code == .cancelled && refused?.message == "import cancelled")
        #expect(bench.system.calls.isEmpty, "nothing was copied")
        let open = try bench.sr.open(.read)
        defer { open.close() }
        #expect(try open.catalog.volume(matching: "in") == nil)
    }

    @Test("an import whose process is gone is removed by the next writer; a live one's is kept")
    func abandonedImportTakenOver() async throws {
        let bench = try JobBench()
        let dead = try bench.sr.addVolume("dead", thinID: 2)
        let live = try bench.sr.addVolume("live", thinID: 3)
        let catalog = try bench.sr.catalog()
        try catalog.setOwner("\(System.bootID()) 999999999 1", of: .filling, volume: dead.uuid)
        try catalog.setOwner(ProcessClaim.current.ownerMark, of: .filling, volume: live.uuid)
        catalog.close()
        let open = try bench.sr.open()
        defer { open.close() }
        _ = try open.recovered()
        #expect(try open.catalog.volume(matching: "dead") == nil)
        #expect(try open.catalog.volume(matching: "live")?.importOwner == ProcessClaim.current.ownerMark)
    }
}

@Suite("zeroing and hydration jobs")
struct ZeroingJobTests {
    func bench(freeBytes: UInt64 = 1 << 30) throws -> JobBench {
        let bench = try JobBench()
        bench.sr.lvm.state.withLock {
            $0.volumeGroups = [VolumeGroupReport(name: TestSR.group, sizeBytes: 4 << 30, freeBytes: freeBytes,
                                                 extentBytes: 4 << 20, tags: [])]
        }
        return bench
    }

    @Test("a preallocated volume is zeroed whole without the lock, then released for use")
    func zeroed() async throws {
        let bench = try bench()
        let (volume, view) = try await ZeroingJob(bench.context).createPreallocated(
            name: "db", description: "", sizeBytes: 8 << 20, sharable: false, keepFilling: false)
        #expect(volume.importOwner == nil && view == nil)
        let lv = bench.sr.names.rawLV(volume.uuid)
        #expect(bench.system.calls == ["zero \(Paths.mapperPath(group: TestSR.group, volume: lv)) 0 8388608"])
        #expect(bench.progress.recorded == ["begin zero 8388608", "update 8388608", "finish"])
    }

    @Test("a cancelled or failed zeroing removes the volume it began")
    func zeroingFailures() async throws {
        let bench = try bench()
        bench.token.cancel()
        let refused = await #expect(throws: ThinError.self) { try await ZeroingJob(bench.context).createPreallocated(
            name: "db", description: "", sizeBytes: 8 << 20, sharable: false, keepFilling: false) }
        #expect(refused?.message.hasPrefix("zeroing of db") == true && refused?.code == .cancelled)
        let other = try JobBench()
        other.sr.lvm.state.withLock { $0.volumeGroups = bench.sr.lvm.state.withLock { $0.volumeGroups } }
        other.system.state.withLock { $0.zeroFailure = ThinError(.backendFailure, "BLKZEROOUT failed") }
        let failed = await #expect(throws: ThinError.self) { try await ZeroingJob(other.context).createPreallocated(
            name: "db", description: "", sizeBytes: 8 << 20, sharable: false, keepFilling: false) }
        #expect(failed?.message == "BLKZEROOUT failed")
        for sr in [bench.sr, other.sr] {
            let open = try sr.open(.read)
            defer { open.close() }
            #expect(try open.catalog.volume(matching: "db") == nil)
            #expect(sr.lvm.calls.contains { $0.hasPrefix("lvremove") })
        }
    }

    @Test("a resize of a thin volume needs no zeroing and reports no progress")
    func thinResize() async throws {
        let bench = try bench()
        let (volume, _) = try await ZeroingJob(bench.context).resize("disk", to: 2 << 20, describe: false)
        #expect(volume.virtualSize == 2 << 20)
        #expect(bench.system.calls.isEmpty && bench.progress.recorded.isEmpty)
    }

    @Test("hydrating a volume that reads no template does nothing")
    func nothingToHydrate() async throws {
        let bench = try bench()
        let outcome = try await HydrationJob(bench.context).run("disk", threshold: 64, onRead: false)
        #expect(outcome == .nothingToHydrate)
        #expect(bench.system.calls.isEmpty && bench.progress.recorded.isEmpty)
    }

    @Test("a cancel token is raised once and stays raised; never is never")
    func cancelToken() {
        let token = CancelToken()
        let cancellation = token.cancellation
        #expect(!cancellation.isRequested && !JobCancellation.never.isRequested)
        token.cancel()
        #expect(cancellation.isRequested && token.cancellation.isRequested)
    }
}
