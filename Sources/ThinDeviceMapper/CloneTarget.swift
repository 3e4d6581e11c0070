/// The `clone` target (kernel dm-clone.rst): its table, its status line and
/// the messages it takes.

/// Optional features of a `clone` target.
public enum CloneFeature: String, CaseIterable, Sendable {
    /// Start without copying in the background (`enable_hydration` starts it).
    case noHydration = "no_hydration"
    /// A discard only marks regions as hydrated, and never reaches the destination.
    case noDiscardPassdown = "no_discard_passdown"
}

/// The parameters of a `clone` target: `<metadata dev> <destination dev>
/// <source dev> <region size> [<#features> <feature>...] [<#core args> <core arg>...]`.
public struct CloneTable: TargetTable, Equatable {
    public static let targetType = TargetType.clone

    public var metadataDevice: String
    public var destinationDevice: String
    public var sourceDevice: String
    public var regionSectors: UInt64
    public var features: [CloneFeature]
    /// At most this many regions copied at once (`hydration_threshold`).
    public var hydrationThreshold: UInt32?

    public init(metadataDevice: String, destinationDevice: String, sourceDevice: String, regionSectors: UInt64,
                features: [CloneFeature] = [], hydrationThreshold: UInt32? = nil) {
        self.metadataDevice = metadataDevice
        self.destinationDevice = destinationDevice
        self.sourceDevice = sourceDevice
        self.regionSectors = regionSectors
        self.features = features
        self.hydrationThreshold = hydrationThreshold
    }

    /// The feature count is written whenever a feature or a core argument follows.
    public var parameters: String {
        var words = [metadataDevice, destinationDevice, sourceDevice, String(regionSectors)]
        let coreArguments = hydrationThreshold.map { ["hydration_threshold", String($0)] } ?? []
        if !features.isEmpty || !coreArguments.isEmpty {
            words += [String(features.count)] + features.map(\.rawValue)
        }
        if !coreArguments.isEmpty { words += [String(coreArguments.count)] + coreArguments }
        return words.joined(separator: " ")
    }

    /// Parses parameters as `parameters` writes them.
    public init?(parameters: String) {
        let words = parameters.split(separator: " ").map(String.init)
        guard words.count >= 4, let region = UInt64(words[3]) else { return nil }
        var rest = words.dropFirst(4)
        guard let features = CloneStatus.features(&rest), let core = CloneStatus.coreArguments(&rest), rest.isEmpty
        else { return nil }
        var threshold: UInt32?
        for (key, value) in core {
            guard key == "hydration_threshold", let number = UInt32(value) else { return nil }
            threshold = number
        }
        self.init(metadataDevice: words[0], destinationDevice: words[1], sourceDevice: words[2],
                  regionSectors: region, features: features, hydrationThreshold: threshold)
    }
}

/// A clone device's status: `<metadata block size> <used>/<total metadata
/// blocks> <region size> <hydrated>/<total regions> <hydrating regions>
/// <#features> <feature>... <#core args> <core arg>... <rw|ro>`, or `Fail`.
public enum CloneStatus: Equatable, Sendable {
    case active(CloneUsage)
    case failed

    public init?(parameters: String) {
        let words = parameters.split(separator: " ").map(String.init)
        if words == ["Fail"] { self = .failed; return }
        guard words.count >= 5, let metadataBlock = UInt64(words[0]),
              let (usedMeta, totalMeta) = fraction(words[1]), let region = UInt64(words[2]),
              let (hydrated, total) = fraction(words[3]), let hydrating = UInt64(words[4]) else { return nil }
        var rest = words.dropFirst(5)
        guard let features = Self.features(&rest), let core = Self.coreArguments(&rest) else { return nil }
        let mode: CloneUsage.Mode?
        switch rest.first {
        case nil: mode = nil
        case "rw": mode = .readWrite
        case "ro": mode = .readOnly
        default: return nil
        }
        guard rest.count <= 1 else { return nil }
        let arguments = Dictionary(core, uniquingKeysWith: { _, last in last })
        self = .active(CloneUsage(
            metadataBlockSectors: metadataBlock, usedMetadataBlocks: usedMeta, totalMetadataBlocks: totalMeta,
            regionSectors: region, hydratedRegions: hydrated, totalRegions: total, hydratingRegions: hydrating,
            features: features, hydrationThreshold: arguments["hydration_threshold"].flatMap { UInt32($0) },
            hydrationBatchSize: arguments["hydration_batch_size"].flatMap { UInt32($0) }, mode: mode))
    }

    /// `<count> <feature>...` from the front of `words`; nil if malformed.
    static func features(_ words: inout ArraySlice<String>) -> [CloneFeature]? {
        guard let first = words.first else { return [] }
        guard let count = Int(first), count >= 0, words.count > count else { return nil }
        let features = words.dropFirst().prefix(count).compactMap(CloneFeature.init(rawValue:))
        guard features.count == count else { return nil }
        words = words.dropFirst(1 + count)
        return features
    }

    /// `<count> <key> <value>...` from the front of `words`; nil if malformed.
    static func coreArguments(_ words: inout ArraySlice<String>) -> [(String, String)]? {
        guard let first = words.first else { return [] }
        guard let count = Int(first), count >= 0, count % 2 == 0, words.count > count else { return nil }
        let flat = Array(words.dropFirst().prefix(count))
        words = words.dropFirst(1 + count)
        return stride(from: 0, to: flat.count, by: 2).map { (flat[$0], flat[$0 + 1]) }
    }
}

/// A working clone device's figures, from its status line.
public struct CloneUsage: Equatable, Sendable {
    public enum Mode: Sendable { case readWrite, readOnly }

    public var metadataBlockSectors: UInt64
    public var usedMetadataBlocks: UInt64
    public var totalMetadataBlocks: UInt64
    public var regionSectors: UInt64
    public var hydratedRegions: UInt64
    public var totalRegions: UInt64
    /// Regions being copied now.
    public var hydratingRegions: UInt64
    public var features: [CloneFeature]
    public var hydrationThreshold: UInt32?
    public var hydrationBatchSize: UInt32?
    /// Nil where the line ends before it.
    public var mode: Mode?
}

/// The messages a `clone` target accepts that thinsr sends (dm-clone.rst).
public enum CloneMessage: Hashable, Sendable, CustomStringConvertible {
    /// Start or stop copying the source's regions in the background.
    case enableHydration
    case disableHydration
    /// At most this many regions copied at once (the throttle).
    case hydrationThreshold(UInt32)

    /// The message as the kernel reads it.
    public var text: String {
        switch self {
        case .enableHydration: return "enable_hydration"
        case .disableHydration: return "disable_hydration"
        case .hydrationThreshold(let regions): return "hydration_threshold \(regions)"
        }
    }

    public var description: String { text }

    /// Parses `text` as written by `text`; nil for anything else.
    public init?(text: String) {
        let words = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        switch (words.first, words.count) {
        case ("enable_hydration", 1): self = .enableHydration
        case ("disable_hydration", 1): self = .disableHydration
        case ("hydration_threshold", 2):
            guard let regions = UInt32(words[1]) else { return nil }
            self = .hydrationThreshold(regions)
        default: return nil
        }
    }
}

/// `<used>/<total>` with used <= total.
func fraction(_ word: String) -> (UInt64, UInt64)? {
    let parts = word.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, let used = UInt64(parts[0]), let total = UInt64(parts[1]), used <= total else { return nil }
    return (used, total)
}
