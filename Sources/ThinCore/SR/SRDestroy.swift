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

    /// Runs `body` on a detached SR's catalog, mounted read-only for the call.
    func withCatalogReadOnly<T>(_ sr: DiscoveredSR, _ body: (Catalog) throws(ThinError) -> T) throws(ThinError) -> T {
        let names = sr.names
        guard let catalogLV = sr.volumes[.catalog] else {
            throw ThinError(.catalogInconsistent, "SR \(names.uuidString) has no catalog LV")
        }
        let wasActive = catalogLV.active
        do { if !wasActive { try host.lvm.setActive(true, group: sr.volumeGroup, names: [catalogLV.name]) } } catch {
            throw .backend("cannot activate the catalog LV", error)
        }
        defer { if !wasActive { try? host.lvm.setActive(false, group: sr.volumeGroup, names: [catalogLV.name]) } }
        try host.system.mount(device: sr.mapperPath(.catalog), at: names.inspectMount, type: "ext4", readOnly: true)
        defer {
            try? host.system.unmount(names.inspectMount)
            System.removeDirectory(names.inspectMount)
            System.removeDirectory(names.runDirectory)
        }
        let catalog = try Catalog(path: "\(names.inspectMount)/catalog.db", readOnly: true)
        defer { catalog.close() }
        return try body(catalog)
    }
}
