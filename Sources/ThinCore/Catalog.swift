public import FoundationEssentials

/// The SR's own record in its catalog.
public struct SRRecord: Equatable, Sendable {
    public var uuid: UUID
    public var name: String
    public var description: String
    public var mode: SRMode
    public var volumeGroup: String
    public var blockSizeBytes: UInt64
    public var transactionID: UInt64
    public var nextThinID: UInt32
    public var createdAt: Int64
    /// What writes do when the pool's data is full.
    public var onFull: OnFullPolicy = .queue
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

/// The kind of a volume (snapshots and clones arrive with the lineage work).
public enum VolumeKind: String, Sendable, Codable {
    case volume
    case snapshot
    case clone
}

/// Where a volume is in the transaction protocol.
enum VolumeState: String {
    case creating, ready, destroying
}

/// One volume's catalog record.
public struct VolumeRecord: Equatable, Sendable {
    public var uuid: UUID
    public var key: String
    public var name: String
    public var description: String
    public var thinID: UInt32
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
}

/// The change in flight: recorded and committed before any pool message is
/// sent, removed in the same commit that records the result.
struct PendingTransaction: Equatable {
    var oldTransactionID: UInt64
    var newTransactionID: UInt64
    /// Pool messages in order, e.g. `create_thin 7`, `delete 3`.
    var messages: [String]
    /// A transaction that deletes a thin id cannot be undone: recovery finishes it.
    var mustComplete: Bool
}

/// The SR's SQLite catalog on its catalog LV. The schema is the contract a
/// sysadmin can read with `sqlite3`.
final class Catalog {
    static let formatVersion: Int64 = 1
    let database: Database

    init(path: String, readOnly: Bool = false) throws(ThinError) {
        database = try Database(path: path, readOnly: readOnly)
        if !readOnly {
            try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON")
            try addMissingColumns()
        }
    }

    /// Columns added after format 1 shipped; old catalogs gain them on first writable open.
    private func addMissingColumns() throws(ThinError) {
        let columns = try database.query("PRAGMA table_info(sr)").compactMap { $0.text(1) }
        guard !columns.isEmpty, !columns.contains("on_full") else { return }
        try database.execute("ALTER TABLE sr ADD COLUMN on_full TEXT NOT NULL DEFAULT 'queue'")
    }

