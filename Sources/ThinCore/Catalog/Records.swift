public import FoundationEssentials
public import ThinDeviceMapper

/// The SR's own record in its catalog.
public struct SRRecord: Equatable, Sendable {
    public var uuid: UUID
    public var name: String
    public var description: String
    public var mode: SRMode
    public var volumeGroup: String
    public var blockSizeBytes: UInt64
    public var transactionID: UInt64
    public var nextThinID: ThinDeviceID
    public var createdAt: Int64
    /// What writes do when the pool's data is full.
    public var onFull: OnFullPolicy = .queue
    /// When the pool monitor grows the pool, and by how much.
    public var autoextend = AutoextendPolicy()
}

/// The pool monitor's policy for one SR (LVM's thin_pool_autoextend_threshold
/// and _percent, plus a warning level): at `thresholdPercent` of data or
/// metadata used, grow by `step`; from `warningPercent`, warn. A threshold of
/// 100 never grows.
public struct AutoextendPolicy: Equatable, Sendable {
    public enum Step: Equatable, Sendable {
        case bytes(UInt64)
        case percent(Int)

        /// "20%" or a byte count.
        public var text: String {
            switch self {
            case .bytes(let bytes): return String(bytes)
            case .percent(let percent): return "\(percent)%"
            }
        }

        public init?(text: String) {
            if text.hasSuffix("%") {
                guard let percent = Int(text.dropLast()), (1...1000).contains(percent) else { return nil }
                self = .percent(percent)
            } else {
                guard let bytes = UInt64(text), bytes > 0 else { return nil }
                self = .bytes(bytes)
            }
        }

        /// The bytes to add to a pool of `dataBytes`.
        public func bytes(of dataBytes: UInt64) -> UInt64 {
            switch self {
            case .bytes(let bytes): return bytes
            case .percent(let percent): return dataBytes / 100 * UInt64(percent)
            }
        }
    }

    public static let thresholdRange = 50...100
    public static let warningRange = 1...100

    public var thresholdPercent = 80
    public var step = Step.percent(20)
    public var warningPercent = 75

    public init(thresholdPercent: Int = 80, step: Step = .percent(20), warningPercent: Int = 75) {
        self.thresholdPercent = thresholdPercent
        self.step = step
        self.warningPercent = warningPercent
    }

    public var growsPool: Bool { thresholdPercent < 100 }

    /// The pool table's low water mark, in percent of its data: the kernel
    /// raises an event when free data falls below it, which is when the
    /// threshold is crossed (a twentieth when the monitor never grows).
    var lowWaterPercent: Int { growsPool ? 100 - thresholdPercent : 5 }
}

/// dm-thin's out-of-data-space behaviour: `queue` holds writes until the pool
/// grows (the kernel fails them after its no_space_timeout, 60 s by default);
/// `error` fails them at once (`error_if_no_space`).
public enum OnFullPolicy: String, Sendable, Codable, CaseIterable {
    case queue
    case error
}

/// Own-the-world (the SR made the VG on raw devices) or be-nice (the SR lives
/// in an existing VG beside LVs that are not its own).
public enum SRMode: String, Sendable, Codable {
    case ownTheWorld = "own"
    case beNice = "nice"
}

/// What a volume is: made empty, a read-only snapshot, a writable clone, or
/// a read-only template image that lives elsewhere (by URI).
public enum VolumeKind: String, Sendable, Codable {
    case volume
    case snapshot
    case clone
    /// Its thin device is real and empty and never activated: clones and
    /// snapshots of it are `create_snap`s of it with the image as external origin.
    case template
}

/// Where a volume is in the transaction protocol.
enum VolumeState: String {
    case creating, ready, destroying
    /// A preallocated volume whose LV is being removed (no pool transaction
    /// is involved): recovery removes the LV, if left, and the row.
    case removing
}

