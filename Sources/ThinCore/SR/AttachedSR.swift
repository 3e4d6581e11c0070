import FoundationEssentials
import ThinDeviceMapper

/// How an operation uses an attached SR: `read` relies on SQLite's WAL
/// snapshots; `write` holds the SR-wide lock for the whole run.
public enum SRAccess: Sendable {
    case read
    case write
}

/// An SR that is attached on this host: its catalog is mounted and its pool
/// assembled. It is opened once per tool call, with its catalog open once.
public final class AttachedSR {
    public let names: SRNames
    let host: Host
    let catalog: Catalog
    let pool: Pool
    private var lock: FileLock?
    /// The pool's state once `recovered()` has run, kept current by `transact`.
    private var recoveredUsage: ThinPoolUsage?

    init(names: SRNames, catalog: Catalog, lock: FileLock?, host: Host) {
        self.names = names
        self.catalog = catalog
        self.host = host
        self.pool = Pool(names: names, deviceMapper: host.deviceMapper)
        self.lock = lock
    }

    public var record: SRRecord { get throws(ThinError) { try catalog.srRecord() } }

    var transactions: PoolTransactions { PoolTransactions(catalog: catalog, pool: pool) }
    var devices: VolumeDevices { VolumeDevices(names: names, pool: pool, deviceMapper: host.deviceMapper) }
    func mapperPath(_ role: LVRole) throws(ThinError) -> String {
        names.mapperPath(role, group: try record.volumeGroup)
    }

    /// Opens the attached SR `reference` (its uuid, or its unique name) names.
    public static func open(_ reference: String, for access: SRAccess, host: Host = .live) throws(ThinError) -> AttachedSR {
        if let uuid = UUID(uuidString: reference) {
            let names = SRNames(uuid: uuid)
            guard host.system.isMounted(names.catalogMount) else { throw notAttached(reference, host: host) }
            return try open(names, for: access, host: host)
        }
        // By name: each mounted catalog is opened once, and the match is kept open.
        var named: [(names: SRNames, catalog: Catalog)] = []
        for (names, catalog, record) in mountedCatalogs(host: host) {
            if record.name == reference { named.append((names, catalog)) } else { catalog.close() }
        }
        guard named.count == 1, let hit = named.first else {
            named.forEach { $0.catalog.close() }
            if named.count > 1 {
                let uuids = named.map(\.names.uuidString).joined(separator: ", ")
                throw ThinError(.invalidArgument, "SR name \"\(reference)\" is ambiguous (\(uuids)); give the uuid")
            }
            throw notAttached(reference, host: host)
        }
        return try open(hit.names, catalog: hit.catalog, for: access, host: host)
    }

    /// Opens the attached SR with these names. A writer takes the SR lock
    /// before it opens the catalog: waiting for the lock with the catalog open
    /// would keep the holder's detach from closing the last connection (and
    /// unmounting), so a catalog opened to match a name is reused by readers only.
    static func open(_ names: SRNames, catalog: Catalog? = nil, for access: SRAccess,
                     host: Host) throws(ThinError) -> AttachedSR {
        if access == .write {
            catalog?.close()
            let lock = try FileLock(path: names.lockFile)
            return AttachedSR(names: names, catalog: try Catalog(path: names.catalogDatabase), lock: lock, host: host)
        }
        let opened: Catalog
        if let catalog { opened = catalog } else { opened = try Catalog(path: names.catalogDatabase) }
        return AttachedSR(names: names, catalog: opened, lock: nil, host: host)
    }

    /// Catalogs mounted under the run directory, open, with their SR records.
    static func mountedCatalogs(host: Host) -> [(SRNames, Catalog, SRRecord)] {
        System.directoryEntries(Paths.runRoot).compactMap { entry in
            guard let uuid = UUID(uuidString: entry) else { return nil }
            let names = SRNames(uuid: uuid)
            guard host.system.isMounted(names.catalogMount),
                  let catalog = try? Catalog(path: names.catalogDatabase) else { return nil }
            guard let record = try? catalog.srRecord() else { catalog.close(); return nil }
            return (names, catalog, record)
        }
    }

    /// Not attached here: tells a detached SR (from LVM) from a missing one.
    private static func notAttached(_ reference: String, host: Host) -> ThinError {
        guard let detached = try? Discovery(host: host).find(reference) else { return Discovery.notFound(reference) }
        return ThinError(.srNotAttached, "SR \(detached.names.uuidString) is not attached; attach it with "
                         + "thinsr-attach \(detached.names.uuidString)", parameters: [reference])
    }

    /// Closes the catalog and releases the lock, so the catalog can be unmounted.
    public func close() {
        catalog.close()
        lock?.release()
        lock = nil
    }

    /// Brings catalog, pool and devices into agreement, once per open SR:
    /// finishes device changes and the transaction a killed process left.
    /// Needs write access. Returns the pool's usage.
    @discardableResult
    func recovered() throws(ThinError) -> ThinPoolUsage {
        precondition(lock != nil, "recovery needs the SR lock")
        if let recoveredUsage { return recoveredUsage }
        if System.exists(names.devicesChangingMarker) {
            try devices.reconcile(with: try catalog.volumes())
            System.removeFile(names.devicesChangingMarker)
        }
        let usage = try transactions.recover(try pool.usage())
        recoveredUsage = usage
        return usage
    }

    /// Runs `messages` as one pool transaction (see `PoolTransactions`) from
    /// the recovered state, or from `usage` when the caller read it itself.
    func transact(_ messages: [PoolMessage], from usage: ThinPoolUsage? = nil,
                  prepare: (Catalog) throws(ThinError) -> Void,
                  sending: (() throws(ThinError) -> Void) throws(ThinError) -> Void = { try $0() }) throws(ThinError) {
        let start: ThinPoolUsage
        if let usage { start = usage } else { start = try recovered() }
        do {
            let transactionID = try transactions.run(messages, from: start, prepare: prepare, sending: sending)
            // The used blocks are as recovery read them: one operation per tool call.
            recoveredUsage?.transactionID = transactionID
        } catch {
            recoveredUsage = nil  // a failure may leave a transaction open: recover again
            throw error
        }
    }

    /// Keys of the SR's ready volumes (shell completion).
    public func volumeKeys() throws(ThinError) -> [String] { try catalog.readyKeys() }

    /// Runs `body` with the pool's metadata snapshot held; passes the metadata LV's path.
    func withMetadataSnapshot<T>(_ body: (String) async throws(ThinError) -> T) async throws(ThinError) -> T {
        let path = try mapperPath(.metadata)
        return try await pool.withMetadataSnapshot(lockFile: names.metadataSnapshotLockFile) { () throws(ThinError) in
            try await body(path)
        }
    }
}

extension AttachedSR {
    /// The uuid and name of every SR attached here, from the mounted catalogs
    /// alone (shell completion: no LVM or device-mapper call on every TAB).
    public static func attachedSummaries(host: Host = .live) -> [(uuid: String, name: String)] {
        mountedCatalogs(host: host).map { names, catalog, record in
            catalog.close()
            return (names.uuidString, record.name)
        }
    }
}
