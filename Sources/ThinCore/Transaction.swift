import ThinDeviceMapper
#if canImport(Glibc)
import Glibc
#endif

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
extension AttachedSR {
    /// `usage` is what `recover()` returned: callers recover first, before
    /// reading the volumes the transaction is built from (a settled revert may
    /// have switched a thin id), and hold the SR lock, so nothing has moved since.
    func transact(_ messages: [PoolMessage], recovered usage: ThinPoolUsage,
                  prepare: (Catalog) throws(ThinError) -> Void) throws(ThinError) {
        let pending = PendingTransaction(oldTransactionID: usage.transactionID,
                                         newTransactionID: usage.transactionID + 1,
                                         messages: messages.map(\.text),
                                         mustComplete: messages.contains { $0.createdID == nil })
        try catalog.database.transaction { () throws(ThinError) in
            try prepare(catalog)
            try catalog.setPending(pending)
        }
        FaultInjection.point("transaction-recorded")
        var sent: [PoolMessage] = []
        for (index, message) in messages.enumerated() {
            do {
                try pool.send(message.text)
                sent.append(message)
            } catch {
                // Until a delete has been sent, everything sent can still be undone.
                if pending.mustComplete && sent.contains(where: { $0.createdID == nil }) {
                    throw ThinError(.backendFailure, "pool message \"\(message.text)\" failed: \(error); "
                                    + "the change will be completed by the next thinsr operation on this SR")
                }
                try undo(sent, pending: pending)
                throw ThinError(.backendFailure, "pool message \"\(message.text)\" failed: \(error)")
            }
            FaultInjection.point("message-\(index + 1)-sent")
        }
        try setTransactionID(pending)
        FaultInjection.point("transaction-id-set")
        try settle(pending)
        FaultInjection.point("transaction-settled")
    }

    /// Brings catalog and pool into agreement; returns the pool's usage.
    @discardableResult
    func recover() throws(ThinError) -> ThinPoolUsage {
        try reconcileVolumeDevices()
        let usage = try pool.usage()
        guard let pending = try catalog.pending() else {
            let record = try catalog.srRecord()
            guard record.transactionID == usage.transactionID else {
                throw ThinError(.catalogInconsistent,
                                "pool transaction id \(usage.transactionID) differs from the catalog's "
                                + "\(record.transactionID) with no open transaction; the SR needs checking")
            }
            return usage
        }
        switch usage.transactionID {
        case pending.newTransactionID:
            try settle(pending)
        case pending.oldTransactionID where pending.mustComplete:
            for text in pending.messages {
                guard let message = PoolMessage(text) else { continue }
                try sendIgnoringDone(message)
            }
            try setTransactionID(pending)
            try settle(pending)
        case pending.oldTransactionID:
            try undo(pending.messages.compactMap(PoolMessage.init), pending: pending)
        default:
            throw ThinError(.catalogInconsistent,
                            "pool transaction id \(usage.transactionID) matches neither side of the open "
                            + "transaction (\(pending.oldTransactionID) -> \(pending.newTransactionID))")
        }
        return try pool.usage()
    }

    /// Deletes the ids `sent` created and rolls the catalog rows back.
    private func undo(_ sent: [PoolMessage], pending: PendingTransaction) throws(ThinError) {
        for message in sent.reversed() {
            if let id = message.createdID { try sendIgnoringDone(.delete(id)) }
        }
        try catalog.database.transaction { () throws(ThinError) in
            try catalog.database.query("DELETE FROM volume WHERE state = 'creating'")
            try catalog.database.query("UPDATE volume SET state = 'ready' WHERE state = 'destroying'")
            try catalog.database.query("UPDATE volume SET pending_thin_id = NULL, pending_virtual_size = NULL "
                                       + "WHERE pending_thin_id IS NOT NULL")
            try catalog.clearPending()
        }
    }

