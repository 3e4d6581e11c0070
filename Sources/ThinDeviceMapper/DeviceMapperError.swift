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

    public var description: String {
        var text = "device-mapper \(operation) on \(device) failed"
        if errno != 0 { text += ": \(String(cString: strerror(errno)))" }
        if let last = messages.last, errno == 0 { text += ": \(last)" }
        return text
    }

    // Named errno values callers branch on; the C constants stay the source of truth.
    public static var noSuchDevice: Int32 { ENXIO }
    public static var busy: Int32 { EBUSY }
    public static var exists: Int32 { EEXIST }
    public static var noData: Int32 { ENODATA }
}
