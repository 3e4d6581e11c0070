/// The catalog's second copy: an SQLite database on its own LV and
/// filesystem, holding every row of the catalog's tables in tables named
/// `copy_<table>`. A writer ATTACHes it and installs TEMP triggers that
/// repeat every row change there inside the same transaction, so each commit
/// reaches both files. SQLite commits the two files one after the other: a
/// writer killed in between leaves one a commit ahead, which the revisions
/// show; the next writer then rebuilds the copy from the catalog. If the
/// catalog is lost, `thinsr-check --repair` rebuilds it from the copy,
/// losing at most the commit in flight (which no pool message followed:
/// messages are sent only after their transaction's record committed).
/// The catalog's copy, reached through the open catalog (`catalog.copy`).
struct CatalogCopy {
    let catalog: Catalog
    private var database: Database { catalog.database }
}

extension Catalog {
    var copy: CatalogCopy { CatalogCopy(catalog: self) }
}

extension CatalogCopy {
    /// The tables the copy holds, parents first (the order a rebuild inserts them in).
    static let copiedTables = ["sr", "volume", "volume_key", "pending"]
    static let copySchema = "copy"

    /// Where the copy stands against the catalog.
    enum CopyState: Equatable {
        case current
        /// Behind (a commit it missed), from an older thinsr, or empty.
        case stale
        /// Ahead: the catalog lost commits the copy has (only possible if the
        /// catalog's own log was lost, since the catalog commits first).
        case ahead(catalog: Int64, copy: Int64)
        /// Not an SQLite database, or unreadable.
        case unreadable
    }

    /// ATTACHes the copy at `path` (made if absent), rebuilds it from the
    /// catalog unless it is current, and installs the triggers that keep it
    /// current. Returns whether the copy is attached. A copy is only ever
    /// rebuilt from a catalog that passes `PRAGMA quick_check`: a damaged
    /// catalog leaves its copy as it is, for the repair that rebuilds the
    /// catalog from it. Throws only when the copy is ahead: the catalog lost
    /// commits, and no writer may go on from it.
    @discardableResult
    func attach(at path: String) throws(ThinError) -> Bool {
        var state = open(at: path)
        if case .ahead(let catalogRevision, let copyRevision) = state {
            detach()
            throw ThinError(.catalogInconsistent, "the catalog is at revision \(catalogRevision) but its copy at "
                            + "\(copyRevision): the catalog lost commits; detach the SR and run thinsr-check --repair, "
                            + "which rebuilds it from the copy")
        }
        guard state == .current || catalog.mainIsSound() else {
            detach()
            return false
        }
        do throws(ThinError) {
            if state == .unreadable {
                detach()
                for suffix in ["", "-wal", "-shm"] { System.removeFile(path + suffix) }
                state = open(at: path)
                guard state != .unreadable else { throw ThinError(.backendFailure, "cannot make the catalog copy \(path)") }
            }
            if state != .current { try refresh() }
            try installTriggers()
            return true
        } catch {
            detach()
            return false
        }
    }

    /// ATTACH (making the file when there is none) and the copy's state.
    private func open(at path: String) -> CopyState {
        do throws(ThinError) {
            if !System.exists(path) { try Database(path: path, create: true).close() }
            try database.query("ATTACH DATABASE ? AS \(Self.copySchema)", [.text(path)])
            catalog.copyAttached = true
            try database.execute("PRAGMA copy.journal_mode=WAL; PRAGMA copy.synchronous=FULL")
            return try state()
        } catch {
            return .unreadable
        }
    }

    func detach() {
        guard catalog.copyAttached else { return }
        for table in Self.copiedTables {
            for event in ["insert", "update", "delete"] {
                try? database.execute("DROP TRIGGER IF EXISTS temp.copy_\(table)_\(event)")
            }
        }
        try? database.execute("DETACH DATABASE \(Self.copySchema)")
        catalog.copyAttached = false
    }

    /// The attached copy against the catalog: its revision, then its columns.
    func state() throws(ThinError) -> CopyState {
        let catalogRevision = try catalog.revision()
        let tables = try database.query("SELECT name FROM copy.sqlite_master WHERE type = 'table'").compactMap { $0.text(0) }
        guard tables.contains("copy_sr"),
              let copyRevision = try database.query("SELECT revision FROM copy.copy_sr").first?.int(0) else { return .stale }
        if copyRevision > catalogRevision { return .ahead(catalog: catalogRevision, copy: copyRevision) }
        for table in Self.copiedTables {
            let copied = try columns(of: "copy_\(table)", in: Self.copySchema).map(\.name)
            guard copied == (try columns(of: table, in: "main").map(\.name)) else { return .stale }
        }
        return copyRevision == catalogRevision ? .current : .stale
    }

    /// The copy holds the catalog's columns and revision.
    func isCurrent() throws(ThinError) -> Bool { try state() == .current }

    /// Remakes the copy's tables from the catalog's, in one transaction of the copy.
    func refresh() throws(ThinError) {
        try database.transaction { () throws(ThinError) in
            for table in Self.copiedTables {
                let columns = try columns(of: table, in: "main")
                let keys = columns.filter { $0.primaryKeyIndex > 0 }.sorted { $0.primaryKeyIndex < $1.primaryKeyIndex }
                let declarations = columns.map { "\(Self.quoted($0.name)) \($0.type)" }
                    + (keys.isEmpty ? [] : ["PRIMARY KEY (\(keys.map { Self.quoted($0.name) }.joined(separator: ", ")))"])
                let list = columns.map { Self.quoted($0.name) }.joined(separator: ", ")
                try database.execute("""
                    DROP TABLE IF EXISTS copy.copy_\(table);
                    CREATE TABLE copy.copy_\(table) (\(declarations.joined(separator: ", ")));
                    INSERT INTO copy.copy_\(table) (\(list)) SELECT \(list) FROM main.\(table);
                    """)
            }
        }
    }

