import FoundationEssentials
import Synchronization
import ThinDeviceMapper
@testable import ThinLVM
@testable import ThinTools
@testable import ThinCore
#if canImport(Glibc)
import Glibc
#endif

/// An LVM double: the reports a test sets up, every command recorded.
final class RecordingLVM: LogicalVolumeManager {
    struct State {
        var logicalVolumes: [LogicalVolumeReport] = []
        var volumeGroups: [VolumeGroupReport] = []
        var physicalVolumes: [PhysicalVolumeReport] = []
        var systemID = ""
        var calls: [String] = []
        var failing: Set<String> = []
    }

    let state = Mutex(State())
    var calls: [String] { state.withLock { $0.calls } }

    private func record(_ call: String) throws(LVMFailure) {
        try state.withLock { (state: inout State) throws(LVMFailure) in
            state.calls.append(call)
            if state.failing.contains(call) { throw .command(LVMError(command: call, messages: ["refused by the test"])) }
        }
    }

    func removePhysicalVolumes(_ devices: [String]) throws(LVMFailure) { try record("pvremove \(devices)") }
    func createVolumeGroup(_ name: String, devices: [String], tags: [String]) throws(LVMFailure) {
        try record("vgcreate \(name)")
    }
    func removeVolumeGroup(_ name: String) throws(LVMFailure) { try record("vgremove \(name)") }
    func extendVolumeGroup(_ name: String, devices: [String]) throws(LVMFailure) { try record("vgextend \(name)") }
    /// A created LV is reported from then on, active, as LVM's would be.
    func createLinearVolume(group: String, name: String, sizeBytes: UInt64, tags: [String]) throws(LVMFailure) {
        try record("lvcreate \(group)/\(name)")
        state.withLock { $0.logicalVolumes.append(LogicalVolumeReport(
            volumeGroup: group, name: name, sizeBytes: sizeBytes, tags: tags, active: true,
            mapperPath: Paths.mapperPath(group: group, volume: name))) }
    }
    func extendLogicalVolume(group: String, name: String, sizeBytes: UInt64) throws(LVMFailure) {
        try record("lvextend \(group)/\(name)")
    }
    /// Retags and renames change the reported LVs, as LVM's would.
    func retag(group: String, name: String, remove: [String], add: [String]) throws(LVMFailure) {
        try record("lvchange \(group)/\(name) -\(remove.joined(separator: ",")) +\(add.joined(separator: ","))")
        state.withLock { state in
            for index in state.logicalVolumes.indices where state.logicalVolumes[index].name == name {
                state.logicalVolumes[index].tags.removeAll { remove.contains($0) }
                state.logicalVolumes[index].tags += add.filter { !state.logicalVolumes[index].tags.contains($0) }
            }
        }
    }
    func renameLogicalVolume(group: String, from old: String, to new: String) throws(LVMFailure) {
        try record("lvrename \(group) \(old) \(new)")
        state.withLock { state in
            for index in state.logicalVolumes.indices where state.logicalVolumes[index].name == old {
                state.logicalVolumes[index].name = new
            }
        }
    }
    func removeLogicalVolumes(group: String, names: [String]) throws(LVMFailure) { try record("lvremove \(names)") }
    func setActive(_ active: Bool, group: String, names: [String]) throws(LVMFailure) {
        guard !names.isEmpty else { return }
        try record("lvchange -a\(active ? "y" : "n") \(names.joined(separator: " "))")
    }
    func volumeGroups() throws(LVMFailure) -> [VolumeGroupReport] {
        try record("vgs")
        return state.withLock { $0.volumeGroups }
    }
    func logicalVolumes() throws(LVMFailure) -> [LogicalVolumeReport] {
        try record("lvs")
        return state.withLock { $0.logicalVolumes }
    }
    func physicalVolumes() throws(LVMFailure) -> [PhysicalVolumeReport] {
        try record("pvs")
        return state.withLock { $0.physicalVolumes }
    }
    func localSystemID() throws(LVMFailure) -> String {
        try record("systemid")
        return state.withLock { $0.systemID }
    }
    func takeOver(group: String, from owner: String, to local: String) throws(LVMFailure) {
        try record("vgchange --systemid \(local) \(group)")
    }
}

/// A helper-program double: `thin_ls` lists the pool's ids as the device-mapper
/// double holds them (or what a test sets), `thin_check` says what a test sets.
final class RecordingPrograms: HelperPrograms {
    struct State {
        var calls: [String] = []
        /// Per device path: thin_check's verdict (default clean).
        var checks: [String: ThinTools.CheckResult] = [:]
        /// Per device path: the ids thin_ls lists (default: the live pool's).
        var listed: [String: [UInt32]] = [:]
        /// Per thin id: what thin_dump prints of its mappings.
        var mappings: [UInt32: ThinDeviceMappings] = [:]
        /// The superblock's time thin_dump reports.
        var poolTime: UInt32 = 10
        var repairFails = false
        /// What `thin_check -V` answers (nil: no thin_check).
        var thinToolsVersion: ToolVersion? = ToolVersion([1, 0, 9])
        /// The modules `modprobe` loads; loading one adds its targets to the double's kernel.
        var loadableModules: [String: [String]] = ["dm_clone": ["clone"]]
    }

    let state = Mutex(State())
    let deviceMapper: RecordingDeviceMapper
    let poolName: String

    init(deviceMapper: RecordingDeviceMapper, poolName: String) {
        self.deviceMapper = deviceMapper
        self.poolName = poolName
    }

    var calls: [String] { state.withLock { $0.calls } }

    func thinToolsVersion() async -> ToolVersion? {
        state.withLock { state in
            state.calls.append("thin_check -V")
            return state.thinToolsVersion
        }
    }

