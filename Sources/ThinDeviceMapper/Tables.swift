/// A device-mapper target type, as tables and status lines name it. The
/// kernel may report any type; the ones thinsr builds have constants, and
/// this module is the only place their names are spelled.
public struct TargetType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }

    public static let linear = TargetType(rawValue: "linear")
    public static let error = TargetType(rawValue: "error")
    public static let thin = TargetType(rawValue: "thin")
    public static let thinPool = TargetType(rawValue: "thin-pool")
    public static let clone = TargetType(rawValue: "clone")

    public var description: String { rawValue }
}

/// One line of a device-mapper table: `<start> <length> <target type> <params>`.
public struct TableLine: Equatable, Sendable {
    public var startSector: UInt64
    public var lengthSectors: UInt64
    public var targetType: TargetType
    public var parameters: String

    public init(startSector: UInt64 = 0, lengthSectors: UInt64, targetType: TargetType, parameters: String) {
        self.startSector = startSector
        self.lengthSectors = lengthSectors
        self.targetType = targetType
        self.parameters = parameters
    }
}

/// A target's constructor parameters, typed: each builds its table line.
public protocol TargetTable: Sendable {
    static var targetType: TargetType { get }
    /// The parameters as the kernel reads them.
    var parameters: String { get }
}

extension TargetTable {
    /// A one-target table line of `lengthSectors` from sector 0.
    public func line(lengthSectors: UInt64) -> TableLine {
        TableLine(lengthSectors: lengthSectors, targetType: Self.targetType, parameters: parameters)
    }
}

/// Optional features of a `thin-pool` target (kernel thin-provisioning.rst).
public enum ThinPoolFeature: String, CaseIterable, Sendable {
    case skipBlockZeroing = "skip_block_zeroing"
    case ignoreDiscard = "ignore_discard"
    case noDiscardPassdown = "no_discard_passdown"
    case readOnly = "read_only"
    case errorIfNoSpace = "error_if_no_space"
}

/// The parameters of a `thin-pool` target:
/// `<metadata dev> <data dev> <data block size> <low water mark> [<#features> <feature>...]`.
public struct ThinPoolTable: TargetTable, Equatable {
    public static let targetType = TargetType.thinPool

    /// Valid data block sizes: 64 KiB to 1 GiB, in multiples of 64 KiB (in 512-byte sectors).
    public static let blockSizeSectorRange: ClosedRange<UInt64> = 128...2_097_152
    public static let blockSizeSectorMultiple: UInt64 = 128

    public var metadataDevice: String
    public var dataDevice: String
    public var blockSizeSectors: UInt64
    public var lowWaterMarkBlocks: UInt64
    public var features: [ThinPoolFeature]

    public init(metadataDevice: String, dataDevice: String, blockSizeSectors: UInt64,
                lowWaterMarkBlocks: UInt64, features: [ThinPoolFeature] = []) {
        self.metadataDevice = metadataDevice
        self.dataDevice = dataDevice
        self.blockSizeSectors = blockSizeSectors
        self.lowWaterMarkBlocks = lowWaterMarkBlocks
        self.features = features
    }

    public static func isValidBlockSize(sectors: UInt64) -> Bool {
        blockSizeSectorRange.contains(sectors) && sectors % blockSizeSectorMultiple == 0
    }

    public var parameters: String {
        var words = [metadataDevice, dataDevice, String(blockSizeSectors), String(lowWaterMarkBlocks)]
        words.append(String(features.count))
        words += features.map(\.rawValue)
        return words.joined(separator: " ")
    }

    /// Parses the parameters the kernel reports in `dmsetup table` (devices as `major:minor`).
    public init?(parameters: String) {
        let words = parameters.split(separator: " ").map(String.init)
        guard words.count >= 4, let block = UInt64(words[2]), let lowWater = UInt64(words[3]) else { return nil }
        var features: [ThinPoolFeature] = []
        if words.count > 4 {
            guard let count = Int(words[4]), words.count == 5 + count else { return nil }
            for word in words[5...] {
                guard let feature = ThinPoolFeature(rawValue: word) else { return nil }
                features.append(feature)
            }
        }
        self.init(metadataDevice: words[0], dataDevice: words[1], blockSizeSectors: block,
                  lowWaterMarkBlocks: lowWater, features: features)
    }
}

/// The parameters of a `thin` target: `<pool dev> <dev id> [<external origin dev>]`.
public struct ThinTable: TargetTable, Equatable {
    public static let targetType = TargetType.thin

    public var poolDevice: String
    public var deviceID: ThinDeviceID
    public var externalOrigin: String?

    public init(poolDevice: String, deviceID: ThinDeviceID, externalOrigin: String? = nil) {
        self.poolDevice = poolDevice
        self.deviceID = deviceID
        self.externalOrigin = externalOrigin
    }

    public var parameters: String {
        [poolDevice, deviceID.description, externalOrigin].compactMap { $0 }.joined(separator: " ")
    }

    public init?(parameters: String) {
        let words = parameters.split(separator: " ").map(String.init)
        guard (2...3).contains(words.count), let id = UInt32(words[1]).flatMap(ThinDeviceID.init(_:)) else { return nil }
        self.init(poolDevice: words[0], deviceID: id, externalOrigin: words.count == 3 ? words[2] : nil)
    }
}

/// The parameters of a `linear` target: `<device> <offset>`.
public struct LinearTable: TargetTable, Equatable {
    public static let targetType = TargetType.linear

    public var device: String
    public var offsetSectors: UInt64

    public init(device: String, offsetSectors: UInt64 = 0) {
        self.device = device
        self.offsetSectors = offsetSectors
    }

    public var parameters: String { "\(device) \(offsetSectors)" }

    /// Parses `<device> <offset>` (the kernel shows the device as `major:minor`).
    public init?(parameters: String) {
        let words = parameters.split(separator: " ").map(String.init)
        guard words.count == 2, let offset = UInt64(words[1]) else { return nil }
        self.init(device: words[0], offsetSectors: offset)
    }
}

/// An `error` target: every I/O fails. It takes no parameters.
public struct ErrorTable: TargetTable, Equatable {
    public static let targetType = TargetType.error

    public init() {}

    public var parameters: String { "" }
}
