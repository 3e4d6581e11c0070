import FoundationEssentials
import Testing
import ThinDeviceMapper
import ThinTools
@testable import ThinCore
#if canImport(Glibc)
import Glibc
#endif

@Suite("process claims")
struct ProcessClaimTests {
    @Test("an owner mark round-trips through its text and names this boot, pid and start time")
    func ownerMarkRoundTrip() throws {
        let current = ProcessClaim.current
        let parsed = try #require(ProcessClaim(ownerMark: current.ownerMark))
        #expect(parsed == current)
        #expect(parsed.pid == getpid() && parsed.bootID == System.bootID() && parsed.startTime != nil)
        #expect(parsed.isLive())
        #expect(ProcessClaim.liveProcess(ofOwner: current.ownerMark) == getpid())
        // This process is never "another" live owner.
        #expect(ProcessClaim.liveOtherProcess(ofOwner: current.ownerMark) == nil)
    }

    @Test("a malformed owner mark claims nothing", arguments: ["", "boot 12", "boot x 3", "boot 12 y", "a b c d"])
    func malformedOwnerMarks(_ mark: String) {
        #expect(ProcessClaim(ownerMark: mark) == nil)
        #expect(ProcessClaim.liveProcess(ofOwner: mark) == nil)
    }

    @Test("an owner mark from another boot, or with another start time, is not live")
    func staleOwnerMarks() {
        let claim = ProcessClaim(pid: 42, startTime: 7, bootID: "boot-a")
        #expect(claim.isLive(bootID: "boot-a", startTime: { $0 == 42 ? 7 : nil }))
        #expect(!claim.isLive(bootID: "boot-b", startTime: { _ in 7 }))
        #expect(!claim.isLive(bootID: "boot-a", startTime: { _ in 8 }))
        #expect(!claim.isLive(bootID: "boot-a", startTime: { _ in nil }))
    }

    @Test("a process holder's name and file round-trip; named holders are not claims")
    func holderRoundTrip() throws {
        let holder = ProcessClaim.holder(1234, startTime: { _ in 99 })
        #expect(holder.holderName == "process.1234" && holder.holderContent == "1234 99\n")
        let read = try #require(ProcessClaim(holderName: holder.holderName, content: holder.holderContent))
        #expect(read.pid == 1234 && read.startTime == 99 && read.bootID == nil)
        #expect(read.isLive(bootID: "any", startTime: { _ in 99 }) && !read.isLive(bootID: "any", startTime: { _ in 98 }))
        // A holder file that records no start time counts while the pid lives.
        #expect(ProcessClaim(holderName: "process.5", content: nil)?.isLive(startTime: { _ in 1 }) == true)
        #expect(ProcessClaim(holderName: "5", content: "") == nil && ProcessClaim.pid(ofHolder: "u0_dp") == nil)
        #expect(ProcessClaim.holderName() == "process.\(getpid())")
    }
}

