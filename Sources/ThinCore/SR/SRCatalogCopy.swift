import FoundationEssentials
import ThinLVM
import ThinTools

/// `thinsr-check`'s side of the catalog copy (see CatalogCopy.swift): a lost
/// catalog rebuilt from the copy, and a copy that is missing, damaged or
/// behind reported and made anew from the catalog.
extension SRLifecycle {
    /// Rebuilds a detached SR's lost catalog from its copy: the LV made
    /// again if it is gone (with the tags the copy's SR record gives), its
    /// filesystem made anew unless it mounts, and a new catalog.db written
    /// beside the old one and renamed over it. Each step can be killed: the
    /// next check finds the catalog lost again and starts over. The thin ids
    /// are then reconciled with the pool, as after any crash.
    func rebuildCatalog(_ sr: DiscoveredSR, finding: inout CheckFinding) async throws(ThinError) {
        guard sr.volumes[.catalogCopy] != nil else {
            finding.detail += "; the SR has no catalog copy to rebuild it from"
            return
        }
        let summary: CatalogCopySummary
        do {
            summary = try await withScratchCopy(of: .catalogCopy, sr) { copy async throws(ThinError) in
                let summary = try CatalogCopy.inspect(at: copy)
                guard summary.record.uuid == sr.uuid else {
                    throw ThinError(.catalogInconsistent, "the catalog copy belongs to SR \(summary.record.uuid.lowercased)")
                }
                try await writeCatalog(sr, from: copy, record: summary.record, size: sr.volumes[.catalogCopy]?.sizeBytes)
                return summary
            }
        } catch where error.code == .catalogInconsistent || error.code == .backendFailure {
            finding.detail += "; the catalog copy cannot be used either (\(error.message))"
            return
        }
        finding.repaired = true
        finding.detail += "; rebuilt from the catalog copy (\(summary.volumeCount) volume(s), revision \(summary.revision))"
    }

    /// The rebuild's writes: LV, filesystem, then the database renamed into place.
    private func writeCatalog(_ sr: DiscoveredSR, from copy: String, record: SRRecord,
                              size: UInt64?) async throws(ThinError) {
        let names = sr.names
        if sr.volumes[.catalog] == nil {
            var tags = [names.srTag, LVRole.catalog.tag, SRNames.modeTagPrefix + record.mode.rawValue]
            if !record.name.isEmpty { tags.append(SRNames.nameTagPrefix + TagText.encode(record.name)) }
            do {
                try host.lvm.createLinearVolume(group: sr.volumeGroup, name: names.lv(.catalog),
                                                sizeBytes: size ?? StoragePlan.catalogBytes, tags: tags)
            } catch {
                throw .backend("lvcreate of the SR's catalog volume failed", error)
            }
            FaultInjection.point("catalog-volume-recreated")
        }
        let device = sr.mapperPath(.catalog)
        var formatted = false
        let check = try? await host.programs.checkCatalogFilesystem(device: device, mode: .report)
        if sr.volumes[.catalog] == nil || !(check?.clean ?? false) {
            try await formatCatalog(device)
            formatted = true
        }
        try clearInspectionMounts(names)
        do {
            try host.system.mount(device: device, at: names.rebuildMount, type: "ext4", readOnly: false)
        } catch where !formatted {
            try await formatCatalog(device)
            try host.system.mount(device: device, at: names.rebuildMount, type: "ext4", readOnly: false)
        }
        defer {
            try? host.system.unmount(names.rebuildMount)
            System.removeDirectory(names.rebuildMount)
        }
        // The old database goes aside first, then its log: a kill between leaves
        // no catalog.db (lost again: the next check rebuilds it), never an old
        // one without its log.
        let database = "\(names.rebuildMount)/catalog.db"
        let aside = "\(names.rebuildMount)/catalog.db.lost"
        if System.exists(database) {
            try System.renameDurably(database, to: aside, in: names.rebuildMount)
            FaultInjection.point("catalog-database-set-aside")
        }
        for suffix in ["-wal", "-shm"] { System.removeFile(database + suffix) }
        System.removeFile(aside)
        let rebuilt = "\(names.rebuildMount)/catalog.db.rebuilt"
        try CatalogCopy.rebuild(at: rebuilt, fromCopy: copy)
        FaultInjection.point("catalog-database-written")
        try System.renameDurably(rebuilt, to: database, in: names.rebuildMount)
        FaultInjection.point("catalog-rebuilt")
    }

    private func formatCatalog(_ device: String) async throws(ThinError) {
        try await formatCatalogFilesystem(device, "catalog volume")
        FaultInjection.point("catalog-reformatted")
    }

