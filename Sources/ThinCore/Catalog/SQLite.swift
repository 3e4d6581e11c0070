internal import CSQLite
internal import CThinShims

/// A value bound to or read from an SQLite statement.
enum SQLValue: Equatable {
    case integer(Int64)
    case text(String)
    case null
}

/// A minimal wrapper over the system SQLite: one connection, prepared
/// statements with bound values, and explicit transactions.
final class Database {
    private var handle: OpaquePointer?
    let path: String

    /// Opens the database at `path`; only with `create` is a missing one made
    /// (a catalog that is gone must never silently become an empty one).
    init(path: String, create: Bool = false) throws(ThinError) {
        self.path = path
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0)
        guard sqlite3_open_v2(path, &handle, flags, nil) == SQLITE_OK else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            handle = nil
            throw ThinError(.backendFailure, "cannot open catalog \(path): \(message)")
        }
        sqlite3_busy_timeout(handle, 60_000)
    }

    deinit { close() }

    /// Closes the connection (the last close also checkpoints and removes the WAL).
    func close() {
        if let handle { sqlite3_close(handle) }
        handle = nil
    }

    func execute(_ sql: String) throws(ThinError) {
        var error: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &error) == SQLITE_OK else {
            let message = error.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(error)
            throw ThinError(.backendFailure, "catalog \(path): \(message)")
        }
    }

    /// Runs `sql` with `values` bound to its `?` parameters and returns the rows.
    @discardableResult
    func query(_ sql: String, _ values: [SQLValue] = []) throws(ThinError) -> [[SQLValue]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK else { throw lastError() }
        defer { sqlite3_finalize(statement) }
        for (index, value) in values.enumerated() {
            let position = Int32(index + 1)
            switch value {
            case .integer(let number): sqlite3_bind_int64(statement, position, number)
            case .text(let text): sqlite3_bind_text(statement, position, text, -1, CThinShims_sqlite_transient())
            case .null: sqlite3_bind_null(statement, position)
            }
        }
        var rows: [[SQLValue]] = []
        while true {
            switch sqlite3_step(statement) {
            case SQLITE_ROW:
                rows.append((0..<sqlite3_column_count(statement)).map { column in
                    switch sqlite3_column_type(statement, column) {
                    case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, column))
                    case SQLITE_NULL: return .null
                    default: return .text(String(cString: sqlite3_column_text(statement, column)))
                    }
                })
            case SQLITE_DONE: return rows
            default: throw lastError()
            }
        }
    }

    /// Whether a transaction is open on this connection.
    var inTransaction: Bool { handle.map { sqlite3_get_autocommit($0) == 0 } ?? false }

    /// Runs `body` in an immediate (write-locking) transaction, committing if it returns.
    func transaction<T>(_ body: () throws(ThinError) -> T) throws(ThinError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    private func lastError() -> ThinError {
        ThinError(.backendFailure, "catalog \(path): \(String(cString: sqlite3_errmsg(handle)))")
    }
}

extension [SQLValue] {
    func int(_ index: Int) -> Int64? { if case .integer(let value) = self[index] { return value }; return nil }
    func text(_ index: Int) -> String? { if case .text(let value) = self[index] { return value }; return nil }
}
