import ThinLVM

extension SRLifecycle {
    /// Destroys a detached SR: its LVs (and, if it owns them, its VG and PVs).
    /// Refuses while it holds volumes unless `force`.
    public func destroy(_ reference: String, force: Bool) async throws(ThinError) {
        let (sr, lock) = try lockedFind(reference)
        defer { lock.release() }
        let names = sr.names
        try discovery.requireOwned(sr)
        if sr.isIncomplete { return try removeStorage(sr) }
        guard !sr.attached else {
            throw ThinError(.srInUse, "SR \(names.uuidString) is attached; detach it with thinsr-detach first",
                            parameters: [reference])
        }
        if !force {
            let count = try await withCatalogReadOnly(sr) { catalog throws(ThinError) in
                try catalog.volumes(includingUnfinished: true).count
            }
            guard count == 0 else {
                throw ThinError(.srInUse, "SR \(names.uuidString) holds \(count) volume(s); destroy them first or "
                                + "use --force to destroy them with the SR", parameters: [reference])
            }
        }
        try removeStorage(sr)
    }

    /// An SR whose catalog LV is gone: damage, not an unfinished create.
    static func catalogMissing(_ sr: DiscoveredSR) -> ThinError {
        let uuid = sr.names.uuidString
        let remedy = sr.volumes[.catalogCopy] != nil
            ? "thinsr-check --repair \(uuid) rebuilds it from the catalog copy"
            : "restore the LV (vgcfgrestore \(sr.volumeGroup) brings back a removed LV from LVM's archive)"
        return ThinError(.catalogInconsistent, "SR \(uuid)'s catalog LV \(sr.names.lv(.catalog)) is missing, so its "
                         + "volumes cannot be counted or named; \(remedy), or destroy the SR and its volumes with "
                         + "thinsr-destroy --force")
    }

    /// Runs `body` on a detached SR's catalog, mounted read-only for the call.
    func withCatalogReadOnly<T>(_ sr: DiscoveredSR, _ body: (Catalog) throws(ThinError) -> T) async throws(ThinError) -> T {
        try await withScratchCopy(of: .catalog, sr) { path async throws(ThinError) in
            // What SQLite cannot read is the catalog's damage, not the host's.
            do throws(ThinError) {
                let catalog = try Catalog(path: path)
                defer { catalog.close() }
                return try body(catalog)
            } catch where error.code == .backendFailure {
                throw ThinError(.catalogInconsistent, "the catalog cannot be read: \(error.message)")
            }
        }
    }

    /// Runs `body` on a scratch copy of the database on a detached SR's
    /// catalog LV (or catalog copy LV), mounted read-only for the call. A
    /// host that crashed leaves the last commits in the write-ahead log,
    /// which SQLite cannot read on a read-only mount: the database and its
    /// log are copied to the run directory (tmpfs) and `body` gets the
    /// copy's path; opening it replays the log into it. (The read-only mount
    /// itself still replays an ext4 journal a crash left, as the kernel does.)
    func withScratchCopy<T>(of role: LVRole, _ sr: DiscoveredSR,
                            _ body: (String) async throws(ThinError) -> T) async throws(ThinError) -> T {
        let names = sr.names
        guard let volume = sr.volumes[role] else {
            if role == .catalog { throw Self.catalogMissing(sr) }
            throw ThinError(.catalogInconsistent, "SR \(names.uuidString) has no \(names.lv(role)) LV")
        }
        let wasActive = volume.active
        do { if !wasActive { try host.lvm.setActive(true, group: sr.volumeGroup, names: [volume.name]) } } catch {
            throw .backend("cannot activate \(volume.name)", error)
        }
        defer { if !wasActive { try? host.lvm.setActive(false, group: sr.volumeGroup, names: [volume.name]) } }
        try clearInspectionMounts(names)
        try host.system.mount(device: sr.mapperPath(role), at: names.inspectMount, type: "ext4", readOnly: true)
        let scratch = names.inspectCopyDirectory
        defer {
            for suffix in ["", "-wal", "-shm"] { System.removeFile("\(scratch)/catalog.db\(suffix)") }
            System.removeDirectory(scratch)
            try? host.system.unmount(names.inspectMount)
            System.removeDirectory(names.inspectMount)
            System.removeDirectory(names.runDirectory)
        }
        try System.makeDirectories(scratch, mode: 0o700)
        guard try System.copyFile("\(names.inspectMount)/catalog.db", to: "\(scratch)/catalog.db") else {
            throw ThinError(.catalogInconsistent, "the \(role == .catalog ? "catalog" : "catalog copy") LV of SR "
                            + "\(names.uuidString) holds no catalog.db")
        }
        try System.copyFile("\(names.inspectMount)/catalog.db-wal", to: "\(scratch)/catalog.db-wal")
        return try await body("\(scratch)/catalog.db")
    }
}
