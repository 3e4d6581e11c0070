/// What a device-mapper device's two names share: a string the kernel
/// limits, checked once when the value is made (`init?(rawValue:)`, which
/// each type implements with its own rule).
public protocol DeviceMapperIdentifier: RawRepresentable, Hashable, Sendable, CustomStringConvertible
    where RawValue == String {
    /// What the kernel calls it, for the message of a programming error.
    static var kind: String { get }
}

extension DeviceMapperIdentifier {
    /// Nil for a value the kernel refuses.
    public init?(validating text: String) { self.init(rawValue: text) }

    /// A value built by a pattern known to be valid (thinsr's own names and
    /// uuids); an invalid one is a programming error.
    public init(_ text: String) {
        guard let valid = Self(rawValue: text) else { preconditionFailure("invalid device-mapper \(Self.kind) \"\(text)\"") }
        self = valid
    }

    public var description: String { rawValue }
}

/// A device-mapper device name, and where its node is. This is the one
/// place the project spells the node directory: every path of a dm device
/// (thinsr's own and LVM's `<vg>-<lv>`) and of the control node is made here.
public struct DmName: DeviceMapperIdentifier, Comparable {
    public static let kind = "name"
    /// The directory of device-mapper's nodes (and of its control node).
    static let nodeDirectory = "/dev/mapper"
    /// The control node every device-mapper ioctl goes through.
    public static let controlPath = "\(nodeDirectory)/control"
    /// dm-ioctl.h's DM_NAME_LEN (128) less its terminating NUL.
    public static let maximumBytes = 127

    /// The name as the kernel and dmsetup show it.
    public let rawValue: String

    /// Nil for a name the kernel refuses: empty, longer than 127 bytes,
    /// containing `/` or a NUL, or `.`/`..` (the node would not be a node).
    public init?(rawValue name: String) {
        guard Self.isValid(name) else { return nil }
        rawValue = name
    }

    /// The name LVM gives an active LV's device, `<vg>-<lv>`, doubling each
    /// `-` inside either name. LVM validated both names; this adds no check.
    public init(lvmGroup group: String, volume: String) {
        let escape = { (text: String) in
            text.split(separator: "-", omittingEmptySubsequences: false).joined(separator: "--")
        }
        rawValue = "\(escape(group))-\(escape(volume))"
    }

    public static func isValid(_ name: String) -> Bool {
        let bytes = name.utf8
        return !bytes.isEmpty && bytes.count <= maximumBytes && name != "." && name != ".."
            && !bytes.contains(UInt8(ascii: "/")) && !bytes.contains(0)
    }

    /// The device's node, `<node directory>/<name>`.
    public var path: String { "\(Self.nodeDirectory)/\(rawValue)" }

    public static func < (lhs: DmName, rhs: DmName) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A device-mapper device's uuid: the kernel's second, unchanging name
/// (thinsr's `THINSR-<sr>-...`, LVM's `LVM-...`), set once at create.
public struct DmUuid: DeviceMapperIdentifier {
    public static let kind = "uuid"
    /// dm-ioctl.h's DM_UUID_LEN (129) less its terminating NUL.
    public static let maximumBytes = 128

    public let rawValue: String

    /// Nil for a uuid the kernel refuses: empty, longer than 128 bytes, or containing a NUL.
    public init?(rawValue uuid: String) {
        guard Self.isValid(uuid) else { return nil }
        rawValue = uuid
    }

    public static func isValid(_ uuid: String) -> Bool {
        !uuid.utf8.isEmpty && uuid.utf8.count <= maximumBytes && !uuid.utf8.contains(0)
    }
}
