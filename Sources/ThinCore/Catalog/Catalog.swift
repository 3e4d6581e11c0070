import FoundationEssentials
import ThinDeviceMapper

/// The SR's SQLite catalog on its catalog LV. The schema is the contract a
/// sysadmin can read with `sqlite3`; every statement thinsr runs is in the
/// files of this folder.
final class Catalog {
    static let formatVersion: Int64 = 1
    let database: Database
    /// Whether the catalog copy is attached, taking every commit (see CatalogCopy.swift).
    var copyAttached = false

    init(path: String, create: Bool = false) throws(ThinError) {
        database = try Database(path: path, create: create)
        try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON")
        try addMissingColumns()
    }

    /// What `PRAGMA integrity_check` finds wrong (nothing: an empty list).
    func integrityProblems() throws(ThinError) -> [String] {
        let rows = try database.query("PRAGMA integrity_check").compactMap { $0.text(0) }
        return rows == ["ok"] ? [] : rows
    }

    /// Closes the connection (the last close checkpoints and removes the WAL).
    func close() { database.close() }

    /// The catalog has its SR record and passes `PRAGMA quick_check`.
    func mainIsSound() -> Bool {
        guard (try? srRecord()) != nil else { return false }
        return (try? database.query("PRAGMA main.quick_check").first?.text(0)) == "ok"
    }

    /// The catalog's revision: how many commits it has taken.
    func revision() throws(ThinError) -> Int64 {
        try database.query("SELECT revision FROM sr").first?.int(0) ?? 0
    }

    /// Runs `body` in one SQLite transaction, committed if it returns; inside
    /// one already open, it is part of that. Every change to the catalog runs
    /// in one, and each advances the SR record's revision, by which a writer
    /// tells whether the catalog copy took every commit (see CatalogCopy.swift).
    @discardableResult
    func transaction<T>(_ body: () throws(ThinError) -> T) throws(ThinError) -> T {
        if database.inTransaction { return try body() }
        func commit() throws(ThinError) -> T {
            try database.transaction { () throws(ThinError) in
                let result = try body()
                try database.query("UPDATE sr SET revision = revision + 1")
                return result
            }
        }
        do {
            return try commit()
        } catch where copyAttached {
            // A failing copy (full, read-only, I/O errors) must not stop the
            // catalog: without it the revisions differ, so the next writer
            // rebuilds it, and thinsr-check reports it meanwhile.
            copy.detach()
            return try commit()
        }
    }

    /// Columns added after format 1 shipped; old catalogs gain them on first writable open.
    private func addMissingColumns() throws(ThinError) {
        let columns = try database.query("PRAGMA table_info(sr)").compactMap { $0.text(1) }
        guard !columns.isEmpty else { return }
        if !columns.contains("on_full") {
            try database.execute("ALTER TABLE sr ADD COLUMN on_full TEXT NOT NULL DEFAULT 'queue'")
        }
        if !columns.contains("revision") {
            try database.execute("ALTER TABLE sr ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")
        }
        for (column, declaration) in [("autoextend_threshold", "INTEGER NOT NULL DEFAULT 80"),
                                      ("autoextend_step", "TEXT NOT NULL DEFAULT '20%'"),
                                      ("warning_threshold", "INTEGER NOT NULL DEFAULT 75")]
        where !columns.contains(column) {
            try database.execute("ALTER TABLE sr ADD COLUMN \(column) \(declaration)")
            if column == "autoextend_threshold" { try database.execute(Self.beNiceNeverGrows) }
        }
        let volumeColumns = try database.query("PRAGMA table_info(volume)").compactMap { $0.text(1) }
        for (column, declaration) in [("cbt_enabled", "INTEGER NOT NULL DEFAULT 0"), ("data_source", "TEXT"),
                                      ("data_since", "INTEGER"), ("pending_data_source", "TEXT"),
                                      ("data_destroyed", "INTEGER NOT NULL DEFAULT 0"),
                                      ("pending_data_destroy", "INTEGER NOT NULL DEFAULT 0"),
                                      ("cbt_time", "INTEGER"), ("cbt_map", "TEXT"), ("import_owner", "TEXT"),
                                      ("raw_lv", "TEXT"), ("grow_owner", "TEXT"), ("template_uri", "TEXT"),
                                      ("template_format", "TEXT"), ("origin_template", "TEXT"),
                                      ("hydrate_meta_id", "INTEGER"), ("hydrate_owner", "TEXT")]
        where !volumeColumns.contains(column) {
            try database.execute("ALTER TABLE volume ADD COLUMN \(column) \(declaration)")
        }
    }

