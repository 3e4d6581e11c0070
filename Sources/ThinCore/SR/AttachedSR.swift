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
    /// The SR lock, held by writers and lifecycle operations.
    private var lock: FileLock?
    /// The readers lock, held shared by readers so the catalog is not unmounted under them.
    private var readersLock: FileLock?
    /// The pool's state once `recovered()` has run, kept current by `transact`.
    private var recoveredUsage: ThinPoolUsage?

    init(names: SRNames, catalog: Catalog, lock: FileLock?, readersLock: FileLock? = nil, host: Host) {
        self.names = names
        self.catalog = catalog
        self.host = host
        self.pool = Pool(names: names, deviceMapper: host.deviceMapper)
        self.lock = lock
        self.readersLock = readersLock
        self.volumeGroup = (try? catalog.srRecord().volumeGroup) ?? ""
    }

    public var record: SRRecord { get throws(ThinError) { try catalog.srRecord() } }

    var transactions: PoolTransactions { PoolTransactions(catalog: catalog, pool: pool) }
    var origins: TemplateOrigins { TemplateOrigins(names: names, deviceMapper: host.deviceMapper) }
    var devices: VolumeDevices {
        VolumeDevices(names: names, pool: pool, deviceMapper: host.deviceMapper, volumeGroup: volumeGroup)
    }
    /// The SR's VG, read once at open (it never changes).
    let volumeGroup: String
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
        var named: [MountedCatalog] = []
        for mounted in MountedCatalog.all(host: host) {
            if mounted.record.name == reference { named.append(mounted) } else { mounted.close() }
        }
        guard named.count == 1, let hit = named.first else {
            named.forEach { $0.close() }
            if named.count > 1 {
                let uuids = named.map(\.names.uuidString).joined(separator: ", ")
                throw ThinError(.invalidArgument, "SR name \"\(reference)\" is ambiguous (\(uuids)); give the uuid")
            }
            throw notAttached(reference, host: host)
        }
        guard access == .read else {
            hit.close()
            return try open(hit.names, for: access, host: host)
        }
        return try reader(AttachedSR(names: hit.names, catalog: hit.catalog, lock: nil, readersLock: hit.readersLock,
                                     host: host))
    }

    /// Opens an attached SR for writing only if its lock is free now (nil when
    /// another process holds it): for a monitor that must never queue
    /// behind a writer.
    public static func openForWritingIfFree(_ uuid: String, host: Host = .live) throws(ThinError) -> AttachedSR? {
        guard let parsed = UUID(uuidString: uuid) else { throw Discovery.notFound(uuid) }
        let names = SRNames(uuid: parsed)
        guard let lock = try FileLock.attempt(path: names.lockFile, mode: .exclusive) else { return nil }
        return try open(names, for: .write, lock: lock, host: host)
    }

    /// Opens the attached SR with these names. A writer takes the SR lock
    /// (or uses `lock`, which a lifecycle operation holds) before it opens the
    /// catalog; a reader holds the readers lock while the catalog is open.
    static func open(_ names: SRNames, for access: SRAccess, lock: FileLock? = nil,
                     host: Host) throws(ThinError) -> AttachedSR {
        if access == .write || lock != nil {
            let held: FileLock
            if let lock { held = lock } else { held = try FileLock(path: names.lockFile) }
            guard host.system.isMounted(names.catalogMount) else { throw notAttached(names.uuidString, host: host) }
            let catalog = try Catalog(path: names.catalogDatabase)
            // Without its copy (an SR made before copies, or one whose copy
            // failed) the SR still works; thinsr-check reports it. A copy
            // ahead of the catalog stops writers: the catalog lost commits.
            if host.system.isMounted(names.catalogCopyMount) {
                do { try catalog.copy.attach(at: names.catalogCopyDatabase) } catch {
                    catalog.close()
                    throw error
                }
            }
            return AttachedSR(names: names, catalog: catalog, lock: held, host: host)
        }
        let readersLock = try FileLock(path: names.readersLockFile, mode: .shared)
        // A detach may have finished while this reader waited.
        guard host.system.isMounted(names.catalogMount) else { throw notAttached(names.uuidString, host: host) }
        let catalog = try Catalog(path: names.catalogDatabase)
        return try reader(AttachedSR(names: names, catalog: catalog, lock: nil, readersLock: readersLock, host: host))
    }

    /// A reader that finds what a killed writer left (a device change or an
    /// open transaction) finishes it first under the SR lock, unless a live
    /// writer holds that lock: reads never show a half state, and a device a
    /// dead process left suspended is resumed by the next command of any kind.
    private static func reader(_ sr: AttachedSR) throws(ThinError) -> AttachedSR {
        guard System.exists(sr.names.devicesChangingMarker) || System.exists(sr.names.poolGrowingMarker)
                || (try? sr.catalog.pending()) != nil,
              let lock = try? FileLock.attempt(path: sr.names.lockFile, mode: .exclusive) else { return sr }
        sr.lock = lock
        defer {
            lock.release()
            sr.lock = nil
        }
        // A recovery that fails leaves the reader with the catalog as committed;
        // the next writer reports the failure.
        _ = try? sr.recovered()
        return sr
    }

    /// Not attached here: tells a detached SR (from LVM) from a missing one.
    private static func notAttached(_ reference: String, host: Host) -> ThinError {
        guard let detached = try? Discovery(host: host).find(reference) else { return Discovery.notFound(reference) }
        return ThinError(.srNotAttached, "SR \(detached.names.uuidString) is not attached; attach it with "
                         + "thinsr-attach \(detached.names.uuidString)", parameters: [reference])
    }

    /// Closes the catalog and releases the locks, so the catalog can be unmounted.
    public func close() {
        catalog.close()
        readersLock?.release()
        readersLock = nil
        lock?.release()
        lock = nil
    }

    /// Hands the SR lock to the caller (a lifecycle operation that goes on
    /// after closing the catalog) and closes the rest.
    func closeKeepingLock() -> FileLock? {
        let held = lock
        lock = nil
        close()
        return held
    }

    /// The proof that this open SR was recovered, which changing devices
    /// needs (recovering first if it was not).
    func devicesRecovered() throws(ThinError) -> DevicesRecovered {
        try recovered()
        return DevicesRecovered(marker: names.devicesChangingMarker)
    }

    /// Brings catalog, pool and devices into agreement, once per open SR:
    /// finishes device changes and the transaction a killed process left.
    /// Needs write access. Returns the pool's usage.
    @discardableResult
    func recovered() throws(ThinError) -> ThinPoolUsage {
        precondition(lock != nil, "recovery needs the SR lock")
        if let recoveredUsage { return recoveredUsage }
        if System.exists(names.poolGrowingMarker) {
            try administration.finishGrowingPool()
            System.removeFile(names.poolGrowingMarker)
        }
        if System.exists(names.devicesChangingMarker) {
            try devices.reconcile(with: try catalog.volumes())
            System.removeFile(names.devicesChangingMarker)
        }
        let usage = try transactions.recover(try pool.usage())
        recoveredUsage = usage
        try preallocated.finishRemovingPreallocated()
        try preallocated.clearAbandonedGrowths()
        try removeAbandonedImports()
        try stopAbandonedHydrations()
        try mirrors.endAbandoned()
        return recoveredUsage ?? usage
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
        MountedCatalog.all(host: host).map { mounted in
            mounted.close()
            return (mounted.names.uuidString, mounted.record.name)
        }
    }
}

/// Handed out only by `AttachedSR.devicesRecovered()`: what a device change
/// must show, so that no path changes devices (and takes the
/// devices-changing marker away) before a killed change is finished. The
/// marker is set and cleared here alone.
struct DevicesRecovered {
    private let marker: String

    fileprivate init(marker: String) { self.marker = marker }

    /// Runs `body`, which suspends a device or changes a table, with the
    /// marker set that makes the next operation reconcile the devices if this
    /// process dies before the change is whole. A `body` that throws leaves
    /// the marker: what it left half done is reconciled next time.
    func changing<T>(_ body: () throws(ThinError) -> T) throws(ThinError) -> T {
        try System.touch(marker)
        let result = try body()
        System.removeFile(marker)
        return result
    }
}
