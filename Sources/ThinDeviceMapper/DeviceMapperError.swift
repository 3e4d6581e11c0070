#if canImport(Glibc)
import Glibc
#endif

/// A failed device-mapper operation: what was attempted, on which device, and
/// the errno the kernel returned (0 when libdevmapper failed before the ioctl).
public struct DeviceMapperError: Error, Equatable, CustomStringConvertible {
    public var operation: String
    public var device: String
    public var errno: Int32
    /// libdevmapper's own error lines for this call, if it logged any.
    public var messages: [String]

    public init(operation: String, device: String, errno: Int32, messages: [String] = []) {
        self.operation = operation
        self.device = device
        self.errno = errno
        self.messages = messages
    }

    /// Make an error with the errno behind `reason` (for doubles and tests).
    public init(operation: String, device: String, reason: Reason) {
        let code: Int32
        switch reason {
        case .noSuchDevice: code = ENXIO
        case .busy: code = EBUSY
        case .alreadyExists: code = EEXIST
        case .noData: code = ENODATA
        case .noSpace: code = ENOSPC
        case .other: code = EIO
        }
        self.init(operation: operation, device: device, errno: code)
    }

    /// The errnos callers branch on, by name; the C constants stay the source of truth.
    public enum Reason: Equatable, Sendable {
        /// ENXIO: the device does not exist (e.g. removing a pool already gone).
        case noSuchDevice
        /// EBUSY: open, or the pool's one metadata snapshot is already held.
        case busy
        /// EEXIST: `create_thin`/`create_snap` of an id the pool has.
        case alreadyExists
        /// ENODATA: `delete` of an id the pool lacks.
        case noData
        /// ENOSPC: the pool has no room for the change.
        case noSpace
        case other
    }

    public var reason: Reason {
        switch errno {
        case ENXIO: return .noSuchDevice
        case EBUSY: return .busy
        case EEXIST: return .alreadyExists
        case ENODATA: return .noData
        case ENOSPC: return .noSpace
        default: return .other
        }
    }

    public var description: String {
        var text = "device-mapper \(operation) on \(device) failed"
        if errno != 0 { text += ": \(String(cString: strerror(errno)))" }
        if let last = messages.last, errno == 0 { text += ": \(last)" }
        return text
    }
}