    static func create(path: String, record: SRRecord) throws(ThinError) -> Catalog {
        let catalog = try Catalog(path: path)
        try catalog.database.transaction { () throws(ThinError) in
            try catalog.database.execute("""
                CREATE TABLE sr (
                    id INTEGER PRIMARY KEY CHECK (id = 1), format_version INTEGER NOT NULL,
                    uuid TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL, mode TEXT NOT NULL,
                    volume_group TEXT NOT NULL, block_size INTEGER NOT NULL, transaction_id INTEGER NOT NULL,
                    next_thin_id INTEGER NOT NULL, created_at INTEGER NOT NULL,
                    on_full TEXT NOT NULL DEFAULT 'queue');
                CREATE TABLE volume (
                    uuid TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
                    description TEXT NOT NULL, thin_id INTEGER NOT NULL UNIQUE, virtual_size INTEGER NOT NULL,
                    kind TEXT NOT NULL, read_write INTEGER NOT NULL, sharable INTEGER NOT NULL,
                    created_at INTEGER NOT NULL, state TEXT NOT NULL, parent_uuid TEXT, snapshot_of TEXT,
                    pending_thin_id INTEGER UNIQUE, pending_virtual_size INTEGER);
                CREATE TABLE volume_key (
                    volume_uuid TEXT NOT NULL REFERENCES volume(uuid) ON DELETE CASCADE,
                    k TEXT NOT NULL, v TEXT NOT NULL, PRIMARY KEY (volume_uuid, k));
                CREATE TABLE pending (
                    id INTEGER PRIMARY KEY CHECK (id = 1), old_transaction_id INTEGER NOT NULL,
                    new_transaction_id INTEGER NOT NULL, messages TEXT NOT NULL, must_complete INTEGER NOT NULL);
                """)
            try catalog.database.query("""
                INSERT INTO sr VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.integer(formatVersion), .text(record.uuid.uuidString.lowercased()), .text(record.name),
                      .text(record.description), .text(record.mode.rawValue), .text(record.volumeGroup),
                      .integer(Int64(record.blockSizeBytes)), .integer(Int64(record.transactionID)),
                      .integer(Int64(record.nextThinID)), .integer(record.createdAt), .text(record.onFull.rawValue)])
        }
        return catalog
    }

    func srRecord() throws(ThinError) -> SRRecord {
        let rows = try database.query("""
            SELECT uuid, name, description, mode, volume_group, block_size, transaction_id, next_thin_id,
                   created_at, format_version, on_full FROM sr WHERE id = 1
            """)
        guard let row = rows.first, let uuidText = row.text(0), let uuid = UUID(uuidString: uuidText),
              let mode = row.text(3).flatMap(SRMode.init(rawValue:)) else {
            throw ThinError(.catalogInconsistent, "catalog \(database.path) has no valid SR record")
        }
        guard row.int(9) == Self.formatVersion else {
            throw ThinError(.catalogInconsistent,
                            "catalog format \(row.int(9) ?? 0) is not supported by this thinsr (expects \(Self.formatVersion))")
        }
        return SRRecord(uuid: uuid, name: row.text(1) ?? "", description: row.text(2) ?? "", mode: mode,
                        volumeGroup: row.text(4) ?? "", blockSizeBytes: UInt64(row.int(5) ?? 0),
                        transactionID: UInt64(row.int(6) ?? 0), nextThinID: UInt32(row.int(7) ?? 0),
                        createdAt: row.int(8) ?? 0, onFull: row.text(10).flatMap(OnFullPolicy.init(rawValue:)) ?? .queue)
    }

    static let volumeColumns = """
        uuid, key, name, description, thin_id, virtual_size, kind, read_write, sharable, created_at, state,
        parent_uuid, snapshot_of
        """

    func volumes(includingUnfinished: Bool = false) throws(ThinError) -> [VolumeRecord] {
        let filter = includingUnfinished ? "" : "WHERE state = 'ready'"
        let rows = try database.query("SELECT \(Self.volumeColumns) FROM volume \(filter) ORDER BY key")
        var keys: [String: [String: String]] = [:]
        for row in try database.query("SELECT volume_uuid, k, v FROM volume_key") {
            keys[row.text(0) ?? "", default: [:]][row.text(1) ?? ""] = row.text(2) ?? ""
        }
        return try rows.map { row throws(ThinError) in try volume(from: row, keys: keys[row.text(0) ?? ""] ?? [:]) }
    }

    /// The ready volume whose key, or else uuid, is `reference`.
    func volume(matching reference: String) throws(ThinError) -> VolumeRecord? {
        for column in ["key", "uuid"] {
            let rows = try database.query(
                "SELECT \(Self.volumeColumns) FROM volume WHERE \(column) = ? AND state = 'ready'",
                [.text(column == "uuid" ? reference.lowercased() : reference)])
            if let row = rows.first {
                let keyRows = try database.query("SELECT k, v FROM volume_key WHERE volume_uuid = ?",
                                                 [.text(row.text(0) ?? "")])
                let keys = Dictionary(keyRows.map { ($0.text(0) ?? "", $0.text(1) ?? "") }, uniquingKeysWith: { $1 })
                return try volume(from: row, keys: keys)
            }
        }
        return nil
    }

    func allKeys() throws(ThinError) -> Set<String> {
        Set(try database.query("SELECT key FROM volume").compactMap { $0.text(0) })
    }

    private func volume(from row: [SQLValue], keys: [String: String]) throws(ThinError) -> VolumeRecord {
        guard let uuid = row.text(0).flatMap(UUID.init(uuidString:)),
              let kind = row.text(6).flatMap(VolumeKind.init(rawValue:)),
              let state = row.text(10).flatMap(VolumeState.init(rawValue:)),
              let thinID = row.int(4), let size = row.int(5) else {
            throw ThinError(.catalogInconsistent, "catalog \(database.path) has a malformed volume row")
        }
        return VolumeRecord(uuid: uuid, key: row.text(1) ?? "", name: row.text(2) ?? "",
                            description: row.text(3) ?? "", thinID: UInt32(thinID), virtualSize: UInt64(size),
                            kind: kind, readWrite: row.int(7) == 1, sharable: row.int(8) == 1,
                            createdAt: row.int(9) ?? 0, keys: keys,
                            parentUUID: row.text(11).flatMap(UUID.init(uuidString:)),
                            snapshotOf: row.text(12).flatMap(UUID.init(uuidString:)), state: state)
    }

    func insert(_ volume: VolumeRecord) throws(ThinError) {
        try database.query("INSERT INTO volume (\(Self.volumeColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            .text(volume.uuid.uuidString.lowercased()), .text(volume.key), .text(volume.name),
            .text(volume.description), .integer(Int64(volume.thinID)), .integer(Int64(volume.virtualSize)),
            .text(volume.kind.rawValue), .integer(volume.readWrite ? 1 : 0), .integer(volume.sharable ? 1 : 0),
            .integer(volume.createdAt), .text(volume.state.rawValue),
            volume.parentUUID.map { .text($0.uuidString.lowercased()) } ?? .null,
            volume.snapshotOf.map { .text($0.uuidString.lowercased()) } ?? .null,
        ])
        for (key, value) in volume.keys.sorted(by: { $0.key < $1.key }) {
            try database.query("INSERT INTO volume_key VALUES (?, ?, ?)",
                               [.text(volume.uuid.uuidString.lowercased()), .text(key), .text(value)])
        }
    }

    func setState(_ state: VolumeState, volume: UUID) throws(ThinError) {
        try database.query("UPDATE volume SET state = ? WHERE uuid = ?",
                           [.text(state.rawValue), .text(volume.uuidString.lowercased())])
    }

    func deleteVolume(_ volume: UUID) throws(ThinError) {
        try database.query("DELETE FROM volume WHERE uuid = ?", [.text(volume.uuidString.lowercased())])
    }

    func pending() throws(ThinError) -> PendingTransaction? {
        guard let row = try database.query(
            "SELECT old_transaction_id, new_transaction_id, messages, must_complete FROM pending WHERE id = 1").first
        else { return nil }
        return PendingTransaction(oldTransactionID: UInt64(row.int(0) ?? 0), newTransactionID: UInt64(row.int(1) ?? 0),
                                  messages: (row.text(2) ?? "").split(separator: "\n").map(String.init),
                                  mustComplete: row.int(3) == 1)
    }

    func setPending(_ pending: PendingTransaction) throws(ThinError) {
        try database.query("INSERT INTO pending VALUES (1, ?, ?, ?, ?)", [
            .integer(Int64(pending.oldTransactionID)), .integer(Int64(pending.newTransactionID)),
            .text(pending.messages.joined(separator: "\n")), .integer(pending.mustComplete ? 1 : 0),
        ])
    }

    func clearPending() throws(ThinError) { try database.query("DELETE FROM pending") }

    func setSRLabel(name: String?, description: String?) throws(ThinError) {
        if let name { try database.query("UPDATE sr SET name = ?", [.text(name)]) }
        if let description { try database.query("UPDATE sr SET description = ?", [.text(description)]) }
    }

    func setOnFull(_ policy: OnFullPolicy) throws(ThinError) {
        try database.query("UPDATE sr SET on_full = ?", [.text(policy.rawValue)])
    }

    func setTransactionID(_ id: UInt64) throws(ThinError) {
        try database.query("UPDATE sr SET transaction_id = ?", [.integer(Int64(id))])
    }

    func setNextThinID(_ id: UInt32) throws(ThinError) {
        try database.query("UPDATE sr SET next_thin_id = ?", [.integer(Int64(id))])
    }

    /// Thin ids the catalog references, in any state, including ids a revert is switching to.
    func thinIDs() throws(ThinError) -> Set<UInt32> {
        Set(try database.query("SELECT thin_id FROM volume UNION SELECT pending_thin_id FROM volume "
                               + "WHERE pending_thin_id IS NOT NULL").compactMap { $0.int(0).map { UInt32($0) } })
    }

    /// Records the thin id and size a volume switches to when the open transaction settles.
    func setPendingSwitch(volume: UUID, thinID: UInt32, virtualSize: UInt64) throws(ThinError) {
        try database.query("UPDATE volume SET pending_thin_id = ?, pending_virtual_size = ? WHERE uuid = ?",
                           [.integer(Int64(thinID)), .integer(Int64(virtualSize)),
                            .text(volume.uuidString.lowercased())])
    }

    func setVirtualSize(_ size: UInt64, volume: UUID) throws(ThinError) {
        try database.query("UPDATE volume SET virtual_size = ? WHERE uuid = ?",
                           [.integer(Int64(size)), .text(volume.uuidString.lowercased())])
    }

    func setLabel(name: String?, description: String?, volume: UUID) throws(ThinError) {
        let id = SQLValue.text(volume.uuidString.lowercased())
        if let name { try database.query("UPDATE volume SET name = ? WHERE uuid = ?", [.text(name), id]) }
        if let description {
            try database.query("UPDATE volume SET description = ? WHERE uuid = ?", [.text(description), id])
        }
    }

    func setKey(_ key: String, value: String, volume: UUID) throws(ThinError) {
        try database.query("INSERT OR REPLACE INTO volume_key VALUES (?, ?, ?)",
                           [.text(volume.uuidString.lowercased()), .text(key), .text(value)])
    }

    func unsetKey(_ key: String, volume: UUID) throws(ThinError) {
        try database.query("DELETE FROM volume_key WHERE volume_uuid = ? AND k = ?",
                           [.text(volume.uuidString.lowercased()), .text(key)])
    }

}
