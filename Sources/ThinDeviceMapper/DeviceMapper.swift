internal import CDeviceMapper
internal import CThinShims
import Synchronization
import ThinTrace
#if canImport(Glibc)
import Glibc
#endif

/// What the kernel reports about one device-mapper device (made here
/// alone; the core's recording double builds it through `@testable import`).
public struct DeviceInfo: Equatable, Sendable {
    public var name: String
    public var major: UInt32
    public var minor: UInt32
    public var openCount: Int32 = 0
    public var suspended = false
    public var readOnly = false
    public var hasLiveTable = true
    public var targetCount: Int32 = 1
}

/// Which udev rules run for a device. Pool and internal devices are hidden
/// from udev's disk and other rules (no blkid scans, no /dev/disk links), as
/// LVM does for its own sub-devices; volumes keep the standard rules.
public enum UdevVisibility: Sendable {
    case standard
    case `private`

    var flags: UInt16 {
        switch self {
        case .standard:
            // A guest's disk is the guest's: the host runs no blkid on it and
            // makes no /dev/disk links, LVM or md scans (the `DmName.path` node stays).
            return UInt16(DM_UDEV_DISABLE_DISK_RULES_FLAG | DM_UDEV_DISABLE_OTHER_RULES_FLAG)
        case .private:
            return UInt16(DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG | DM_UDEV_DISABLE_DISK_RULES_FLAG
                | DM_UDEV_DISABLE_OTHER_RULES_FLAG)
        }
    }
}

/// The device-mapper control interface, through libdevmapper. Every libdevmapper
/// call in the project goes through this type; calls are serialized because
/// libdevmapper keeps global state.
public struct DeviceMapper: DeviceMapperControl {
    public init() {}

    /// Whether this kernel has device-mapper (the control node exists).
    public static var isAvailable: Bool { access(DmName.controlPath, F_OK) == 0 }

    /// Creates a device, loads `table` and resumes it (one DM_DEV_CREATE round).
    public func create(name: String, uuid: DmUuid?, table: [TableLine], readOnly: Bool,
                       udev: UdevVisibility) throws(DeviceMapperError) {
        // Without a table the kernel sends no uevent (only resume, remove and
        // rename do), so a udev cookie would never be released and udev makes
        // no node (`DmName.path`): libdevmapper makes it (dm_mknodes), and the
        // resume after a later load tells udev as usual.
        try Self.run(DM_DEVICE_CREATE, "create", device: name, udev: table.isEmpty ? nil : udev) { task in
            guard dm_task_set_name(task, name) != 0 else { return false }
            if let uuid, dm_task_set_uuid(task, uuid.rawValue) == 0 { return false }
            if readOnly, dm_task_set_ro(task) == 0 { return false }
            return Self.addTargets(task, table)
        }
        if table.isEmpty {
            let made = Self.lock.withLock { _ in dm_mknodes(name) != 0 }
            guard made else { throw DeviceMapperError(operation: "mknodes", device: name, errno: EIO) }
        }
    }

    /// Loads `table` into the device's inactive slot; `resume` makes it live.
    public func reload(name: String, table: [TableLine], readOnly: Bool) throws(DeviceMapperError) {
        try Self.run(DM_DEVICE_RELOAD, "reload", device: name, udev: nil) { task in
            guard dm_task_set_name(task, name) != 0 else { return false }
            if readOnly, dm_task_set_ro(task) == 0 { return false }
            return Self.addTargets(task, table)
        }
    }

    /// Suspends I/O; with `flush` (the default) outstanding I/O completes first.
    public func suspend(name: String, flush: Bool) throws(DeviceMapperError) {
        try Self.run(DM_DEVICE_SUSPEND, "suspend", device: name, udev: nil) { task in
            guard dm_task_set_name(task, name) != 0 else { return false }
            if !flush, dm_task_no_flush(task) == 0 { return false }
            return true
        }
    }

    public func resume(name: String, udev: UdevVisibility) throws(DeviceMapperError) {
        try Self.run(DM_DEVICE_RESUME, "resume", device: name, udev: udev) { task in
            dm_task_set_name(task, name) != 0
        }
    }

    /// Removes a device; libdevmapper retries briefly while udev holds it open.
    public func remove(name: String) throws(DeviceMapperError) {
        try Self.run(DM_DEVICE_REMOVE, "remove", device: name, udev: .standard) { task in
            dm_task_set_name(task, name) != 0 && dm_task_retry_remove(task) != 0
        }
    }

