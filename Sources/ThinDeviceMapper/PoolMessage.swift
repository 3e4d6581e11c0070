/// The messages a `thin-pool` target accepts that thinsr sends (kernel
/// thin-provisioning.rst, "Pool messages").
public enum PoolMessage: Hashable, Sendable, CustomStringConvertible {
    case createThin(ThinDeviceID)
    case createSnapshot(ThinDeviceID, origin: ThinDeviceID)
    case delete(ThinDeviceID)
    case setTransactionID(old: UInt64, new: UInt64)
    case reserveMetadataSnapshot
    case releaseMetadataSnapshot

    /// The message as the kernel reads it.
    public var text: String {
        switch self {
        case .createThin(let id): return "create_thin \(id)"
        case .createSnapshot(let id, let origin): return "create_snap \(id) \(origin)"
        case .delete(let id): return "delete \(id)"
        case .setTransactionID(let old, let new): return "set_transaction_id \(old) \(new)"
        case .reserveMetadataSnapshot: return "reserve_metadata_snap"
        case .releaseMetadataSnapshot: return "release_metadata_snap"
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
