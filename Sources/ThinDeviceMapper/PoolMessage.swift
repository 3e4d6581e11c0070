/// The messages a `thin-pool` target accepts that thinsr sends (kernel
/// thin-provisioning.rst, "Pool messages"), and the `clone` target's
/// hydration messages (dm-clone.rst), and the statistics messages any dm
/// device takes (statistics.rst). Only these reach a target.
public enum PoolMessage: Hashable, Sendable, CustomStringConvertible {
    case createThin(ThinDeviceID)
    case createSnapshot(ThinDeviceID, origin: ThinDeviceID)
    case delete(ThinDeviceID)
    case setTransactionID(old: UInt64, new: UInt64)
    case reserveMetadataSnapshot
    case releaseMetadataSnapshot
    /// dm-clone: start or stop copying the source's regions in the background.
    case enableHydration
    case disableHydration
    /// dm-clone: at most this many regions copied at once (the throttle).
    case hydrationThreshold(UInt32)
    /// dm-stats: count I/O over the whole device in areas of this many
    /// sectors; the response is the new statistics region's id.
    case statsCreate(areaSectors: UInt64)
    /// dm-stats: `count` areas' counters from line `first`, then zero them.
    case statsPrintClear(region: UInt64, first: UInt64, count: UInt64)
    case statsDelete(region: UInt64)

    /// The message as the kernel reads it.
    public var text: String {
        switch self {
        case .createThin(let id): return "create_thin \(id)"
        case .createSnapshot(let id, let origin): return "create_snap \(id) \(origin)"
        case .delete(let id): return "delete \(id)"
        case .setTransactionID(let old, let new): return "set_transaction_id \(old) \(new)"
        case .reserveMetadataSnapshot: return "reserve_metadata_snap"
        case .releaseMetadataSnapshot: return "release_metadata_snap"
        case .enableHydration: return "enable_hydration"
        case .disableHydration: return "disable_hydration"
        case .hydrationThreshold(let regions): return "hydration_threshold \(regions)"
        case .statsCreate(let sectors): return "@stats_create - \(sectors)"
        case .statsPrintClear(let region, let first, let count): return "@stats_print_clear \(region) \(first) \(count)"
        case .statsDelete(let region): return "@stats_delete \(region)"
        }
    }

    public var description: String { text }

    /// Parses `text` as written by `text`; nil for anything else.
    public init?(text: String) {
        let words = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        let ids = words.dropFirst().map { UInt32($0).flatMap(ThinDeviceID.init(_:)) }
        let numbers = words.dropFirst().map { UInt64($0) }
        switch (words.first, words.count) {
        case ("create_thin", 2): guard let id = ids[0] else { return nil }; self = .createThin(id)
        case ("create_snap", 3):
            guard let id = ids[0], let origin = ids[1] else { return nil }
            self = .createSnapshot(id, origin: origin)
        case ("delete", 2): guard let id = ids[0] else { return nil }; self = .delete(id)
        case ("set_transaction_id", 3):
            guard let old = numbers[0], let new = numbers[1] else { return nil }
            self = .setTransactionID(old: old, new: new)
        case ("reserve_metadata_snap", 1): self = .reserveMetadataSnapshot
        case ("release_metadata_snap", 1): self = .releaseMetadataSnapshot
        case ("enable_hydration", 1): self = .enableHydration
        case ("disable_hydration", 1): self = .disableHydration
        case ("hydration_threshold", 2):
            guard let regions = numbers[0].flatMap(UInt32.init(exactly:)) else { return nil }
            self = .hydrationThreshold(regions)
        case ("@stats_create", 3):
            guard words[1] == "-", let sectors = numbers[1], sectors > 0 else { return nil }
            self = .statsCreate(areaSectors: sectors)
        case ("@stats_print_clear", 4):
            guard let region = numbers[0], let first = numbers[1], let count = numbers[2] else { return nil }
            self = .statsPrintClear(region: region, first: first, count: count)
        case ("@stats_delete", 2): guard let region = numbers[0] else { return nil }; self = .statsDelete(region: region)
        default: return nil
        }
    }

    /// The thin device this message creates, if it creates one.
    public var createdID: ThinDeviceID? {
        switch self {
        case .createThin(let id), .createSnapshot(let id, _): return id
        default: return nil
        }
    }

    /// The thin device this message deletes, if it deletes one.
    public var deletedID: ThinDeviceID? {
        if case .delete(let id) = self { return id }
        return nil
    }
}
