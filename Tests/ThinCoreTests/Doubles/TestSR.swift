import FoundationEssentials
import Synchronization
import ThinDeviceMapper
@testable import ThinLVM
@testable import ThinCore
#if canImport(Glibc)
import Glibc
#endif

/// An SR for host tests of the core's logic: its catalog is a real SQLite file
/// in a temporary run directory; device-mapper, LVM, the helper programs and
/// mounts are recording doubles. `attached` decides whether its catalog counts
/// as mounted.
struct TestSR {
    /// One temporary run and device root for the whole test process (the core
    /// reads them from THINSR_RUN_DIR and THINSR_DEV_DIR).
    static let root: String = {
        var template = Array("/tmp/thinsr-core-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template))
        setenv("THINSR_RUN_DIR", "\(directory)/run", 1)
        setenv("THINSR_DEV_DIR", "\(directory)/dev", 1)
        setenv("THINSR_STATE_DIR", "\(directory)/state", 1)
        return directory
    }()

    let names = SRNames(uuid: UUID())
    let deviceMapper = RecordingDeviceMapper()
    let lvm = RecordingLVM()
    let system = RecordingSystem()
    let programs: RecordingPrograms
    let host: Host
    static let group = "vg0"

    init(attached: Bool = true, pool: RecordingDeviceMapper.PoolState = .init()) throws {
        _ = Self.root
        programs = RecordingPrograms(deviceMapper: deviceMapper, poolName: names.poolDevice)
        host = Host(deviceMapper: deviceMapper, lvm: lvm, programs: programs, system: system)
        // The catalog's "filesystem" is a directory of its own; mounting it links the mount point there.
        try System.makeDirectories(filesystem)
        let catalog = try Catalog.create(path: "\(filesystem)/catalog.db", record: SRRecord(
            uuid: names.uuid, name: "test-\(names.hex.prefix(8))", description: "", mode: .beNice,
            volumeGroup: Self.group, blockSizeBytes: 65536, transactionID: pool.transactionID, nextThinID: .first,
            createdAt: 1_700_000_000))
        try System.makeDirectories(copyFilesystem)
        try catalog.copy.attach(at: "\(copyFilesystem)/catalog.db")
        catalog.close()
        let reports = LVRole.allCases.map { role in
            LogicalVolumeReport(volumeGroup: Self.group, name: names.lv(role), sizeBytes: 64 << 20,
                                tags: [names.srTag, role.tag], active: attached && role != .spare,
                                mapperPath: mapperPath(role))
        }
        lvm.state.withLock { $0.logicalVolumes = reports }
        let catalogDevice = mapperPath(.catalog)
        system.state.withLock {
            $0.filesystems[catalogDevice] = filesystem
            $0.filesystems[mapperPath(.catalogCopy)] = copyFilesystem
        }
        if attached {
            deviceMapper.addPool(names.poolDevice, pool)
            try system.mount(device: catalogDevice, at: names.catalogMount, type: "ext4", readOnly: false)
            try system.mount(device: mapperPath(.catalogCopy), at: names.catalogCopyMount, type: "ext4", readOnly: false)
            system.state.withLock { $0.calls.removeAll() }
        }
    }

    /// Where the catalog volume's files live, mounted or not.
    var filesystem: String { "\(Self.root)/fs/\(names.uuidString)" }
    /// Where the catalog copy's files live.
    var copyFilesystem: String { "\(Self.root)/fs/\(names.uuidString)-copy" }

    func mapperPath(_ role: LVRole) -> String { names.mapperPath(role, group: Self.group) }

    /// Opens the SR as a tool would, by uuid.
    func open(_ access: SRAccess = .write) throws -> AttachedSR {
        try AttachedSR.open(names.uuidString, for: access, host: host)
    }

    /// Another SR, attached on this host double, with this name; returns its names.
    func addAttachedSR(named name: String) throws -> SRNames {
        let other = SRNames(uuid: UUID())
        try System.makeDirectories(other.catalogMount)
        try Catalog.create(path: other.catalogDatabase, record: SRRecord(
            uuid: other.uuid, name: name, description: "", mode: .beNice, volumeGroup: Self.group,
            blockSizeBytes: 65536, transactionID: 0, nextThinID: .first, createdAt: 1)).close()
        system.state.withLock { _ = $0.mounted.insert(other.catalogMount) }
        return other
    }

    /// Notes at every device-mapper call whether the devices-changing marker exists.
    func watchMarker() { deviceMapper.state.withLock { $0.watchedFile = names.devicesChangingMarker } }
    func markerPresent(at call: String) -> Bool? { deviceMapper.state.withLock { $0.watchedFilePresent[call] } }

    /// A read-write connection to the catalog, for setting up and inspecting rows.
    func catalog() throws -> Catalog {
        let catalog = try Catalog(path: "\(filesystem)/catalog.db")
        try catalog.copy.attach(at: "\(copyFilesystem)/catalog.db")   // as the tools' writers do
        return catalog
    }

    /// Inserts a ready volume whose thin id the pool holds too.
    @discardableResult
    func addVolume(_ key: String, thinID: ThinDeviceID, kind: VolumeKind = .volume, parent: UUID? = nil,
                   size: UInt64 = 1 << 30, createdAt: Int64 = 1) throws -> VolumeRecord {
        let volume = VolumeRecord(uuid: UUID(), key: key, name: key, description: "", thinID: thinID, virtualSize: size,
                                  kind: kind, readWrite: kind != .snapshot, sharable: false, createdAt: createdAt, keys: [:],
                                  parentUUID: parent, snapshotOf: kind == .snapshot ? parent : nil, state: .ready)
        let catalog = try catalog()
        defer { catalog.close() }
        try catalog.insert(volume)
        try catalog.setNextThinID(thinID.successor)
        deviceMapper.updatePool(names.poolDevice) { $0.thinIDs.insert(thinID) }
        return volume
    }

    /// Makes the SR's VG another host's: LVM reports `owner`, this host is `local`.
    func own(by owner: String, local: String) {
        lvm.state.withLock { state in
            state.systemID = local
            for index in state.logicalVolumes.indices { state.logicalVolumes[index].systemID = owner }
        }
    }

    /// A ready volume with its device attached; returns it and its dm name.
    func addAttachedVolume(_ key: String, thinID: ThinDeviceID, size: UInt64 = 1 << 30) throws -> (VolumeRecord, String) {
        let volume = try addVolume(key, thinID: thinID, size: size)
        attachDevice(volume)
        return (volume, names.volumeDevice(volume.uuid).name)
    }

    /// Attaches a volume's device as the kernel would have it.
    func attachDevice(_ volume: VolumeRecord, sizeBytes: UInt64? = nil, suspended: Bool = false, openCount: Int32 = 0,
                      readOnly: Bool = false) {
        let table = ThinTable(poolDevice: "/dev/mapper/\(names.poolDevice)", deviceID: volume.thinID)
            .line(lengthSectors: (sizeBytes ?? volume.virtualSize) / 512)
        deviceMapper.addDevice(names.volumeDevice(volume.uuid).name,
                               .init(table: [table], suspended: suspended, readOnly: readOnly, openCount: openCount))
    }

    /// The catalog's open transaction (a catalog that cannot be read stops the tests).
    var openTransaction: PendingTransaction? {
        let catalog = try! catalog()
        defer { catalog.close() }
        return try! catalog.pending()
    }

    var poolTransactionID: UInt64? { deviceMapper.pool(names.poolDevice)?.transactionID }
    var poolThinIDs: Set<ThinDeviceID> { deviceMapper.pool(names.poolDevice)?.thinIDs ?? [] }
    var poolMessages: [String] { deviceMapper.messages }
    func message(_ text: String) -> String { "message \(names.poolDevice) \(text)" }
}
