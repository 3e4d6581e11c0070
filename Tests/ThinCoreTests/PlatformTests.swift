import FoundationEssentials
import Synchronization
import Testing
import ThinDeviceMapper
@testable import ThinLVM
import ThinTools
@testable import ThinCore
#if canImport(Glibc)
import Glibc
#endif

/// The platform's probes and fallbacks against the doubles: a kernel without
/// dm-clone (XCP-ng 8.3's 4.19), thin-provisioning-tools 0.7, a missing program.
@Suite("platform", .serialized)
struct PlatformTests {
    @Test("program versions are read from what the programs print, and compared field by field")
    func versions() {
        #expect(ToolVersion(parsing: "0.7.3")?.fields == [0, 7, 3])
        #expect(ToolVersion(parsing: "thin_check 1.0.9\n")?.fields == [1, 0, 9])
        #expect(ToolVersion(parsing: "nbdkit 1.8.0 (nbdkit-1.8.0-1.xcpng8.3)")?.fields == [1, 8, 0])
        #expect(ToolVersion(parsing: "v0.9.0-rc2")?.fields == [0, 9, 0])
        #expect(ToolVersion(parsing: "usage: thin_check [options] {device|file}") == nil)
        #expect(ToolVersion([0, 7, 3]) < ProgramProbes.liveCheckVersion)
        #expect(ToolVersion([0, 9]) >= ProgramProbes.liveCheckVersion)
        #expect(ToolVersion([1, 0, 9]) > ToolVersion([0, 10, 0]))
    }

    @Test("an attached SR with thin-provisioning-tools 0.7 is not called damaged: its live metadata is not checked")
    func oldThinCheck() async throws {
        let sr = try TestSR()
        try sr.addVolume("a", thinID: 1)
        sr.programs.state.withLock { $0.thinToolsVersion = ToolVersion([0, 7, 3]) }
        let report = try await SRLifecycle(host: sr.host).check(sr.names.uuidString, repair: false)
        #expect(report.outcome == .clean && report.metadata == "not checked")
        #expect(report.notes.count == 1 && report.notes[0].hasPrefix("live metadata not checked: thin-provisioning-tools 0.7.3"))
        #expect(!sr.programs.calls.contains { $0.hasPrefix("thin_check --metadata-snap") })
        // The thin ids are still compared, through thin_ls of the metadata snapshot.
        #expect(sr.programs.calls.contains { $0.hasPrefix("thin_ls") })
        #expect(sr.deviceMapper.pool(sr.names.poolDevice)?.metadataSnapshotHeld == false)
    }

    @Test("with 0.9 or later the live metadata is checked")
    func newThinCheck() async throws {
        let sr = try TestSR()
        sr.programs.state.withLock { $0.thinToolsVersion = ToolVersion([0, 9, 0]) }
        let report = try await SRLifecycle(host: sr.host).check(sr.names.uuidString, repair: false)
        #expect(report.metadata == "clean" && report.notes.isEmpty)
        #expect(sr.programs.calls.contains("thin_check --metadata-snap \(sr.mapperPath(.metadata))"))
    }

