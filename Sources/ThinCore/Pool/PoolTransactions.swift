import ThinDeviceMapper

/// The transaction protocol tying the catalog to the pool's transaction id
/// (as moby's devmapper driver and LVM do):
/// 1. record the open transaction (new id = current + 1, its messages) and the
///    catalog rows it touches, in state `creating`/`destroying`, and commit;
/// 2. send the pool messages;
/// 3. `set_transaction_id old new`;
/// 4. settle the rows and close the transaction in one commit.
/// Recovery compares the pool's id with the open transaction's and finishes
/// or undoes it, so no thin id exists that the catalog does not know and no
/// row points at a thin id the pool lacks.
struct PoolTransactions {
    let catalog: Catalog
    let pool: Pool

    /// Runs `messages` as one transaction from the pool's state `usage` (which
    /// `recover` returned under the SR lock, so nothing has moved since);
    /// `prepare` records the rows it touches. `sending` wraps the sending of
    /// the messages alone (a snapshot suspends its origin there), so the
    /// catalog's commits and their fsyncs stay outside it. Returns the new
    /// transaction id.
    @discardableResult
    func run(_ messages: [PoolMessage], from usage: ThinPoolUsage,
             prepare: (Catalog) throws(ThinError) -> Void,
             sending: (() throws(ThinError) -> Void) throws(ThinError) -> Void = { try $0() }) throws(ThinError) -> UInt64 {
        let pending = PendingTransaction(from: usage.transactionID, messages: messages)
        try catalog.transaction { () throws(ThinError) in
            try prepare(catalog)
            try catalog.setPending(pending)
        }
        FaultInjection.point("transaction-recorded")
        var started = false
        do {
            try sending { () throws(ThinError) in
                started = true
                try send(messages)
            }
        } catch {
            // Nothing was sent (the wrapper failed first, e.g. a suspend):
            // close the transaction, or recovery would complete it later.
            if !started { try catalog.rollBack() }
            throw error
        }
        try setTransactionID(pending)
        FaultInjection.point("transaction-id-set")
        try catalog.settle(pending)
        FaultInjection.point("transaction-settled")
        return pending.newTransactionID
    }

    /// Sends the messages in order; a failure undoes what can still be undone.
    private func send(_ messages: [PoolMessage]) throws(ThinError) {
        var sent: [PoolMessage] = []
        for (index, message) in messages.enumerated() {
            do {
                try pool.send(message)
                sent.append(message)
            } catch {
                // Until a delete has been sent, everything sent can still be undone.
                if sent.contains(where: { $0.deletedID != nil }) {
                    throw ThinError(.backendFailure, "pool message \"\(message)\" failed: \(error); "
                                    + "the change will be completed by the next thinsr operation on this SR")
                }
                try undo(sent)
                throw ThinError(.backendFailure, "pool message \"\(message)\" failed: \(error)")
            }
            FaultInjection.point("message-\(index + 1)-sent")
        }
    }

    /// Finishes or undoes a transaction a killed process left open, given the
    /// pool's state; returns the pool's state after.
    func recover(_ usage: ThinPoolUsage) throws(ThinError) -> ThinPoolUsage {
        guard let pending = try catalog.pending() else {
            let record = try catalog.srRecord()
            guard record.transactionID == usage.transactionID else {
                throw ThinError(.catalogInconsistent,
                                "pool transaction id \(usage.transactionID) differs from the catalog's "
                                + "\(record.transactionID) with no open transaction; repair it with thinsr-check --repair")
            }
            return usage
        }
        switch usage.transactionID {
        case pending.newTransactionID:
            try catalog.settle(pending)
        case pending.oldTransactionID where pending.mustComplete:
            for message in pending.messages { try sendIgnoringDone(message) }
            try setTransactionID(pending)
            try catalog.settle(pending)
        case pending.oldTransactionID:
            try undo(pending.messages)
        default:
            throw ThinError(.catalogInconsistent,
                            "pool transaction id \(usage.transactionID) matches neither side of the open "
                            + "transaction (\(pending.oldTransactionID) -> \(pending.newTransactionID)); repair it "
                            + "with thinsr-check --repair")
        }
        return try pool.usage()
    }

    /// Settles an open transaction whose old and new ids both differ from
    /// the pool's (something else moved the pool's id) by what the pool
    /// holds: each message took effect or not, as its thin id shows. All of
    /// them: settle; none: roll back; some: finish the rest (a transaction
    /// with a delete must complete) or undo them (creates only). The catalog
    /// then records the pool's id. Only `thinsr-check --repair` runs this.
    func resolveByEvidence(_ pending: PendingTransaction, present: Set<ThinDeviceID>,
                           usage: ThinPoolUsage) throws(ThinError) -> String {
        let done = pending.messages.map { message in
            if let id = message.createdID { return present.contains(id) }
            if let id = message.deletedID { return !present.contains(id) }
            return true
        }
        let outcome: String
        if done.allSatisfy({ $0 }) {
            try catalog.settle(pending)
            outcome = "every message had taken effect: settled"
        } else if !done.contains(true) {
            try catalog.rollBack()
            outcome = "no message had taken effect: rolled back"
        } else if pending.mustComplete {
            for (message, taken) in zip(pending.messages, done) where !taken { try sendIgnoringDone(message) }
            try catalog.settle(pending)
            outcome = "some messages had taken effect: the rest were sent and it settled"
        } else {
            try undo(pending.messages)
            outcome = "some messages had taken effect: they were undone"
        }
        try catalog.setTransactionID(try pool.usage().transactionID)
        return outcome
    }

    /// Deletes the thin devices `sent` created, newest first, and rolls the rows back.
    private func undo(_ sent: [PoolMessage]) throws(ThinError) {
        for message in sent.reversed() {
            if let id = message.createdID { try sendIgnoringDone(.delete(id)) }
        }
        try catalog.rollBack()
    }

    private func setTransactionID(_ pending: PendingTransaction) throws(ThinError) {
        do {
            try pool.send(.setTransactionID(old: pending.oldTransactionID, new: pending.newTransactionID))
        } catch {
            throw ThinError(.backendFailure, "cannot set the pool's transaction id: \(error)")
        }
    }

    /// Re-sends a message during recovery: an id that already exists (create)
    /// or is already gone (delete) means the message took effect before.
    private func sendIgnoringDone(_ message: PoolMessage) throws(ThinError) {
        do {
            try pool.send(message)
        } catch {
            let done: DeviceMapperError.Reason = message.createdID == nil ? .noData : .alreadyExists
            guard error.reason == done else {
                throw ThinError(.backendFailure, "recovery: pool message \"\(message)\" failed: \(error)")
            }
        }
    }
}