    /// A detached SR's copy: missing (`--repair` makes its LV), with a
    /// damaged filesystem (`--repair` makes it anew), unreadable, or not at
    /// the catalog's revision. The caller then assembles the SR, whose writer
    /// rebuilds the copy's content, and marks the finding repaired.
    func checkCatalogCopy(_ sr: DiscoveredSR, catalogRevision: Int64,
                          repair: Bool) async throws(ThinError) -> CheckFinding? {
        let names = sr.names
        guard let copy = sr.volumes[.catalogCopy] else {
            var finding = CheckFinding(.catalogCopyMissing, detail: "the SR keeps no second copy of its "
                                       + "catalog (it was made before thinsr kept one)", repaired: false)
            guard repair else {
                finding.detail += "; thinsr-check --repair \(names.uuidString) adds one"
                return finding
            }
            do throws(ThinError) {
                let size = sr.volumes[.catalog]?.sizeBytes ?? StoragePlan.catalogBytes
                try await createCatalogCopyVolume(group: sr.volumeGroup, names: names, sizeBytes: size)
                finding.detail += "; made its LV \(names.lv(.catalogCopy))"
            } catch {
                finding.detail += "; could not make its LV (\(error.message))"
            }
            return finding
        }
        let device = sr.mapperPath(.catalogCopy)
        let check = try? await host.programs.checkCatalogFilesystem(device: device, mode: .report)
        // A crash leaves the journal to replay, which -n skips; the mount replays it.
        if !(check?.clean ?? false) && !(check?.onlyJournalUnreplayed ?? false) {
            var finding = CheckFinding(.catalogCopyDamaged, detail: "e2fsck of \(copy.name): "
                                       + CheckReport.filesystemProblem(check?.output ?? "could not run"), repaired: false)
            guard repair else {
                finding.detail += "; thinsr-check --repair \(names.uuidString) rebuilds it from the catalog"
                return finding
            }
            do { try await formatCatalogFilesystem(device, "catalog copy's volume") } catch {
                finding.detail += "; \(messageLine(error.message, otherwise: "failed"))"
            }
            return finding
        }
        let problem: String?
        do {
            let summary = try await withScratchCopy(of: .catalogCopy, sr) { path async throws(ThinError) in
                try CatalogCopy.inspect(at: path)
            }
            if summary.record.uuid == sr.uuid && summary.revision > catalogRevision {
                return CheckFinding(.catalogBehindCopy, detail: "the catalog is at revision "
                                    + "\(catalogRevision) but its copy at \(summary.revision): the catalog lost commits "
                                    + "(its log, or an older image of its LV)" + (repair ? ""
                                    : "; thinsr-check --repair \(names.uuidString) rebuilds it from the copy"),
                                    repaired: false)
            }
            problem = summary.record.uuid != sr.uuid ? "it belongs to SR \(summary.record.uuid.lowercased)"
                : summary.revision != catalogRevision ? "it is at revision \(summary.revision), the catalog at \(catalogRevision)"
                : nil
        } catch where error.code == .catalogInconsistent || error.code == .backendFailure {
            problem = error.message
        }
        guard let problem else { return nil }
        return CheckFinding(.catalogCopyStale, detail: "the catalog copy does not match the catalog: "
                            + problem + (repair ? "" : "; thinsr-check --repair \(names.uuidString) rebuilds it"),
                            repaired: false)
    }

    /// lvcreate and mkfs of the catalog copy's LV (left active).
    func createCatalogCopyVolume(group: String, names: SRNames, sizeBytes: UInt64) async throws(ThinError) {
        do {
            try host.lvm.createLinearVolume(group: group, name: names.lv(.catalogCopy), sizeBytes: sizeBytes,
                                            tags: [names.srTag, LVRole.catalogCopy.tag])
        } catch {
            throw .backend("lvcreate of the catalog copy's volume failed", error)
        }
        try await formatCatalogFilesystem(names.mapperPath(.catalogCopy, group: group), "catalog copy's volume")
    }

    /// An attached SR's copy: its LV, whether the writer has it attached,
    /// and `PRAGMA integrity_check` of it. `repair` makes what is missing or
    /// damaged anew and rebuilds its content from the catalog.
    func checkCatalogCopy(_ attached: AttachedSR, _ sr: DiscoveredSR, repair: Bool) async throws(ThinError) -> [CheckFinding] {
        let names = sr.names
        let catalog = attached.catalog
        // A catalog that fails its own check (reported by it) is never copied over its copy.
        guard catalog.mainIsSound() else { return [] }
        var finding: CheckFinding
        if sr.volumes[.catalogCopy] == nil {
            finding = CheckFinding(.catalogCopyMissing, detail: "the SR keeps no second copy of its catalog "
                                   + "(it was made before thinsr kept one)", repaired: false)
        } else if !catalog.copyAttached {
            finding = CheckFinding(.catalogCopyDamaged, detail: "the catalog copy on "
                                   + "\(names.lv(.catalogCopy)) could not be mounted or opened", repaired: false)
        } else {
            let problems = try catalog.database.query("PRAGMA copy.integrity_check").compactMap { $0.text(0) }
            guard problems != ["ok"] else { return [] }
            finding = CheckFinding(.catalogCopyDamaged, detail: "PRAGMA integrity_check of the catalog copy: "
                                   + problems.prefix(3).joined(separator: "; "), repaired: false)
        }
        guard repair else {
            finding.detail += "; thinsr-check --repair \(names.uuidString) rebuilds it"
            return [finding]
        }
        catalog.copy.detach()
        try unmountCatalogCopy(names)
        let device = names.mapperPath(.catalogCopy, group: sr.volumeGroup)
        do throws(ThinError) {
            if sr.volumes[.catalogCopy] == nil {
                try await createCatalogCopyVolume(group: sr.volumeGroup, names: names,
                                                  sizeBytes: sr.volumes[.catalog]?.sizeBytes ?? StoragePlan.catalogBytes)
            } else {
                try await formatCatalogFilesystem(device, "catalog copy's volume")
            }
            var undo = UndoStack()
            try mountCatalogCopy(device, names: names, undo: &undo)
            undo.discard()
        } catch {
            finding.detail += "; could not make it anew (\(error.message))"
            return [finding]
        }
        finding.repaired = try catalog.copy.attach(at: names.catalogCopyDatabase)
        finding.detail += "; made anew and rebuilt from the catalog"
        return [finding]
    }
}
