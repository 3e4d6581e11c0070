import ThinDeviceMapper

/// The catalog's side of the transaction protocol (see `PoolTransactions`):
/// the open transaction's record, and the row changes that settle or undo it.
extension Catalog {
    func pending() throws(ThinError) -> PendingTransaction? {
        guard let row = try database.query(
            "SELECT old_transaction_id, new_transaction_id, messages FROM pending WHERE id = 1").first
        else { return nil }
        var messages: [PoolMessage] = []
        for line in (row.text(2) ?? "").split(separator: "\n") {
            guard let message = PoolMessage(text: String(line)), message.createdID != nil || message.deletedID != nil
            else {
                throw ThinError(.catalogInconsistent, "the open transaction in \(database.path) holds an unknown "
                                + "pool message \"\(line)\"; the SR needs checking")
            }
            messages.append(message)
        }
        var pending = PendingTransaction(from: UInt64(row.int(0) ?? 0), messages: messages)
        pending.newTransactionID = UInt64(row.int(1) ?? 0)
        return pending
    }

    /// Records the transaction: one message per line, as the kernel reads them.
    func setPending(_ pending: PendingTransaction) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("INSERT INTO pending VALUES (1, ?, ?, ?, ?)", [
                .integer(Int64(pending.oldTransactionID)), .integer(Int64(pending.newTransactionID)),
                .text(pending.messages.map(\.text).joined(separator: "\n")), .integer(pending.mustComplete ? 1 : 0),
            ])
        }
    }

    /// The pool took the transaction: rows being destroyed go (their children
    /// move up to their parent, so the lineage stays whole), rows being created
    /// become ready, pending switches take effect, the transaction id advances.
    func settle(_ pending: PendingTransaction) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("""
                UPDATE volume SET parent_uuid =
                    (SELECT gone.parent_uuid FROM volume AS gone WHERE gone.uuid = volume.parent_uuid)
                WHERE parent_uuid IN (SELECT uuid FROM volume WHERE state = 'destroying')
                """)
            try database.query("DELETE FROM volume WHERE state = 'destroying'")
            // The lineage clock is the catalog's own revision (every commit
            // advances it; a repair may set the pool's transaction id back).
            let since = "(SELECT revision FROM sr)"
            try database.query("UPDATE volume SET state = 'ready', data_since = \(since) WHERE state = 'creating'")
            try database.query("""
                UPDATE volume SET thin_id = pending_thin_id, virtual_size = pending_virtual_size,
                    data_source = pending_data_source, data_since = \(since),
                    origin_template = (SELECT source.origin_template FROM volume AS source
                                       WHERE source.uuid = volume.pending_data_source),
                    pending_thin_id = NULL, pending_virtual_size = NULL, pending_data_source = NULL
                WHERE pending_thin_id IS NOT NULL
                """)
            try database.query("UPDATE volume SET data_destroyed = 1, pending_data_destroy = 0 "
                               + "WHERE pending_data_destroy = 1")
            try setTransactionID(pending.newTransactionID)
            try database.query("DELETE FROM pending")
        }
    }

    /// The pool did not take the transaction: every row goes back to how it was.
    func rollBack() throws(ThinError) {
        let created = (try pending()?.messages ?? []).compactMap(\.createdID)
        try transaction { () throws(ThinError) in
            // A hydration's metadata device the pool never made is not there to delete later.
            for id in created {
                try database.query("UPDATE volume SET hydrate_meta_id = NULL WHERE hydrate_meta_id = ?",
                                   [.integer(Int64(id.value))])
            }
            try database.query("DELETE FROM volume WHERE state = 'creating'")
            try database.query("UPDATE volume SET state = 'ready' WHERE state = 'destroying'")
            try database.query("UPDATE volume SET pending_thin_id = NULL, pending_virtual_size = NULL, "
                               + "pending_data_source = NULL WHERE pending_thin_id IS NOT NULL")
            try database.query("UPDATE volume SET pending_data_destroy = 0 WHERE pending_data_destroy = 1")
            try database.query("DELETE FROM pending")
        }
    }

    /// Every thin id a row points at in the pool, in any state, including a
    /// pending switch's (a data-destroyed snapshot's is gone from the pool).
    func referencedThinIDs() throws(ThinError) -> Set<ThinDeviceID> {
        Set(try database.query("SELECT thin_id FROM volume WHERE data_destroyed = 0 AND raw_lv IS NULL UNION SELECT pending_thin_id "
                               + "FROM volume WHERE pending_thin_id IS NOT NULL UNION SELECT hydrate_meta_id FROM volume "
                               + "WHERE hydrate_meta_id IS NOT NULL").compactMap { $0.int(0).flatMap(ThinDeviceID.init(_:)) })
    }

    /// Every thin id a row holds, a data-destroyed snapshot's included (ids
    /// stay unique in the catalog): what a new device may not take.
    func reservedThinIDs() throws(ThinError) -> Set<ThinDeviceID> {
        Set(try database.query("SELECT thin_id FROM volume UNION SELECT pending_thin_id FROM volume "
                               + "WHERE pending_thin_id IS NOT NULL UNION SELECT hydrate_meta_id FROM volume "
                               + "WHERE hydrate_meta_id IS NOT NULL").compactMap { $0.int(0).flatMap(ThinDeviceID.init(_:)) })
    }
}