    public func rename(name: String, to newName: String) throws(DeviceMapperError) {
        try Self.run(DM_DEVICE_RENAME, "rename to \(newName)", device: name, udev: .standard) { task in
            dm_task_set_name(task, name) != 0 && dm_task_set_newname(task, newName) != 0
        }
    }

    public func removeDeferred(name: String) throws(DeviceMapperError) {
        try Self.run(DM_DEVICE_REMOVE, "remove (deferred)", device: name, udev: .standard) { task in
            dm_task_set_name(task, name) != 0 && dm_task_deferred_remove(task) != 0
        }
    }

    /// Sends a message to sector 0 of `device`; returns the response, if any.
    @discardableResult
    public func send(_ message: DeviceMessage, to device: String) throws(DeviceMapperError) -> String? {
        var response: String?
        let text = message.text
        try Self.run(DM_DEVICE_TARGET_MSG, "message '\(text)'", device: device, udev: nil, prepare: { task in
            dm_task_set_name(task, device) != 0 && dm_task_set_sector(task, 0) != 0
                && dm_task_set_message(task, text) != 0
        }, collect: { task in
            if let text = dm_task_get_message_response(task), text.pointee != 0 {
                response = String(cString: text)
            }
        })
        return response
    }

    /// The device's live table, or nil if the device does not exist.
    public func table(name: String) throws(DeviceMapperError) -> [TableLine]? {
        try Self.targets(DM_DEVICE_TABLE, "table", name: name)
    }

    /// The device's status lines (parameters hold the target's status), or nil if it does not exist.
    public func status(name: String) throws(DeviceMapperError) -> [TableLine]? {
        try Self.targets(DM_DEVICE_STATUS, "status", name: name)
    }

    /// The device's info, or nil if no device has that name.
    public func info(name: String) throws(DeviceMapperError) -> DeviceInfo? {
        var result: DeviceInfo?
        try Self.run(DM_DEVICE_INFO, "info", device: name, udev: nil, prepare: { task in
            dm_task_set_name(task, name) != 0
        }, collect: { task in
            var info = dm_info()
            guard dm_task_get_info(task, &info) != 0, info.exists != 0 else { return }
            result = DeviceInfo(name: name, major: info.major, minor: info.minor, openCount: info.open_count,
                                suspended: info.suspended != 0, readOnly: info.read_only != 0,
                                hasLiveTable: info.live_table != 0, targetCount: info.target_count)
        })
        return result
    }

    /// The names of all device-mapper devices.
    public func list() throws(DeviceMapperError) -> [String] {
        var names: [String] = []
        try Self.run(DM_DEVICE_LIST, "list", device: "-", udev: nil, prepare: { _ in true }, collect: { task in
            guard var entry = dm_task_get_names(task), entry.pointee.dev != 0 else { return }
            while true {
                names.append(String(cString: UnsafeRawPointer(entry).advanced(by: MemoryLayout<UInt64>.size + 4)
                    .assumingMemoryBound(to: CChar.self)))
                let next = entry.pointee.next
                if next == 0 { break }
                entry = UnsafeMutableRawPointer(entry).advanced(by: Int(next))
                    .assumingMemoryBound(to: dm_names.self)
            }
        })
        return names
    }

    /// The loaded target types (DM_LIST_VERSIONS, as `dmsetup targets`).
    public func targetTypes() throws(DeviceMapperError) -> Set<TargetType> {
        var types: Set<TargetType> = []
        try Self.run(DM_DEVICE_LIST_VERSIONS, "targets", device: "-", udev: nil, prepare: { _ in true }, collect: { task in
            guard var entry = dm_task_get_versions(task) else { return }
            while true {
                // struct dm_versions: next, version[3], then the name.
                let name = UnsafeRawPointer(entry).advanced(by: 4 * MemoryLayout<UInt32>.size)
                    .assumingMemoryBound(to: CChar.self)
                types.insert(TargetType(rawValue: String(cString: name)))
                let next = entry.pointee.next
                if next == 0 { break }
                entry = UnsafeMutableRawPointer(entry).advanced(by: Int(next)).assumingMemoryBound(to: dm_versions.self)
            }
        })
        return types
    }

    // MARK: - The seam

    private static let lock = Mutex<Void>(())

