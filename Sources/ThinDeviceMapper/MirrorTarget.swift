/// The `mirror` target (kernel dm-raid1.c, "device-mapper/dm-log"): its
/// table, its status line, and the on-disk form of its `disk` dirty-region
/// log, which thinsr writes before the mirror starts so that only the regions
/// it marks out of sync are copied.
extension TargetType {
    public static let mirror = TargetType(rawValue: "mirror")
}

/// One leg of a mirror: a device and the sector it starts at.
public struct MirrorLeg: Equatable, Sendable {
    public var device: String
    public var offsetSectors: UInt64

    public init(device: String, offsetSectors: UInt64 = 0) {
        self.device = device
        self.offsetSectors = offsetSectors
    }
}

/// The parameters of a `mirror` target with a `disk` log:
/// `disk 2 <log dev> <region size> <#legs> <dev> <offset>...` (no features:
/// without `handle_errors` a leg that fails is marked dead and the mirror
/// goes on with the others, never holding a write for userspace).
public struct MirrorTable: TargetTable, Equatable {
    public static let targetType = TargetType.mirror

    public var logDevice: String
    public var regionSectors: UInt64
    public var legs: [MirrorLeg]

    public init(logDevice: String, regionSectors: UInt64, legs: [MirrorLeg]) {
        self.logDevice = logDevice
        self.regionSectors = regionSectors
        self.legs = legs
    }

    /// A region is a power of two of sectors, at least 2 (dm-log's rule).
    public static func isValidRegion(sectors: UInt64) -> Bool { sectors >= 2 && sectors & (sectors - 1) == 0 }

    public var parameters: String {
        var words = ["disk", "2", logDevice, String(regionSectors), String(legs.count)]
        for leg in legs { words += [leg.device, String(leg.offsetSectors)] }
        return words.joined(separator: " ")
    }
}

/// The health of one mirror leg or of the log, as the status line shows it.
public enum MirrorHealth: Character, Sendable, Equatable {
    case alive = "A"
    case flushFailed = "F"
    case writeFailed = "D"
    case syncFailed = "S"
    case readFailed = "R"
    case unclassified = "U"
}

/// A mirror's status: `<#legs> <dev>... <in sync>/<regions> 1 <health per leg>
/// <#log words> <log type> [<log dev> <log health>]`.
public struct MirrorStatus: Equatable, Sendable {
    public var inSyncRegions: UInt64
    public var totalRegions: UInt64
    public var legHealth: [MirrorHealth]
    /// The log device's health (`disk` logs only).
    public var logHealth: MirrorHealth?

    public var isHealthy: Bool { legHealth.allSatisfy { $0 == .alive } && (logHealth ?? .alive) == .alive }
    public var isInSync: Bool { inSyncRegions >= totalRegions }

    public init?(parameters: String) {
        let words = parameters.split(separator: " ").map(String.init)
        guard let legs = words.first.flatMap(Int.init), legs >= 1, words.count >= legs + 4 else { return nil }
        let counts = words[legs + 1].split(separator: "/")
        guard counts.count == 2, let inSync = UInt64(counts[0]), let total = UInt64(counts[1]),
              words[legs + 2] == "1" else { return nil }
        let health = Array(words[legs + 3]).compactMap(MirrorHealth.init(rawValue:))
        guard health.count == legs else { return nil }
        inSyncRegions = inSync
        totalRegions = total
        legHealth = health
        // The log's words: `3 disk <dev> <health>` or `1 core`.
        let log = Array(words.dropFirst(legs + 4))
        logHealth = log.count == 4 && log[1] == "disk" ? log[3].first.flatMap(MirrorHealth.init(rawValue:)) : nil
    }
}

/// The contents of a `disk` dirty-region log (dm-log.c): a header in the
/// first sector (le32 magic "MiRr", le32 version 2, le64 region count), and
/// from byte 1024 one bit per region, little-endian, set where the region is
/// in sync. The kernel takes these bits as they are when the header is
/// valid and the table names no `sync`/`nosync`.
public struct MirrorDiskLog: Equatable, Sendable {
    public static let magic: UInt32 = 0x4D69_5272
    public static let version: UInt32 = 2
    public static let bitsetOffset = 1024

    public let regions: UInt64
    private var bits: [UInt8]

    /// A log with every region out of sync.
    public init(regions: UInt64) {
        self.regions = regions
        // The kernel reads the bitset in 32-bit words.
        bits = [UInt8](repeating: 0, count: Int((regions + 31) / 32 * 4))
    }

    public mutating func setInSync(_ region: UInt64, _ inSync: Bool) {
        precondition(region < regions, "region \(region) past the log's \(regions)")
        let mask = UInt8(1) << UInt8(region % 8)
        if inSync { bits[Int(region / 8)] |= mask } else { bits[Int(region / 8)] &= ~mask }
    }

    public func isInSync(_ region: UInt64) -> Bool { bits[Int(region / 8)] & (UInt8(1) << UInt8(region % 8)) != 0 }

    public var inSyncCount: UInt64 { bits.reduce(0) { $0 + UInt64($1.nonzeroBitCount) } }

    /// The bytes of the log device, padded to whole sectors.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.bitsetOffset)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (index, byte) in $0.enumerated() { out[offset + index] = byte } }
        }
        put(Self.magic, at: 0)
        put(Self.version, at: 4)
        put(regions, at: 8)
        out += bits
        out += [UInt8](repeating: 0, count: (512 - out.count % 512) % 512)
        return out
    }

    /// Reads back the bits of a log the kernel wrote (nil unless the header is valid).
    public init?(bytes: [UInt8]) {
        func read<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
            guard offset + MemoryLayout<T>.size <= bytes.count else { return nil }
            var value: T = 0
            for index in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + index]) << (8 * index) }
            return value
        }
        guard read(UInt32.self, at: 0) == Self.magic, read(UInt32.self, at: 4) == Self.version,
              let regions = read(UInt64.self, at: 8) else { return nil }
        self.init(regions: regions)
        guard bytes.count >= Self.bitsetOffset + self.bits.count else { return nil }
        self.bits = Array(bytes[Self.bitsetOffset..<Self.bitsetOffset + self.bits.count])
    }
}
