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
            let count = try withCatalogReadOnly(sr) { catalog throws(ThinError) in
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
        ThinError(.catalogInconsistent, "SR \(sr.names.uuidString)'s catalog LV \(sr.names.lv(.catalog)) is missing, so "
                  + "its volumes cannot be counted or named; restore the LV (vgcfgrestore \(sr.volumeGroup) brings back "
                  + "a removed LV from LVM's archive), or destroy the SR and its volumes with thinsr-destroy --force")
    }

    /// Runs `body` on a detached SR's catalog, mounted read-only for the call.
    /// A host that crashed leaves the last commits in the write-ahead log,
    /// which SQLite cannot read on a read-only mount: the database and its
    /// log are copied to the run directory (tmpfs) and the copy is opened,
    /// which replays the log into it. (The read-only mount itself still
    /// replays an ext4 journal a crash left, as the kernel does.)
    func withCatalogReadOnly<T>(_ sr: DiscoveredSR, _ body: (Catalog) throws(ThinError) -> T) throws(ThinError) -> T {
        let names = sr.names
        guard let catalogLV = sr.volumes[.catalog] else { throw Self.catalogMissing(sr) }
        let wasActive = catalogLV.active
        do { if !wasActive { try host.lvm.setActive(true, group: sr.volumeGroup, names: [catalogLV.name]) } } catch {
            throw .backend("cannot activate the catalog LV", error)
        }
        defer { if !wasActive { try? host.lvm.setActive(false, group: sr.volumeGroup, names: [catalogLV.name]) } }
        try host.system.mount(device: sr.mapperPath(.catalog), at: names.inspectMount, type: "ext4", readOnly: true)
        let copy = "\(names.runDirectory)/inspect-copy"
        defer {
            for suffix in ["", "-wal", "-shm"] { System.removeFile("\(copy)/catalog.db\(suffix)") }
            System.removeDirectory(copy)
            try? host.system.unmount(names.inspectMount)
            System.removeDirectory(names.inspectMount)
            System.removeDirectory(names.runDirectory)
        }
        try System.makeDirectories(copy, mode: 0o700)
        guard try System.copyFile("\(names.inspectMount)/catalog.db", to: "\(copy)/catalog.db") else {
            throw ThinError(.catalogInconsistent, "the catalog LV of SR \(names.uuidString) holds no catalog.db")
        }
        try System.copyFile("\(names.inspectMount)/catalog.db-wal", to: "\(copy)/catalog.db-wal")
        let catalog = try Catalog(path: "\(copy)/catalog.db")
        defer { catalog.close() }
        return try body(catalog)
    }
}