    @Test("a target missing from the kernel is loaded by its module, or named in a Not_available error")
    func kernelTargets() async throws {
        let sr = try TestSR()
        #expect(await KernelTarget.clone.isAvailable(sr.host))
        #expect(sr.programs.calls == ["modprobe dm_clone"])
        let lacking = try TestSR()
        lacking.programs.state.withLock { $0.loadableModules = [:] }
        let error = await #expect(throws: ThinError.self) {
            try await KernelTarget.clone.require(lacking.host, for: "hydrating vm1")
        }
        #expect(error?.code == .notAvailable && error?.code.exitStatus == 69)
        #expect(error?.message.contains("module dm_clone") == true && error?.message.contains("Linux 5.4") == true)
        #expect(await KernelTarget.thinPool.isAvailable(lacking.host))
    }

    @Test("a missing program is Not_available (exit 69) naming its package; a failing one stays a backend failure")
    func missingProgram() throws {
        var missing = ExternalCommandError(program: "nbdcopy", arguments: [], exitStatus: nil,
                                           standardError: "nbdcopy not found; install libnbd-bin")
        missing.programMissing = true
        let error = ThinError.backend("cannot export vm1", missing)
        #expect(error.code == .notAvailable && error.message == "cannot export vm1: nbdcopy not found; install libnbd-bin")
        let failed = ExternalCommandError(program: "nbdcopy", arguments: [], exitStatus: 1, standardError: "boom")
        #expect(ThinError.backend("cannot export vm1", failed).code == .backendFailure)
    }

    @Test("liblvm2cmd is looked for by XCP-ng's soname and in /usr/lib64 too")
    func lvmLibraryCandidates() {
        let candidates = LVM.libraryCandidates
        #expect(candidates.prefix(3) == ["liblvm2cmd.so.2.03", "liblvm2cmd.so.2.02", "liblvm2cmd.so"])
        #expect(candidates.contains("/usr/lib64/liblvm2cmd.so.2.02"))
    }

    @Test("a probe's answer is kept for its key only: a changed binary has another key")
    func probeCache() throws {
        let directory = "\(TestSR.root)/probes-\(UUID().lowercased.prefix(8))"
        let program = "\(directory)/bin/thin_check"
        try System.makeDirectories("\(directory)/bin")
        try System.writeFile(program, "#!/bin/sh\necho 0.7.3\n")
        let key = try #require(ProbeCache.key(program: program))
        let file = "\(directory)/cache/thin-tools"
        #expect(ProbeCache.value(in: file, key: key) == nil, "nothing kept yet")
        ProbeCache.store("0.7.3", in: file, key: key)
        #expect(ProbeCache.value(in: file, key: key) == "0.7.3")
        #expect(ProbeCache.key(program: program) == key, "the same file, the same key")
        try System.writeFile(program, "#!/bin/sh\necho 0.10.0\n")   // replaced: another size (and times)
        let changed = try #require(ProbeCache.key(program: program))
        #expect(changed != key && ProbeCache.value(in: file, key: changed) == nil)
        #expect(ProbeCache.key(program: "\(directory)/bin/missing") == nil)
    }

    @Test("the arguments are the ones the C library handed the program")
    func arguments() {
        #expect(ProcessArguments.current == CommandLine.arguments)
    }
}