    private static func targets(_ type: Int, _ operation: String, name: String)
        throws(DeviceMapperError) -> [TableLine]? {
        var lines: [TableLine] = []
        var exists = false
        try Self.run(type, operation, device: name, udev: nil, prepare: { task in
            dm_task_set_name(task, name) != 0
        }, collect: { task in
            var info = dm_info()
            guard dm_task_get_info(task, &info) != 0, info.exists != 0 else { return }
            exists = true
            var next: UnsafeMutableRawPointer?
            repeat {
                var start: UInt64 = 0, length: UInt64 = 0
                var type: UnsafeMutablePointer<CChar>?, params: UnsafeMutablePointer<CChar>?
                next = dm_get_next_target(task, next, &start, &length, &type, &params)
                if let type {
                    lines.append(TableLine(startSector: start, lengthSectors: length,
                                           targetType: TargetType(rawValue: String(cString: type)),
                                           parameters: params.map { String(cString: $0) } ?? ""))
                }
            } while next != nil
        })
        return exists ? lines : nil
    }

    private static func addTargets(_ task: OpaquePointer, _ table: [TableLine]) -> Bool {
        table.allSatisfy { line in
            dm_task_add_target(task, line.startSector, line.lengthSectors, line.targetType.rawValue,
                               line.parameters) != 0
        }
    }

    private static func run(_ type: Int, _ operation: String, device: String, udev: UdevVisibility?,
                            prepare: (OpaquePointer) -> Bool) throws(DeviceMapperError) {
        try Self.run(type, operation, device: device, udev: udev, prepare: prepare, collect: { _ in })
    }

    /// Creates a task, lets `prepare` fill it, runs it (waiting for udev when
    /// the operation creates, resumes or removes a node), lets `collect` read
    /// the results, and turns any failure into a `DeviceMapperError`.
    private static func run(_ type: Int, _ operation: String, device: String, udev: UdevVisibility?,
                            prepare: (OpaquePointer) -> Bool,
                            collect: (OpaquePointer) -> Void) throws(DeviceMapperError) {
        let start = ContinuousClock.now
        let failure: DeviceMapperError? = lock.withLock { _ in
            installLogSink()
            DeviceMapperLog.reset()
            guard let task = dm_task_create(Int32(type)) else {
                return DeviceMapperError(operation: operation, device: device, errno: ENOMEM)
            }
            defer { dm_task_destroy(task) }
            var cookie: UInt32 = 0
            guard prepare(task),
                  udev.map({ dm_task_set_cookie(task, &cookie, $0.flags) != 0 }) ?? true
            else {
                return DeviceMapperError(operation: operation, device: device, errno: 0,
                                         messages: DeviceMapperLog.errors())
            }
            let succeeded = dm_task_run(task) != 0
            let taskErrno = dm_task_get_errno(task)
            if udev != nil { _ = dm_udev_wait(cookie) }
            guard succeeded else {
                return DeviceMapperError(operation: operation, device: device, errno: taskErrno,
                                         messages: DeviceMapperLog.errors())
            }
            collect(task)
            return nil
        }
        Trace.step("dm", "\(operation) \(device)", outcome: failure.map { "failed: \($0)" } ?? "ok", since: start)
        if let failure { throw failure }
    }

    private static let sinkInstalled = Mutex(false)

    private static func installLogSink() {
        sinkInstalled.withLock { installed in
            guard !installed else { return }
            installed = true
            // Without a live udevd libdevmapper makes the /dev nodes itself.
            dm_udev_set_sync_support(CThinShims_udev_is_running())
            CThinShims_dm_log_init { level, _, _, _, message in
                guard let message else { return }
                DeviceMapperLog.record(level: level, message: String(cString: message))
            }
        }
    }
}

/// libdevmapper's error lines for the call in progress. Warnings and debug
/// output are dropped unless THINSR_DEBUG is set, so the tools' stderr carries
/// only their own one-line errors.
enum DeviceMapperLog {
    private static let lines = Mutex<[String]>([])
    private static let debug = getenv("THINSR_DEBUG") != nil

    static func reset() { lines.withLock { $0.removeAll() } }
    static func errors() -> [String] { lines.withLock { $0 } }

    static func record(level: Int32, message: String) {
        let severity = level & 7
        if debug { writeStandardError("libdevmapper[\(severity)]: \(message)\n") }
        if severity <= 3 { lines.withLock { $0.append(message) } }
    }
}

/// Writes to fd 2 directly: stdio's `stderr` is shared mutable state to Swift 6.
func writeStandardError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