    /// One TEMP trigger per table and change: the change repeated on the copy.
    /// (Trigger bodies name tables unqualified; only the copy has `copy_*`.)
    private func installTriggers() throws(ThinError) {
        for table in Self.copiedTables {
            let columns = try columns(of: table, in: "main")
            let names = columns.map { Self.quoted($0.name) }
            let keys = columns.filter { $0.primaryKeyIndex > 0 }.map { Self.quoted($0.name) }
            let matchOld = keys.map { "\($0) = OLD.\($0)" }.joined(separator: " AND ")
            let target = "copy_\(table)"
            try database.execute("""
                DROP TRIGGER IF EXISTS temp.copy_\(table)_insert;
                DROP TRIGGER IF EXISTS temp.copy_\(table)_update;
                DROP TRIGGER IF EXISTS temp.copy_\(table)_delete;
                CREATE TEMP TRIGGER copy_\(table)_insert AFTER INSERT ON main.\(table) BEGIN
                    INSERT OR REPLACE INTO \(target) (\(names.joined(separator: ", ")))
                    VALUES (\(names.map { "NEW.\($0)" }.joined(separator: ", ")));
                END;
                CREATE TEMP TRIGGER copy_\(table)_update AFTER UPDATE ON main.\(table) BEGIN
                    UPDATE \(target) SET \(names.map { "\($0) = NEW.\($0)" }.joined(separator: ", ")) WHERE \(matchOld);
                END;
                CREATE TEMP TRIGGER copy_\(table)_delete AFTER DELETE ON main.\(table) BEGIN
                    DELETE FROM \(target) WHERE \(matchOld);
                END;
                """)
        }
    }

    struct Column: Equatable {
        var name: String
        var type: String
        var primaryKeyIndex: Int64
    }

    private func columns(of table: String, in schema: String) throws(ThinError) -> [Column] {
        try database.query("PRAGMA \(schema).table_info(\(table))").map { row in
            Column(name: row.text(1) ?? "", type: row.text(2) ?? "", primaryKeyIndex: row.int(5) ?? 0)
        }
    }

    private static func quoted(_ name: String) -> String { "\"\(name)\"" }
}

/// What a copy holds, read before a catalog is rebuilt from it.
struct CatalogCopySummary: Equatable {
    var record: SRRecord
    var revision: Int64
    var volumeCount: Int
}

extension CatalogCopy {
    /// Reads and checks the copy at `path` (a detached SR's, copied to tmpfs):
    /// it must pass `PRAGMA integrity_check` and hold an SR record.
    static func inspect(at path: String) throws(ThinError) -> CatalogCopySummary {
        let scratch = try memoryCatalog(attaching: path)
        defer { scratch.close() }
        let problems = try scratch.database.query("PRAGMA copy.integrity_check").compactMap { $0.text(0) }
        guard problems == ["ok"] else {
            throw ThinError(.catalogInconsistent, "the catalog copy fails integrity_check: "
                            + problems.prefix(3).joined(separator: "; "))
        }
        try scratch.database.execute(Catalog.schema)
        try scratch.copy.copyRows(from: Self.copySchema)
        return CatalogCopySummary(record: try scratch.srRecord(), revision: try scratch.revision(),
                                  volumeCount: try scratch.volumes(includingUnfinished: true).count)
    }

    /// Writes a new catalog at `path` holding every row of the copy at
    /// `copyPath`, with the catalog's own schema and constraints.
    static func rebuild(at path: String, fromCopy copyPath: String) throws(ThinError) {
        for suffix in ["", "-wal", "-shm"] { System.removeFile(path + suffix) }
        let catalog = try Catalog(path: path, create: true)
        defer { catalog.close() }
        try catalog.database.query("ATTACH DATABASE ? AS \(copySchema)", [.text(copyPath)])
        try catalog.database.transaction { () throws(ThinError) in
            try catalog.database.execute(Catalog.schema)
            try catalog.copy.copyRows(from: copySchema)
        }
        try catalog.database.execute("DETACH DATABASE \(copySchema)")
        guard try catalog.integrityProblems().isEmpty else {
            throw ThinError(.catalogInconsistent, "the catalog rebuilt from the copy fails integrity_check")
        }
        _ = try catalog.srRecord()
    }

    /// An in-memory catalog with the copy at `path` (a scratch copy) attached.
    private static func memoryCatalog(attaching path: String) throws(ThinError) -> Catalog {
        let catalog = try Catalog(path: ":memory:", create: true)
        do { try catalog.database.query("ATTACH DATABASE ? AS \(copySchema)", [.text(path)]) } catch {
            catalog.close()
            throw error
        }
        return catalog
    }

    /// Inserts the attached copy's rows into this catalog's (empty) tables,
    /// the columns both have, parents first.
    private func copyRows(from schema: String) throws(ThinError) {
        for table in Self.copiedTables {
            let copied = Set(try columns(of: "copy_\(table)", in: schema).map(\.name))
            guard !copied.isEmpty else {
                throw ThinError(.catalogInconsistent, "the catalog copy lacks its \(table) table")
            }
            let list = try columns(of: table, in: "main").map(\.name).filter(copied.contains).map(Self.quoted)
                .joined(separator: ", ")
            try database.execute("INSERT INTO main.\(table) (\(list)) SELECT \(list) FROM \(schema).copy_\(table)")
        }
    }
}