/// One volume's catalog record.
public struct VolumeRecord: Equatable, Sendable {
    public var uuid: UUID
    public var key: String
    public var name: String
    public var description: String
    public var thinID: ThinDeviceID
    public var virtualSize: UInt64
    public var kind: VolumeKind
    public var readWrite: Bool
    public var sharable: Bool
    public var createdAt: Int64
    public var keys: [String: String]
    /// The volume this one was snapshotted or cloned from (its lineage parent).
    public var parentUUID: UUID?
    /// For snapshots: the volume it is a snapshot of.
    public var snapshotOf: UUID?
    var state: VolumeState
    /// Changed-block tracking is on (xapi's `cbt_enabled`); snapshots inherit it.
    public var cbtEnabled = false
    /// The volume or snapshot the current thin device was made from (a
    /// snapshot's or clone's source, the snapshot a revert went back to; nil
    /// for one made empty), and the catalog revision that made it (nil for
    /// rows older than this record). Changed-block queries prove lineage with
    /// these, which, unlike `parentUUID`, never move.
    public var dataSource: UUID? = nil
    public var dataSince: UInt64? = nil
    /// A snapshot whose data `thinvdi-data-destroy` freed: its thin device is
    /// gone, and what changed-block queries from it need stays: its thin
    /// device's creation time and the virtual blocks it mapped (xapi's
    /// `cbt_metadata` VDI).
    public var dataDestroyed = false
    var changeBase: ChangeBase? = nil
    /// The import filling this volume (boot id, pid, start time) until it is whole.
    var importOwner: String? = nil
    /// A preallocated raw volume's LV beside the pool (nil: a thin volume).
    /// Its thin id is reserved, never created in the pool.
    public var rawLV: String? = nil
    /// The process zeroing a preallocated volume's grown LV beyond its
    /// current size (boot id, pid, start time), until the size is recorded.
    var growOwner: String? = nil
    /// A template's image: its URI (resolved by a scheme script) and format.
    public var templateURI: String? = nil
    public var templateFormat: String? = nil
    /// The template whose image is this volume's external origin (inherited
    /// by its snapshots and clones; nil once hydrated).
    public var originTemplate: UUID? = nil
    /// The hidden thin device holding dm-clone's metadata while hydrating.
    var hydrateMetaID: ThinDeviceID? = nil
    /// The `thinvdi-hydrate` process hydrating this volume (boot id, pid, start time).
    var hydrateOwner: String? = nil

    public var isPreallocated: Bool { rawLV != nil }
    public var isTemplate: Bool { kind == .template }
}

/// What a data-destroyed snapshot keeps for changed-block queries.
struct ChangeBase: Equatable, Sendable {
    var creationTime: UInt32
    var mapped: [Range<UInt64>]

    /// "begin-end,begin-end" in pool blocks (end exclusive).
    var text: String { mapped.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",") }

    init(creationTime: UInt32, mapped: [Range<UInt64>]) {
        self.creationTime = creationTime
        self.mapped = mapped
    }

    init?(creationTime: Int64?, text: String?) {
        guard let creationTime, let time = UInt32(exactly: creationTime), let text else { return nil }
        var ranges: [Range<UInt64>] = []
        for pair in text.split(separator: ",") {
            let ends = pair.split(separator: "-")
            guard ends.count == 2, let low = UInt64(ends[0]), let high = UInt64(ends[1]), low <= high else { return nil }
            ranges.append(low..<high)
        }
        self.init(creationTime: time, mapped: ranges)
    }
}

/// The change in flight: recorded and committed before any pool message is
/// sent, removed in the same commit that records the result.
struct PendingTransaction: Equatable {
    var oldTransactionID: UInt64
    var newTransactionID: UInt64
    /// Pool messages in the order they are sent.
    var messages: [PoolMessage]

    init(from transactionID: UInt64, messages: [PoolMessage]) {
        oldTransactionID = transactionID
        newTransactionID = transactionID + 1
        self.messages = messages
    }

    /// A transaction that deletes a thin device cannot be undone once the
    /// delete is sent: recovery finishes it instead.
    var mustComplete: Bool { messages.contains { $0.deletedID != nil } }
}

extension UUID {
    /// The form thinsr prints, stores and accepts: lower case.
    var lowercased: String { uuidString.lowercased() }
}
