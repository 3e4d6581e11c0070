/// Byte sizes as users type them: plain bytes, or a number with K/M/G/T/P
/// (also KiB/MiB/GiB/TiB/PiB, and k/m/g/t; all binary, as LVM's suffixes are).
public enum ByteSize {
    static let units: [(suffixes: [String], shift: UInt64)] = [
        (["", "B", "b"], 0),
        (["K", "k", "KiB", "KB"], 10),
        (["M", "m", "MiB", "MB"], 20),
        (["G", "g", "GiB", "GB"], 30),
        (["T", "t", "TiB", "TB"], 40),
        (["P", "p", "PiB", "PB"], 50),
    ]

    /// Parses `text`; throws an `Invalid_argument` error naming what is wrong.
    public static func parse(_ text: String, what: String = "size") throws(ThinError) -> UInt64 {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        let suffix = String(text.dropFirst(digits.count))
        guard !digits.isEmpty else {
            throw .invalid("\(what) \"\(text)\" is not a number; give bytes or a number with K, M, G or T")
        }
        guard let unit = units.first(where: { $0.suffixes.contains(suffix) }) else {
            throw .invalid("\(what) \"\(text)\" has unknown suffix \"\(suffix)\"; use K, M, G, T or P (or KiB, MiB, GiB, TiB)")
        }
        guard let value = UInt64(digits) else { throw .invalid("\(what) \"\(text)\" is too large") }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: 1 << unit.shift)
        guard !overflow else { throw .invalid("\(what) \"\(text)\" is too large") }
        return bytes
    }

    /// `bytes` in the largest binary unit that keeps one decimal, e.g. `1.5G`.
    public static func format(_ bytes: UInt64) -> String {
        for (suffix, shift) in [("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)] as [(String, UInt64)]
        where bytes >= 1 << shift {
            let tenths = (bytes * 10 + (1 << shift) / 2) >> shift
            return tenths % 10 == 0 ? "\(tenths / 10)\(suffix)" : "\(tenths / 10).\(tenths % 10)\(suffix)"
        }
        return "\(bytes)B"
    }

    public static func roundUp(_ value: UInt64, to multiple: UInt64) -> UInt64 {
        let remainder = value % multiple
        return remainder == 0 ? value : value + (multiple - remainder)
    }
}
