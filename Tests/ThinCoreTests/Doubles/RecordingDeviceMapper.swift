import Synchronization
@testable import ThinDeviceMapper
#if canImport(Glibc)
import Glibc
#endif

/// A device-mapper double for the core's own logic: a small model of the
/// kernel (devices with tables; pools with thin ids, a transaction id and one
/// metadata snapshot) that answers as dm-thin does, records every call, and
/// fails the calls a test names. Kernel behaviour itself is the kernel
/// suite's to test, on the real kernel.
final class RecordingDeviceMapper: DeviceMapperControl {
    struct Device {
        var table: [TableLine]
        /// A table loaded by `reload`, live from the next `resume`.
        var inactive: [TableLine]?
        var suspended = false
        var readOnly = false
        var openCount: Int32 = 0
    }

    struct PoolState {
        var transactionID: UInt64 = 0
        var thinIDs: Set<ThinDeviceID> = []
        var metadataSnapshotHeld = false
        var usedMetadataBlocks: UInt64 = 100
        var totalMetadataBlocks: UInt64 = 4096
        var usedDataBlocks: UInt64 = 0
        var totalDataBlocks: UInt64 = 16384
        var mode = "rw"
        var needsCheck = false
        var failed = false
    }

    struct State {
        var devices: [String: Device] = [:]
        var pools: [String: PoolState] = [:]
        var calls: [String] = []
        /// Calls (as recorded) that fail, with the errno reason, each once.
        var failures: [String: DeviceMapperError.Reason] = [:]
        /// A file whose presence is noted at every call (the devices-changing marker).
        var watchedFile: String?
        var watchedFilePresent: [String: Bool] = [:]
        /// The kernel's target types (a module the programs double loads adds its own).
        var targets: Set<String> = ["linear", "error", "striped", "zero", "thin-pool", "thin"]
    }

    let state = Mutex(State())

    var calls: [String] { state.withLock { $0.calls } }
    /// The pool messages sent to any pool, in order.
    var messages: [String] { calls.filter { $0.hasPrefix("message ") }.map { String($0.split(separator: " ", maxSplits: 2)[2]) } }
    func pool(_ name: String) -> PoolState? { state.withLock { $0.pools[name] } }
    func device(_ name: String) -> Device? { state.withLock { $0.devices[name] } }
    func clearCalls() { state.withLock { $0.calls.removeAll() } }

    /// Makes the next call recorded as `call` (e.g. `message p set_transaction_id 1 2`) fail.
    func fail(_ call: String, _ reason: DeviceMapperError.Reason = .other) {
        state.withLock { $0.failures[call] = reason }
    }

    func addPool(_ name: String, _ pool: PoolState = PoolState()) {
        state.withLock { state in
            state.pools[name] = pool
            state.devices[name] = Device(table: [TableLine(lengthSectors: 1 << 20, targetType: .thinPool,
                                                           parameters: "1:2 1:3 128 16 0")])
        }
    }

    func updatePool(_ name: String, _ change: (inout PoolState) -> Void) {
        state.withLock { change(&$0.pools[name, default: PoolState()]) }
    }

    func addDevice(_ name: String, _ device: Device) { state.withLock { $0.devices[name] = device } }

    // MARK: DeviceMapperControl

    private func record(_ call: String, _ body: (inout State) throws(DeviceMapperError) -> Void) throws(DeviceMapperError) {
        try state.withLock { (state: inout State) throws(DeviceMapperError) in
            state.calls.append(call)
            if let watched = state.watchedFile { state.watchedFilePresent[call] = access(watched, F_OK) == 0 }
            if let reason = state.failures.removeValue(forKey: call) {
                throw DeviceMapperError(operation: call, device: "-", reason: reason)
            }
            try body(&state)
        }
    }

    private static func missing(_ name: String) -> DeviceMapperError {
        DeviceMapperError(operation: "-", device: name, reason: .noSuchDevice)
    }

    func create(name: String, uuid: DmUuid?, table: [TableLine], readOnly: Bool,
                udev: UdevVisibility) throws(DeviceMapperError) {
        try record("create \(name)") { (state: inout State) throws(DeviceMapperError) in
            guard state.devices[name] == nil else {
                throw DeviceMapperError(operation: "create", device: name, reason: .busy)
            }
            state.devices[name] = Device(table: table, readOnly: readOnly)
            if table.first?.targetType == .thinPool, state.pools[name] == nil { state.pools[name] = PoolState() }
        }
    }

    func reload(name: String, table: [TableLine], readOnly: Bool) throws(DeviceMapperError) {
        try record("reload \(name)") { (state: inout State) throws(DeviceMapperError) in
            guard state.devices[name] != nil else { throw Self.missing(name) }
            state.devices[name]?.inactive = table
        }
    }

    func suspend(name: String, flush: Bool) throws(DeviceMapperError) {
        try record("suspend \(name)") { (state: inout State) throws(DeviceMapperError) in
            guard state.devices[name] != nil else { throw Self.missing(name) }
            state.devices[name]?.suspended = true
        }
    }