    static func create(path: String, record: SRRecord) throws(ThinError) -> Catalog {
        let catalog = try Catalog(path: path, create: true)
        try catalog.transaction { () throws(ThinError) in
            try catalog.database.execute(schema)
            try catalog.database.query("""
                INSERT INTO sr (id, format_version, uuid, name, description, mode, volume_group, block_size,
                                transaction_id, next_thin_id, created_at, on_full)
                VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [
                .integer(formatVersion), .text(record.uuid.lowercased), .text(record.name),
                .text(record.description), .text(record.mode.rawValue), .text(record.volumeGroup),
                .integer(Int64(record.blockSizeBytes)), .integer(Int64(record.transactionID)),
                .integer(Int64(record.nextThinID.value)), .integer(record.createdAt), .text(record.onFull.rawValue),
            ])
            try catalog.database.execute(beNiceNeverGrows)
        }
        return catalog
    }

    /// A be-nice SR takes exactly the pool it was given: its monitor policy
    /// starts off (threshold 100) until the admin sets one.
    static let beNiceNeverGrows = "UPDATE sr SET autoextend_threshold = 100 WHERE mode = '\(SRMode.beNice.rawValue)'"

    static let schema = """
        CREATE TABLE sr (
            id INTEGER PRIMARY KEY CHECK (id = 1), format_version INTEGER NOT NULL,
            uuid TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL, mode TEXT NOT NULL,
            volume_group TEXT NOT NULL, block_size INTEGER NOT NULL, transaction_id INTEGER NOT NULL,
            next_thin_id INTEGER NOT NULL, created_at INTEGER NOT NULL,
            on_full TEXT NOT NULL DEFAULT 'queue', revision INTEGER NOT NULL DEFAULT 0,
            autoextend_threshold INTEGER NOT NULL DEFAULT 80, autoextend_step TEXT NOT NULL DEFAULT '20%',
            warning_threshold INTEGER NOT NULL DEFAULT 75);
        CREATE TABLE volume (
            uuid TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
            description TEXT NOT NULL, thin_id INTEGER NOT NULL UNIQUE, virtual_size INTEGER NOT NULL,
            kind TEXT NOT NULL, read_write INTEGER NOT NULL, sharable INTEGER NOT NULL,
            created_at INTEGER NOT NULL, state TEXT NOT NULL, parent_uuid TEXT, snapshot_of TEXT,
            pending_thin_id INTEGER UNIQUE, pending_virtual_size INTEGER,
            cbt_enabled INTEGER NOT NULL DEFAULT 0, data_source TEXT, data_since INTEGER, pending_data_source TEXT,
            data_destroyed INTEGER NOT NULL DEFAULT 0, pending_data_destroy INTEGER NOT NULL DEFAULT 0,
            cbt_time INTEGER, cbt_map TEXT, import_owner TEXT, raw_lv TEXT, grow_owner TEXT,
            template_uri TEXT, template_format TEXT, origin_template TEXT, hydrate_meta_id INTEGER UNIQUE,
            hydrate_owner TEXT);
        CREATE TABLE volume_key (
            volume_uuid TEXT NOT NULL REFERENCES volume(uuid) ON DELETE CASCADE,
            k TEXT NOT NULL, v TEXT NOT NULL, PRIMARY KEY (volume_uuid, k));
        CREATE TABLE pending (
            id INTEGER PRIMARY KEY CHECK (id = 1), old_transaction_id INTEGER NOT NULL,
            new_transaction_id INTEGER NOT NULL, messages TEXT NOT NULL, must_complete INTEGER NOT NULL);
        """

    // MARK: the SR record

    func srRecord() throws(ThinError) -> SRRecord {
        // A catalog opened read-only before its first writable open lacks the
        // policy columns (added then): its record has the defaults.
        let policyColumns = (try? database.query("SELECT autoextend_threshold FROM sr LIMIT 0")) != nil
            ? ", autoextend_threshold, autoextend_step, warning_threshold" : ""
        let rows = try database.query("""
            SELECT uuid, name, description, mode, volume_group, block_size, transaction_id, next_thin_id,
                   created_at, format_version, on_full\(policyColumns) FROM sr WHERE id = 1
            """)
        guard let row = rows.first, let uuid = row.text(0).flatMap(UUID.init(uuidString:)),
              let mode = row.text(3).flatMap(SRMode.init(rawValue:)),
              let nextThinID = row.int(7).flatMap(ThinDeviceID.init(_:)) else {
            throw ThinError(.catalogInconsistent, "catalog \(database.path) has no valid SR record")
        }
        guard row.int(9) == Self.formatVersion else {
            throw ThinError(.catalogInconsistent,
                            "catalog format \(row.int(9) ?? 0) is not supported by this thinsr (expects \(Self.formatVersion))")
        }
        var record = SRRecord(uuid: uuid, name: row.text(1) ?? "", description: row.text(2) ?? "", mode: mode,
                              volumeGroup: row.text(4) ?? "", blockSizeBytes: UInt64(row.int(5) ?? 0),
                              transactionID: UInt64(row.int(6) ?? 0), nextThinID: nextThinID,
                              createdAt: row.int(8) ?? 0,
                              onFull: row.text(10).flatMap(OnFullPolicy.init(rawValue:)) ?? .queue)
        // A catalog opened read-only before its first writable open lacks these columns: defaults.
        if row.count > 13 {
            record.autoextend = AutoextendPolicy(
                thresholdPercent: row.int(11).map(Int.init) ?? 80,
                step: row.text(12).flatMap(AutoextendPolicy.Step.init(text:)) ?? .percent(20),
                warningPercent: row.int(13).map(Int.init) ?? 75)
        }
        return record
    }

    func setSRLabel(name: String?, description: String?) throws(ThinError) {
        try transaction { () throws(ThinError) in
            if let name { try database.query("UPDATE sr SET name = ?", [.text(name)]) }
            if let description { try database.query("UPDATE sr SET description = ?", [.text(description)]) }
        }
    }

    func setAutoextend(_ policy: AutoextendPolicy) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE sr SET autoextend_threshold = ?, autoextend_step = ?, warning_threshold = ?",
                               [.integer(Int64(policy.thresholdPercent)), .text(policy.step.text),
                                .integer(Int64(policy.warningPercent))])
        }
    }

    func setOnFull(_ policy: OnFullPolicy) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE sr SET on_full = ?", [.text(policy.rawValue)])
        }
    }

    func setTransactionID(_ id: UInt64) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE sr SET transaction_id = ?", [.integer(Int64(id))])
        }
    }

    func setNextThinID(_ id: ThinDeviceID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE sr SET next_thin_id = ?", [.integer(Int64(id.value))])
        }
    }
}
