/// A device-mapper device name, and where its node is. This is the one
/// place the project spells the node directory: every path of a dm device
/// (thinsr's own and LVM's `<vg>-<lv>`) and of the control node is made here.
public struct DmName: Hashable, Comparable, Sendable, CustomStringConvertible {
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
    public init?(validating name: String) {
        guard Self.isValid(name) else { return nil }
        rawValue = name
    }

    /// A name built by a pattern known to be valid (thinsr's own names);
    /// an invalid one is a programming error.
    public init(_ name: String) {
        precondition(Self.isValid(name), "invalid device-mapper name \"\(name)\"")
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

    public var description: String { rawValue }
    public static func < (lhs: DmName, rhs: DmName) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A device-mapper device's uuid: the kernel's second, unchanging name
/// (thinsr's `THINSR-<sr>-...`, LVM's `LVM-...`), set once at create.
public struct DmUuid: Hashable, Sendable, CustomStringConvertible {
    /// dm-ioctl.h's DM_UUID_LEN (129) less its terminating NUL.
    public static let maximumBytes = 128

    public let rawValue: String

    /// Nil for a uuid the kernel refuses: empty, longer than 128 bytes, or containing a NUL.
    public init?(validating uuid: String) {
        guard Self.isValid(uuid) else { return nil }
        rawValue = uuid
    }

    /// A uuid built by a pattern known to be valid; an invalid one is a programming error.
    public init(_ uuid: String) {
        precondition(Self.isValid(uuid), "invalid device-mapper uuid \"\(uuid)\"")
        rawValue = uuid
    }

    public static func isValid(_ uuid: String) -> Bool {
        !uuid.utf8.isEmpty && uuid.utf8.count <= maximumBytes && !uuid.utf8.contains(0)
    }

    public var description: String { rawValue }
}
