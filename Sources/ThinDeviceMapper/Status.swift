/// The mode a thin pool is in, from its status line.
public enum ThinPoolMode: String, Sendable, Codable {
    case readWrite = "rw"
    case readOnly = "ro"
    case outOfDataSpace = "out_of_data_space"
}

/// A healthy pool's status line:
/// `<transaction id> <used meta>/<total meta> <used data>/<total data> <held root|-> <mode>
///  [no_]discard_passdown error|queue_if_no_space needs_check|- [<metadata low watermark>]`.
public struct ThinPoolUsage: Equatable, Sendable {
    public var transactionID: UInt64
    public var usedMetadataBlocks: UInt64
    public var totalMetadataBlocks: UInt64
    public var usedDataBlocks: UInt64
    public var totalDataBlocks: UInt64
    public var heldMetadataRoot: UInt64?
    public var mode: ThinPoolMode
    public var discardPassdown: Bool
    public var errorIfNoSpace: Bool
    public var needsCheck: Bool
    /// Absent on older kernels (thin-pool target 1.19, e.g. Linux 4.9); 4.19's 1.20 reports it.
    public var metadataLowWatermark: UInt64?

    /// Metadata blocks are always 4 KiB.
    public static let metadataBlockBytes: UInt64 = 4096
}

/// A thin pool's status: the kernel reports `Fail` when the pool has failed,
/// and libdevmapper consumers also see `Error` on some kernels.
public enum ThinPoolStatus: Equatable, Sendable {
    case active(ThinPoolUsage)
    case failed
    case error

    public init?(parameters: String) {
        let words = parameters.split(separator: " ").map(String.init)
        switch words.first {
        case "Fail": self = .failed; return
        case "Error": self = .error; return
        default: break
        }
        guard (8...9).contains(words.count),
              let transactionID = UInt64(words[0]),
              let (usedMeta, totalMeta) = Self.fraction(words[1]),
              let (usedData, totalData) = Self.fraction(words[2]),
              let mode = ThinPoolMode(rawValue: words[4])
        else { return nil }
        let heldRoot: UInt64?
        if words[3] == "-" { heldRoot = nil } else {
            guard let root = UInt64(words[3]) else { return nil }
            heldRoot = root
        }
        let discardPassdown: Bool
        switch words[5] {
        case "discard_passdown": discardPassdown = true
        // A pool made without discards (another tool's, or by hand) says ignore_discard, on 4.19 as on 6.1.
        case "no_discard_passdown", "ignore_discard": discardPassdown = false
        default: return nil
        }
        let errorIfNoSpace: Bool
        switch words[6] {
        case "error_if_no_space": errorIfNoSpace = true
        case "queue_if_no_space": errorIfNoSpace = false
        default: return nil
        }
        let needsCheck: Bool
        switch words[7] {
        case "needs_check": needsCheck = true
        case "-": needsCheck = false
        default: return nil
        }
        var lowWatermark: UInt64?
        if words.count == 9 {
            guard let value = UInt64(words[8]) else { return nil }
            lowWatermark = value
        }
        self = .active(ThinPoolUsage(
            transactionID: transactionID, usedMetadataBlocks: usedMeta, totalMetadataBlocks: totalMeta,
            usedDataBlocks: usedData, totalDataBlocks: totalData, heldMetadataRoot: heldRoot, mode: mode,
            discardPassdown: discardPassdown, errorIfNoSpace: errorIfNoSpace, needsCheck: needsCheck,
            metadataLowWatermark: lowWatermark))
    }

    private static func fraction(_ word: String) -> (UInt64, UInt64)? {
        let parts = word.split(separator: "/")
        guard parts.count == 2, let used = UInt64(parts[0]), let total = UInt64(parts[1]), used <= total else {
            return nil
        }
        return (used, total)
    }
}

/// A thin device's status: `<nr mapped sectors> <highest mapped sector|->`, or `Fail` or `Error`.
public enum ThinStatus: Equatable, Sendable {
    case active(mappedSectors: UInt64, highestMappedSector: UInt64?)
    case failed

    public init?(parameters: String) {
        let words = parameters.split(separator: " ").map(String.init)
        // Fail, or Error when the kernel could not read the device's metadata (4.19 and 6.1 alike).
        if words == ["Fail"] || words == ["Error"] { self = .failed; return }
        guard words.count == 2, let mapped = UInt64(words[0]) else { return nil }
        if words[1] == "-" {
            self = .active(mappedSectors: mapped, highestMappedSector: nil)
        } else if let highest = UInt64(words[1]) {
            self = .active(mappedSectors: mapped, highestMappedSector: highest)
        } else {
            return nil
        }
    }
}