    func loadModule(_ name: String) async -> Bool {
        let targets: [String]? = state.withLock { state in
            state.calls.append("modprobe \(name)")
            return state.loadableModules[name]
        }
        guard let targets else { return false }
        deviceMapper.loadTargets(targets)
        return true
    }

    func checkMetadata(device: String, metadataSnapshot: Bool,
                       clearNeedsCheckFlag: Bool) async throws(ExternalCommandError) -> ThinTools.CheckResult {
        state.withLock { state in
            state.calls.append("thin_check \(metadataSnapshot ? "--metadata-snap " : "")\(device)")
            return state.checks[device] ?? ThinTools.CheckResult(clean: true, report: "")
        }
    }

    func repairMetadata(input: String, output: String) async throws(ExternalCommandError) {
        let fails = state.withLock { state in
            state.calls.append("thin_repair -i \(input) -o \(output)")
            return state.repairFails
        }
        if fails {
            throw ExternalCommandError(program: "thin_repair", arguments: [], exitStatus: 1, standardError: "no roots")
        }
    }

    func metadataSize(blockBytes: UInt64, poolBytes: UInt64,
                      maximumThins: UInt64) async throws(ExternalCommandError) -> UInt64 {
        state.withLock { $0.calls.append("thin_metadata_size") }
        return 16 << 20
    }

    /// The offline pool's id: the pool double's, as its metadata would hold it.
    func transactionID(metadataDevice: String) async throws(ExternalCommandError) -> UInt64 {
        state.withLock { $0.calls.append("thin_dump --skip-mappings \(metadataDevice)") }
        return deviceMapper.pool(poolName)?.transactionID ?? 0
    }

    func listDevices(metadataDevice: String,
                     metadataSnapshot: Bool) async throws(ExternalCommandError) -> [ThinTools.DeviceUsage] {
        let listed = state.withLock { state in
            state.calls.append("thin_ls \(metadataSnapshot ? "-m " : "")\(metadataDevice)")
            return state.listed[metadataDevice]
        }
        let ids = listed ?? (deviceMapper.pool(poolName)?.thinIDs.map(\.value) ?? [])
        return ids.sorted().map { ThinTools.DeviceUsage(deviceID: $0, mappedBytes: 65536, exclusiveBytes: 65536,
                                                        sharedBytes: 0) }
    }

    func dumpMappings(metadataDevice: String, metadataSnapshot: Bool,
                      deviceIDs: [UInt32]) async throws(ExternalCommandError) -> ThinMappingsDump {
        state.withLock { state in
            state.calls.append("thin_dump \(metadataSnapshot ? "-m " : "")\(deviceIDs) \(metadataDevice)")
            return ThinMappingsDump(poolTime: state.poolTime, devices: deviceIDs.compactMap { state.mappings[$0] })
        }
    }

    func makeCatalogFilesystem(device: String) async throws(ExternalCommandError) {
        state.withLock { $0.calls.append("mkfs.ext4 \(device)") }
    }

    func checkCatalogFilesystem(device: String,
                                mode: FilesystemCheck) async throws(ExternalCommandError) -> FilesystemCheckResult {
        state.withLock { $0.calls.append("e2fsck \(mode) \(device)") }
        return FilesystemCheckResult(exitStatus: 0, output: "clean")
    }

    func growCatalogFilesystem(device: String) async throws(ExternalCommandError) {
        state.withLock { $0.calls.append("resize2fs \(device)") }
    }

    func signatures(of device: String, skippingRAID: Bool) async throws(ExternalCommandError) -> [String] {
        state.withLock { $0.calls.append("blkid \(device)") }
        return []
    }
}

/// Mounts as a test sets them up: a mount point is mounted when listed; a
/// mount links the mount point to the directory a test prepared for the device.
final class RecordingSystem: HostSystem {
    struct State {
        var mounted: Set<String> = []
        /// Device path to the directory that "is" its filesystem.
        var filesystems: [String: String] = [:]
        var calls: [String] = []
    }

    let state = Mutex(State())
    var calls: [String] { state.withLock { $0.calls } }

    func isMounted(_ mountPoint: String) -> Bool { state.withLock { $0.mounted.contains(mountPoint) } }

    func mount(device: String, at mountPoint: String, type: String, readOnly: Bool) throws(ThinError) {
        let directory = state.withLock { state in
            state.calls.append("mount \(readOnly ? "-r " : "")\(device) \(mountPoint)")
            state.mounted.insert(mountPoint)
            return state.filesystems[device]
        }
        guard let directory else { throw ThinError(.backendFailure, "no filesystem on \(device)") }
        let parent = String(mountPoint[..<(mountPoint.lastIndex(of: "/") ?? mountPoint.endIndex)])
        try System.makeDirectories(parent)
        try System.symlink(target: directory, at: mountPoint)
    }

    func unmount(_ mountPoint: String) throws(ThinError) {
        state.withLock { state in
            state.calls.append("umount \(mountPoint)")
            state.mounted.remove(mountPoint)
        }
        unlink(mountPoint)
    }

    func zeroStart(of device: String) throws(ThinError) { state.withLock { $0.calls.append("zero \(device)") } }

    func copyRanges(from source: String, to destination: String, ranges: [Range<UInt64>]) throws(ThinError) -> UInt64 {
        state.withLock {
            $0.calls.append("copy \(source) \(destination) " + ranges.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ","))
        }
        return ranges.reduce(0) { $0 + UInt64($1.count) }
    }

    func flushDevice(_ device: String) throws(ThinError) { state.withLock { $0.calls.append("flush \(device)") } }
}