    private func settle(_ pending: PendingTransaction) throws(ThinError) {
        try catalog.database.transaction { () throws(ThinError) in
            // The lineage stays whole: children of a destroyed node move up to its parent.
            try catalog.database.query("""
                UPDATE volume SET parent_uuid =
                    (SELECT gone.parent_uuid FROM volume AS gone WHERE gone.uuid = volume.parent_uuid)
                WHERE parent_uuid IN (SELECT uuid FROM volume WHERE state = 'destroying')
                """)
            try catalog.database.query("DELETE FROM volume WHERE state = 'destroying'")
            try catalog.database.query("UPDATE volume SET state = 'ready' WHERE state = 'creating'")
            try catalog.database.query("UPDATE volume SET thin_id = pending_thin_id, "
                                       + "virtual_size = pending_virtual_size, pending_thin_id = NULL, "
                                       + "pending_virtual_size = NULL WHERE pending_thin_id IS NOT NULL")
            try catalog.setTransactionID(pending.newTransactionID)
            try catalog.clearPending()
        }
    }

    private func setTransactionID(_ pending: PendingTransaction) throws(ThinError) {
        do {
            try pool.send("set_transaction_id \(pending.oldTransactionID) \(pending.newTransactionID)")
        } catch {
            throw ThinError(.backendFailure, "cannot set the pool's transaction id: \(error)")
        }
    }

    /// Re-sends a message during recovery: an id that already exists (create)
    /// or is already gone (delete) means the message took effect before.
    private func sendIgnoringDone(_ message: PoolMessage) throws(ThinError) {
        do {
            try pool.send(message.text)
        } catch {
            let done = message.createdID == nil ? ENODATA : EEXIST
            guard error.errno == done else {
                throw ThinError(.backendFailure, "recovery: pool message \"\(message.text)\" failed: \(error)")
            }
        }
    }
}

extension AttachedSR {
    /// Finishes device changes a killed process left half done. Only thinsr
    /// suspends our volume devices, and only while it holds the SR lock we now
    /// hold, so a suspended one was left by a process that died: resume it. A
    /// device shorter than its catalog size was being grown: grow it.
    func reconcileVolumeDevices() throws(ThinError) {
        let active = try activeVolumeDevices()
        guard !active.isEmpty else { return }
        let volumes = try catalog.volumes()
        for (uuid, info) in active {
            let device = names.volumeDevice(uuid)
            if let volume = volumes.first(where: { $0.uuid == uuid }),
               let line = try DeviceMapper.tableOrThrow(device)?.first,
               line.lengthSectors < volume.virtualSize / 512 {
                let table = ThinTable(poolDevice: pool.path, deviceID: volume.thinID)
                do {
                    try DeviceMapper.reload(name: device, table: [table.line(lengthSectors: volume.virtualSize / 512)],
                                            readOnly: info.readOnly)
                    try DeviceMapper.resume(name: device)
                } catch {
                    throw .backend("recovery: cannot grow the device of \(volume.key)", error)
                }
            } else if info.suspended {
                do { try DeviceMapper.resume(name: device) } catch {
                    throw .backend("recovery: cannot resume \(device)", error)
                }
            }
        }
    }
}

/// A test-only switch proving crash consistency. Every mutating operation
/// marks its steps with `point`; THINSR_FAULT=<step> makes the process kill
/// itself with SIGKILL there, and THINSR_FAULT_TRACE=<file> appends each step
/// reached to the file, so tests learn an operation's steps from the code.
public enum FaultInjection {
    static let target = Paths.environment("THINSR_FAULT")
    static let trace = Paths.environment("THINSR_FAULT_TRACE")

    static func point(_ name: String) {
        if let trace {
            let descriptor = open(trace, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            if descriptor >= 0 {
                var line = name + "\n"
                line.withUTF8 { bytes in _ = write(descriptor, bytes.baseAddress, bytes.count) }
                close(descriptor)
            }
        }
        if target == name { kill(getpid(), SIGKILL) }
    }
}
