/// A thin device's id inside its pool: 24 bits, chosen by the pool's user
/// (kernel thin-provisioning.rst, `create_thin <dev id>`).
public struct ThinDeviceID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let maximum = ThinDeviceID(unchecked: (1 << 24) - 1)
    /// Ids start at 1: thinsr never uses 0, so a zeroed field is never a device.
    public static let first = ThinDeviceID(unchecked: 1)

    public let value: UInt32

    /// Nil for a value outside the 24-bit space.
    public init?(_ value: UInt32) {
        guard value <= Self.maximum.value else { return nil }
        self.value = value
    }

    /// Nil for a value outside the 24-bit space (catalog rows, parsed text).
    public init?(_ value: Int64) {
        guard let narrow = UInt32(exactly: value) else { return nil }
        self.init(narrow)
    }

    init(unchecked value: UInt32) { self.value = value }

    /// The id after this one, wrapping from the maximum back to the first.
    public var successor: ThinDeviceID {
        self == .maximum ? .first : ThinDeviceID(unchecked: value + 1)
    }

    public var description: String { String(value) }
    public static func < (lhs: ThinDeviceID, rhs: ThinDeviceID) -> Bool { lhs.value < rhs.value }
}

extension ThinDeviceID: ExpressibleByIntegerLiteral {
    /// For tests and constants: a literal outside the 24-bit space is a programming error.
    public init(integerLiteral value: UInt32) {
        precondition(value <= Self.maximum.value, "thin device id \(value) exceeds 24 bits")
        self.value = value
    }
}