/// LVM driven through a stand-in `lvm` program (where no liblvm2cmd loads):
/// the same command lines, reports and error messages as through the library.
@Suite("LVM through its command", .serialized)
struct LVMCommandTests {
    /// A stand-in that logs its environment's LVM_SYSTEM_DIR and arguments,
    /// prints a report as LVM 2.02/2.03 print `--reportformat json` (with a
    /// warning on stderr), a system ID, or refuses a vgcreate as LVM does.
    static func standIn() throws -> (directory: String, lvm: LVM) {
        let directory = "\(TestSR.root)/lvm-command-\(UUID().lowercased.prefix(8))"
        try System.makeDirectories(directory)
        try System.writeFile("\(directory)/lvm", #"""
            #!/bin/sh
            echo "${LVM_SYSTEM_DIR:-none} $*" >> "$(dirname "$0")/calls"
            case $1 in
            vgs) printf '%s\n' '  {' '      "report": [' '          {' '              "vg": [' \
                '                  {"vg_name":"vg0", "vg_size":"1073741824", "vg_free":"536870912", "vg_extent_size":"4194304", "vg_tags":"thinsr.sr=x,b", "vg_systemid":"host1"}' \
                '              ]' '          }' '      ]' '  }'
                echo "  WARNING: Not using device /dev/loop9 for PV x." >&2 ;;
            systemid) echo "  system ID: host1" ;;
            vgcreate) echo "  WARNING: a warning first." >&2; echo "  A volume group called vg0 already exists." >&2; exit 5 ;;
            lvremove) echo "  WARNING: only a warning." >&2; exit 5 ;;
            esac
            """#)
        chmod("\(directory)/lvm", 0o755)
        try System.makeDirectories("\(directory)/master")
        try System.writeFile("\(directory)/master/lvm.conf", "global {}\n")
        return (directory, LVM(commandAt: "\(directory)/lvm"))
    }

    @Test("reports are read from its standard output, with the master configuration in its environment")
    func reports() throws {
        let (directory, lvm) = try Self.standIn()
        setenv("THINSR_LVM_MASTER_DIR", "\(directory)/master", 1)
        defer {
            unsetenv("THINSR_LVM_MASTER_DIR")
            unsetenv("LVM_SYSTEM_DIR")   // set for the stand-in: the process's environment is what lvm inherits
        }
        #expect(try lvm.volumeGroups() == [VolumeGroupReport(name: "vg0", sizeBytes: 1 << 30, freeBytes: 1 << 29,
                                                               extentBytes: 4 << 20, tags: ["thinsr.sr=x", "b"],
                                                               systemID: "host1")])
        #expect(try lvm.localSystemID() == "host1")
        #expect(System.readFile("\(directory)/calls") == """
            \(directory)/master vgs --reportformat json --units b --nosuffix --options \
            vg_name,vg_size,vg_free,vg_extent_size,vg_tags,vg_systemid
            \(directory)/master systemid

            """)
    }

    @Test("a failed command's error lines are its messages, warnings left out unless nothing else was said")
    func errors() throws {
        let (_, lvm) = try Self.standIn()
        let refused = #expect(throws: LVMFailure.self) {
            try lvm.createVolumeGroup("vg0", devices: ["/dev/loop0"], tags: [])
        }
        guard case .command(let error)? = refused else {
            Issue.record("not a command failure: \(String(describing: refused))")
            return
        }
        #expect(error.messages == ["A volume group called vg0 already exists."])
        #expect(error.description == "lvm vgcreate --yes vg0 /dev/loop0 failed: A volume group called vg0 already exists.")
        let warned = #expect(throws: LVMFailure.self) { try lvm.removeLogicalVolumes(group: "vg0", names: ["lv"]) }
        guard case .command(let warning)? = warned else { return }
        #expect(warning.messages == ["WARNING: only a warning."])
    }

    @Test("a command that cannot be started is a failure naming it, not a crash")
    func missingProgram() {
        let lvm = LVM(commandAt: "/nonexistent/lvm")
        let failed = #expect(throws: LVMFailure.self) { try lvm.volumeGroups() }
        guard case .command(let error)? = failed else { return }
        #expect(error.description.contains("/nonexistent/lvm not found"))
    }
}

/// Hydration on a kernel without dm-clone.
@Suite("offline hydration", .serialized)
struct OfflineHydrationTests {
    func cloneOfTemplate(_ sr: TestSR, _ attached: AttachedSR) async throws -> (VolumeRecord, VolumeRecord) {
        let template = try await attached.templates.introduceTemplate(uri: "file://\(TemplateTests.image)", name: nil,
                                                            description: "", format: nil)
        return (template, try attached.volumes.copyVolume(template.key, kind: .clone, name: "vm1"))
    }

    func withoutClone(_ sr: TestSR) {
        sr.programs.state.withLock { $0.loadableModules = [:] }
    }

    @Test("without dm-clone, online hydration and copy-on-read are refused before any device is made")
    func onlineRefused() async throws {
        let sr = try TestSR()
        let attached = try sr.open()
        defer { attached.close() }
        let (_, clone) = try await cloneOfTemplate(sr, attached)
        withoutClone(sr)
        sr.deviceMapper.clearCalls()
        for onRead in [false, true] {
            let error = await #expect(throws: ThinError.self) {
                _ = try await attached.beginHydration(clone.key, threshold: 64, onRead: onRead)
            }
            #expect(error?.code == .notAvailable && error?.message.contains("dm_clone") == true)
        }
        #expect(!sr.deviceMapper.calls.contains { $0.hasPrefix("create") })
        #expect(try attached.requireVolume(clone.key).hydrateOwner == nil)
    }

    @Test("the offline way is chosen for a detached clone only; an attached one and copy-on-read are refused")
    func route() async throws {
        let sr = try TestSR()
        let attached = try sr.open()
        defer { attached.close() }
        let (_, clone) = try await cloneOfTemplate(sr, attached)
        #expect(try await attached.hydratesOffline(clone.key, onRead: false) == false)   // dm-clone loads
        withoutClone(sr)
        sr.deviceMapper.unloadTargets(["clone"])
        #expect(try await attached.hydratesOffline(clone.key, onRead: false))
        let onRead = await #expect(throws: ThinError.self) { _ = try await attached.hydratesOffline(clone.key, onRead: true) }
        #expect(onRead?.code == .notAvailable)
        try sr.deviceMapper.create(name: sr.names.volumeDevice(clone.uuid).name,
                                   table: [attached.devices.thinTable(for: clone)])
        let whileAttached = await #expect(throws: ThinError.self) {
            _ = try await attached.hydratesOffline(clone.key, onRead: false)
        }
        #expect(whileAttached?.code == .notAvailable && whileAttached?.message.contains("detach it") == true)
        let plain = try attached.volumes.createVolume(name: "plain", description: "", sizeBytes: 1 << 20, sharable: false)
        #expect(try await attached.hydratesOffline(plain.key, onRead: false) == false)
    }

    @Test("offline hydration copies only the blocks the clone has not written, in chunks, then drops the origin")
    func copiesUnwrittenThenDropsOrigin() async throws {
        let sr = try TestSR()
        let attached = try sr.open()
        defer { attached.close() }
        let (template, clone) = try await cloneOfTemplate(sr, attached)
        withoutClone(sr)
        // The clone wrote blocks 2-3 and 10 of the 64 KiB blocks of the 4 MiB image.
        sr.programs.state.withLock {
            $0.mappings[clone.thinID.value] = ThinDeviceMappings(deviceID: clone.thinID.value, creationTime: 1, runs: [
                .init(begin: 2, length: 2, time: 1), .init(begin: 10, length: 1, time: 1)])
        }
        let hydration = try #require(try await attached.beginOfflineHydration(clone.key))
        let block: UInt64 = 65536
        #expect(hydration.pending == [0..<2 * block, 4 * block..<10 * block, 11 * block..<(4 << 20)])
        #expect(hydration.totalBytes == (4 << 20) - 3 * block)
        #expect(hydration.chunks.allSatisfy { UInt64($0.count) <= OfflineHydration.chunkBytes })
        #expect(hydration.chunks.reduce(0) { $0 + UInt64($1.count) } == hydration.totalBytes)
        // Its device is the clone's own thin id without the origin; the catalog marks the run as this process's.
        let destination = sr.names.hydrationDevice(clone.uuid, .destination).name
        let table = try #require(sr.deviceMapper.device(destination)?.table.first)
        let thin = try #require(ThinTable(parameters: table.parameters))
        #expect(thin.deviceID == clone.thinID && thin.externalOrigin == nil)
        #expect(try attached.requireVolume(clone.key).hydrateOwner != nil)
        #expect(try await attached.finishOfflineHydration(hydration, copiedAll: true))
        let after = try attached.requireVolume(clone.key)
        #expect(after.originTemplate == nil && after.hydrateOwner == nil)
        #expect(sr.deviceMapper.device(destination) == nil)
        #expect(try attached.requireVolume(template.key, allowingTemplate: true).uuid == template.uuid)
    }

    @Test("what is left to copy: the gaps between the runs the volume maps, a run from block 0 included")
    func unwrittenGaps() {
        let block: UInt64 = 65536
        let gaps = { (held: [Range<UInt64>]) in
            OfflineHydration.unwritten(held, imageBlocks: 10, blockBytes: block, imageBytes: 10 * block - 512)
        }
        #expect(gaps([]) == [0..<10 * block - 512])
        #expect(gaps([0..<4]) == [4 * block..<10 * block - 512])
        #expect(gaps([0..<4, 6..<7]) == [4 * block..<6 * block, 7 * block..<10 * block - 512])
        #expect(gaps([0..<10]).isEmpty)
        #expect(gaps([2..<3, 8..<20]) == [0..<2 * block, 3 * block..<8 * block])
    }

    @Test("an offline hydration stopped early, or overtaken by an attach, leaves the clone reading its template")
    func stoppedEarly() async throws {
        let sr = try TestSR()
        let attached = try sr.open()
        defer { attached.close() }
        let (template, clone) = try await cloneOfTemplate(sr, attached)
        withoutClone(sr)
        let hydration = try #require(try await attached.beginOfflineHydration(clone.key))
        // An attached clone is never written by it: the next chunk finds its device and stops.
        try sr.deviceMapper.create(name: sr.names.volumeDevice(clone.uuid).name,
                                   table: [attached.devices.thinTable(for: clone)])
        #expect(try attached.copyOffline(hydration.chunks[0], of: hydration) == nil)
        #expect(try await attached.finishOfflineHydration(hydration, copiedAll: true) == false)
        let after = try attached.requireVolume(clone.key)
        #expect(after.originTemplate == template.uuid && after.hydrateOwner == nil)
        #expect(sr.deviceMapper.device(sr.names.hydrationDevice(clone.uuid, .destination).name) == nil)
    }
}
