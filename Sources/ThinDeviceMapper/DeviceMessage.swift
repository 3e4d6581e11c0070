/// The statistics messages any dm device takes (kernel statistics.rst) that
/// thinsr sends.
public enum StatsMessage: Hashable, Sendable, CustomStringConvertible {
    /// Count I/O over the whole device in areas of this many sectors; the
    /// response is the new statistics region's id.
    case create(areaSectors: UInt64)
    /// `count` areas' counters from line `first`, then zero them.
    case printClear(region: UInt64, first: UInt64, count: UInt64)
    case delete(region: UInt64)

    /// The message as the kernel reads it.
    public var text: String {
        switch self {
        case .create(let sectors): return "@stats_create - \(sectors)"
        case .printClear(let region, let first, let count): return "@stats_print_clear \(region) \(first) \(count)"
        case .delete(let region): return "@stats_delete \(region)"
        }
    }

    public var description: String { text }

    /// Parses `text` as written by `text`; nil for anything else.
    public init?(text: String) {
        let words = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        let numbers = words.dropFirst().map { UInt64($0) }
        switch (words.first, words.count) {
        case ("@stats_create", 3):
            guard words[1] == "-", let sectors = numbers[1], sectors > 0 else { return nil }
            self = .create(areaSectors: sectors)
        case ("@stats_print_clear", 4):
            guard let region = numbers[0], let first = numbers[1], let count = numbers[2] else { return nil }
            self = .printClear(region: region, first: first, count: count)
        case ("@stats_delete", 2): guard let region = numbers[0] else { return nil }; self = .delete(region: region)
        default: return nil
        }
    }
}

/// A message to sector 0 of a device, by the target that reads it.
public enum DeviceMessage: Hashable, Sendable, CustomStringConvertible {
    case pool(PoolMessage)
    case clone(CloneMessage)
    case stats(StatsMessage)

    /// The message as the kernel reads it.
    public var text: String {
        switch self {
        case .pool(let message): return message.text
        case .clone(let message): return message.text
        case .stats(let message): return message.text
        }
    }

    public var description: String { text }

    /// Parses `text` as one of the three kinds writes it; nil for anything else.
    public init?(text: String) {
        if let message = PoolMessage(text: text) {
            self = .pool(message)
        } else if let message = CloneMessage(text: text) {
            self = .clone(message)
        } else if let message = StatsMessage(text: text) {
            self = .stats(message)
        } else {
            return nil
        }
    }
}