    func resume(name: String, udev: UdevVisibility) throws(DeviceMapperError) {
        try record("resume \(name)") { (state: inout State) throws(DeviceMapperError) in
            guard var device = state.devices[name] else { throw Self.missing(name) }
            if let inactive = device.inactive { device.table = inactive }
            device.inactive = nil
            device.suspended = false
            state.devices[name] = device
        }
    }

    func remove(name: String) throws(DeviceMapperError) {
        try record("remove \(name)") { (state: inout State) throws(DeviceMapperError) in
            guard let device = state.devices[name] else { throw Self.missing(name) }
            guard device.openCount == 0 else { throw DeviceMapperError(operation: "remove", device: name, reason: .busy) }
            state.devices[name] = nil
            state.pools[name] = nil
        }
    }

    func rename(name: String, to newName: String) throws(DeviceMapperError) {
        try record("rename \(name) \(newName)") { (state: inout State) throws(DeviceMapperError) in
            guard let device = state.devices[name] else { throw Self.missing(name) }
            guard state.devices[newName] == nil else {
                throw DeviceMapperError(operation: "rename", device: name, reason: .alreadyExists)
            }
            state.devices[name] = nil
            state.devices[newName] = device
        }
    }

    func removeDeferred(name: String) throws(DeviceMapperError) {
        try record("remove --deferred \(name)") { (state: inout State) throws(DeviceMapperError) in
            guard state.devices[name] != nil else { throw Self.missing(name) }
            state.devices[name] = nil
        }
    }

    @discardableResult
    func send(_ message: DeviceMessage, to pool: String) throws(DeviceMapperError) -> String? {
        try record("message \(pool) \(message.text)") { (state: inout State) throws(DeviceMapperError) in
            guard var target = state.pools[pool] else { throw Self.missing(pool) }
            let refuse = { (reason: DeviceMapperError.Reason) in
                DeviceMapperError(operation: "message", device: pool, reason: reason)
            }
            // Clone and statistics messages change nothing the double models.
            guard case .pool(let message) = message else { return }
            switch message {
            case .createThin(let id):
                guard target.thinIDs.insert(id).inserted else { throw refuse(.alreadyExists) }
            case .createSnapshot(let id, let origin):
                guard target.thinIDs.contains(origin) else { throw refuse(.noData) }
                guard target.thinIDs.insert(id).inserted else { throw refuse(.alreadyExists) }
            case .delete(let id):
                guard target.thinIDs.remove(id) != nil else { throw refuse(.noData) }
            case .setTransactionID(let old, let new):
                guard old == target.transactionID else { throw refuse(.other) }
                target.transactionID = new
            case .reserveMetadataSnapshot:
                guard !target.metadataSnapshotHeld else { throw refuse(.busy) }
                target.metadataSnapshotHeld = true
            case .releaseMetadataSnapshot:
                guard target.metadataSnapshotHeld else { throw refuse(.other) }
                target.metadataSnapshotHeld = false
            }
            state.pools[pool] = target
        }
        return nil
    }

    func table(name: String) throws(DeviceMapperError) -> [TableLine]? {
        var table: [TableLine]?
        try record("table \(name)") { (state: inout State) throws(DeviceMapperError) in table = state.devices[name]?.table }
        return table
    }

    func status(name: String) throws(DeviceMapperError) -> [TableLine]? {
        var lines: [TableLine]?
        try record("status \(name)") { (state: inout State) throws(DeviceMapperError) in
            guard let device = state.devices[name] else { return }
            let length = device.table.first?.lengthSectors ?? 0
            if let pool = state.pools[name] {
                let parameters = pool.failed ? "Fail" : "\(pool.transactionID) \(pool.usedMetadataBlocks)/"
                    + "\(pool.totalMetadataBlocks) \(pool.usedDataBlocks)/\(pool.totalDataBlocks) - \(pool.mode) "
                    + "discard_passdown queue_if_no_space \(pool.needsCheck ? "needs_check" : "-") 1024"
                lines = [TableLine(lengthSectors: length, targetType: .thinPool, parameters: parameters)]
            } else {
                lines = [TableLine(lengthSectors: length, targetType: device.table.first?.targetType ?? .thin,
                                   parameters: "2048 4095")]
            }
        }
        return lines
    }

    func info(name: String) throws(DeviceMapperError) -> DeviceInfo? {
        var info: DeviceInfo?
        try record("info \(name)") { (state: inout State) throws(DeviceMapperError) in
            guard let device = state.devices[name] else { return }
            info = DeviceInfo(name: name, major: 253, minor: 0, openCount: device.openCount,
                              suspended: device.suspended, readOnly: device.readOnly)
        }
        return info
    }

    func list() throws(DeviceMapperError) -> [String] {
        var names: [String] = []
        try record("list") { (state: inout State) throws(DeviceMapperError) in names = state.devices.keys.sorted() }
        return names
    }

    func targetTypes() throws(DeviceMapperError) -> Set<TargetType> {
        var types: Set<TargetType> = []
        try record("targets") { (state: inout State) throws(DeviceMapperError) in
            types = Set(state.targets.map { TargetType(rawValue: $0) })
        }
        return types
    }

    func loadTargets(_ names: [String]) { state.withLock { $0.targets.formUnion(names) } }
    func unloadTargets(_ names: [String]) { state.withLock { $0.targets.subtract(names) } }
}