@Suite("run and state paths")
struct NamingRegistryTests {
    @Test("every run path of an SR lies under THINSR_RUN_DIR")
    func runPathsFollowTheOverride() {
        let names = SRNames(uuid: UUID())
        let root = Paths.runRoot
        #expect(root.hasPrefix(TestSR.root))
        let volume = UUID()
        let paths = [names.holdersDirectory, names.holdersDirectory(volume), names.transfersDirectory,
                     names.inspectCopyDirectory, names.devicesChangingMarker, names.poolGrowingMarker,
                     names.monitorLevelFile, names.originStateDirectory, names.copyOnReadDirectory, names.lockFile,
                     Paths.nbdLock, Paths.monitorLock, Paths.monitorPidFile, Paths.servePidFile(7), Paths.serveLog(7),
                     Paths.serveURIFile(7)]
        for path in paths { #expect(path.hasPrefix(root + "/"), "\(path)") }
        #expect(names.holdersDirectory(volume) == "\(names.holdersDirectory)/\(volume.lowercased)")
        #expect(names.holdersDirectory(volume, runDirectory: "/x") == "/x/holders/\(volume.lowercased)")
        #expect(VolumeHolders(names: names, volume: volume).directory == names.holdersDirectory(volume))
        #expect(Paths.servePidFile(7) == "\(root)/serve-7.pid" && Paths.nbdLock == "\(root)/locks/nbd.lock")
    }

    @Test("export records lie under THINSR_STATE_DIR, metrics under THINSR_METRICS_DIR")
    func statePathsFollowTheOverrides() {
        let sr = UUID()
        let volume = UUID()
        setenv("THINSR_STATE_DIR", "/state-test", 1)
        setenv("THINSR_METRICS_DIR", "/metrics-test", 1)
        defer {
            unsetenv("THINSR_STATE_DIR")
            unsetenv("THINSR_METRICS_DIR")
        }
        #expect(Paths.exportRecord(sr: sr, volume: volume) == "/state-test/exports/\(sr.lowercased)/\(volume.lowercased)")
        #expect(SRMetrics.path(SRNames(uuid: sr)) == "/metrics-test/thinsr-\(sr.lowercased)")
    }

    @Test("a path's directory and file name, as dirname and basename give them")
    func pathText() {
        #expect(PathText.directory(of: "/a/b/c") == "/a/b" && PathText.fileName(of: "/a/b/c") == "c")
        #expect(PathText.directory(of: "/c") == "/" && PathText.directory(of: "c") == "." && PathText.fileName(of: "c") == "c")
    }
}

@Suite("check findings")
struct CheckProblemTests {
    @Test("each finding keeps its stable name on the wire")
    func stableNames() {
        let names = CheckProblem.allCases.map(\.rawValue)
        #expect(Set(names).count == names.count && names.count == 24)
        #expect(names.allSatisfy { $0.allSatisfy { $0.isLowercase || $0 == "-" } })
        #expect(CheckFinding(.leakedThinID, detail: "", repaired: false).problem == "leaked-thin-id")
        #expect(CheckProblem(rawValue: "catalog-copy-stale") == .catalogCopyStale)
        #expect(CheckProblem(rawValue: "open-transaction") == .openTransaction)
    }
}

@Suite("devices an SR owns")
struct OwnedDeviceTests {
    @Test("every kind of device name the SR makes reads back as what it is")
    func namesReadBack() {
        let names = SRNames(uuid: UUID())
        let volume = UUID()
        #expect(names.owned(DmName(names.volumeDevice(volume).name)) == .volume(volume))
        #expect(names.owned(DmName(names.originDevice(volume).name)) == .origin(volume))
        for part in SRNames.HydrationPart.allCases {
            #expect(names.owned(DmName(names.hydrationDevice(volume, part).name)) == .hydration(volume, part))
        }
        #expect(names.owned(DmName("\(names.takenDevicePrefix)\(SRNames.hex(volume))")) == .taken(volume))
        // Not the SR's: its pool, its LVs, another SR's devices, a name of the right shape with a bad part.
        let other = SRNames(uuid: UUID())
        for foreign in [names.poolDevice, DmName(lvmGroup: "vg0", volume: names.lv(.data)).rawValue,
                        other.volumeDevice(volume).name, "thinsr_\(names.hex)_hz\(SRNames.hex(volume))",
                        "thinsr_\(names.hex)_v\(SRNames.hex(volume).dropLast())"] {
            #expect(names.owned(DmName(foreign)) == nil, "\(foreign)")
        }
    }

    @Test("recovery resumes a suspended volume, clone stack and origin, and leaves other SRs' devices alone")
    func reconcileCoversEveryOwnedDevice() throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("v", thinID: 1)
        sr.attachDevice(volume, suspended: true)
        let line = ErrorTable().line(lengthSectors: 8)
        let stacked = [sr.names.hydrationDevice(volume.uuid, .clone).name,
                       sr.names.hydrationDevice(volume.uuid, .metadata).name, sr.names.originDevice(UUID()).name]
        let foreign = SRNames(uuid: UUID()).originDevice(UUID()).name
        for name in stacked + [foreign] { sr.deviceMapper.addDevice(name, .init(table: [line], suspended: true)) }
        try System.touch(sr.names.devicesChangingMarker)
        let attached = try sr.open(.write)
        defer { attached.close() }
        try attached.recovered()
        for name in stacked + [sr.names.volumeDevice(volume.uuid).name] {
            #expect(sr.deviceMapper.device(name)?.suspended == false, "\(name)")
        }
        #expect(sr.deviceMapper.device(foreign)?.suspended == true)
        #expect(!System.exists(sr.names.devicesChangingMarker))
    }

    @Test("a device change sets the devices-changing marker while it runs and clears it when whole")
    func changingMarker() throws {
        let sr = try TestSR()
        let attached = try sr.open(.write)
        defer { attached.close() }
        let recovered = try attached.devicesRecovered()
        let seen = try recovered.changing { () throws(ThinError) in System.exists(sr.names.devicesChangingMarker) }
        #expect(seen && !System.exists(sr.names.devicesChangingMarker))
        // A change that fails leaves the marker for the next recovery.
        #expect(throws: ThinError.self) {
            try recovered.changing { () throws(ThinError) in throw ThinError(.backendFailure, "half done") }
        }
        #expect(System.exists(sr.names.devicesChangingMarker))
    }
}
