import FoundationEssentials
import ThinTools
import ThinLVM
import ThinDeviceMapper

/// `thinsr-check` of a detached SR (see `checkDetached`), over the
/// lifecycle operations it borrows: assembling and tearing down the pool,
/// reading the catalog from a scratch copy, rebuilding it from its copy.
struct OfflineCheck {
    let lifecycle: SRLifecycle
    var host: Host { lifecycle.host }
    var discovery: Discovery { lifecycle.discovery }
}

extension OfflineCheck {
    /// Offline: `thin_check` on the metadata LV (with `repair`, `thin_repair`
    /// into the spare, which is swapped in only if it checks clean and still
    /// holds every thin id the catalog references); the pool's transaction id
    /// and thin ids against the catalog's, its write-ahead log included. What
    /// needs pool messages to repair (an open transaction, ids that disagree,
    /// leaked thin ids) is repaired by assembling the pool for the check,
    /// repairing it online and tearing it down again.
    func checkDetached(_ found: DiscoveredSR, repair: Bool, lock: FileLock) async throws(ThinError) -> CheckReport {
        // Finishing an interrupted swap's renames changes LVM: only --repair (or attach) does it.
        var sr = found.metadataPairIsNormal || !repair ? found : try lifecycle.normalizeMetadataPair(found.uuid)
        var report = CheckReport(srUUID: sr.uuid, attached: false, metadata: "clean", findings: [])
        if !sr.metadataPairIsNormal {
            report.findings.append(CheckFinding(.metadataNamesUnfinished, detail: "a metadata repair was "
                                                + "interrupted after the repaired copy became the metadata; "
                                                + "thinsr-check --repair or thinsr-attach finishes its renames",
                                                repaired: false))
        }
        try lifecycle.clearInspectionMounts(sr.names)
        let lvs = [LVRole.metadata, .spare, .catalog, .catalogCopy]
        // Only what this check activates (or makes) goes inactive again: a
        // plain check changes nothing, not even LVs that LVM's own
        // autoactivation brought up.
        var inactive = lvs.compactMap { sr.volumes[$0] }.filter { !$0.active }.map(\.name)
        do { try host.lvm.setActive(true, group: sr.volumeGroup, names: inactive) } catch {
            throw .backend("cannot activate the SR's metadata LVs", error)
        }
        defer { try? host.lvm.setActive(false, group: sr.volumeGroup, names: inactive) }
        for role in lvs { sr.volumes[role]?.active = true }  // so the reads below leave them active
        guard let read = try await readOrRebuildCatalog(&sr, repair: repair, lvs: lvs, inactive: &inactive,
                                                        into: &report) else { return report }
        guard let catalog = read.catalog else {
            if !repair { Self.adviseOnLostCatalog(sr, into: &report) }
            return report
        }
        if let behind = read.copyFinding, behind.code == .catalogBehindCopy {
            report.findings.append(behind)  // without --repair: checking a catalog that lost commits tells nothing
            return report
        }
        try await checkPool(&sr, against: catalog, copyFinding: read.copyFinding, rebuilt: read.rebuilt, repair: repair,
                            lock: lock, into: &report)
        return report
    }

    /// What the catalog (its WAL included) says the pool holds.
    typealias CatalogReading = (referenced: Set<ThinDeviceID>, record: CatalogState, pending: PendingTransaction?)

    /// Reads the catalog and checks its copy; with `repair`, a catalog that
    /// is lost, or lost commits its copy has, is rebuilt from the copy and
    /// read again. Nil when a rebuild failed (its finding says why).
    private func readOrRebuildCatalog(_ sr: inout DiscoveredSR, repair: Bool, lvs: [LVRole], inactive: inout [String],
                                      into report: inout CheckReport) async throws(ThinError)
        -> (catalog: CatalogReading?, copyFinding: CheckFinding?, rebuilt: Bool)? {
        var catalog = try await readCatalog(sr, repair: repair, into: &report)
        var copyFinding: CheckFinding?
        if let catalog { copyFinding = try await lifecycle.checkCatalogCopy(sr, catalogRevision: catalog.record.revision, repair: repair) }
        guard repair, catalog == nil || copyFinding?.code == .catalogBehindCopy else { return (catalog, copyFinding, false) }
        // The catalog is lost, or lost commits its copy has: rebuild it from the copy, then check that.
        var damage = catalog == nil ? report.findings.removeLast() : copyFinding!
        try await lifecycle.rebuildCatalog(sr, finding: &damage)
        report.findings.append(damage)
        guard damage.repaired else { return nil }
        if sr.volumes[.catalog] == nil { inactive.append(sr.names.lv(.catalog)) }  // the LV the rebuild made
        sr = try discovery.find(sr.names.uuidString)
        for role in lvs { sr.volumes[role]?.active = true }
        catalog = try await readCatalog(sr, repair: repair, into: &report)
        copyFinding = nil
        if let catalog { copyFinding = try await lifecycle.checkCatalogCopy(sr, catalogRevision: catalog.record.revision, repair: repair) }
        return (catalog, copyFinding, true)
    }

    /// Without --repair, a lost catalog's finding says what a repair would do.
    private static func adviseOnLostCatalog(_ sr: DiscoveredSR, into report: inout CheckReport) {
        guard let last = report.findings.indices.last else { return }
        let hasCopy = sr.volumes[.catalogCopy] != nil
        switch report.findings[last].code {
        case .catalogDamaged:
            report.findings[last].detail += hasCopy
                ? "; thinsr-check --repair \(sr.names.uuidString) rebuilds the catalog from its copy"
                : "; the SR has no catalog copy to rebuild it from"
        case .catalogFilesystemDamaged where hasCopy:
            report.findings[last].detail += " (where e2fsck cannot fix it, that rebuilds the catalog from its copy)"
        default: break
        }
    }

    /// The pool's metadata, transaction id and thin ids against what the
    /// catalog says; with `repair`, what needs pool messages is repaired
    /// online (and a stale copy rebuilt by the writer that opens the catalog).
    private func checkPool(_ sr: inout DiscoveredSR, against catalog: CatalogReading, copyFinding: CheckFinding?,
                           rebuilt: Bool, repair: Bool, lock: FileLock,
                           into report: inout CheckReport) async throws(ThinError) {
        let (referenced, record, pending) = catalog
        guard try await checkMetadata(&sr, repair: repair, referenced: referenced, into: &report) else {
            if let copyFinding { report.findings.append(copyFinding) }
            return
        }
        let metadata = sr.mapperPath(.metadata)
        let present = try await host.programs.thinIDs(metadata, metadataSnapshot: false)
        let poolTransaction: UInt64
        do { poolTransaction = try await host.programs.transactionID(metadataDevice: metadata) } catch {
            throw .backend("thin_dump could not read the pool's transaction id", error)
        }
        var offline = Self.transactionFindings(pending: pending, catalogTransaction: record.transactionID,
                                               poolTransaction: poolTransaction, present: present, referenced: referenced)
        // A copy more than its open transaction behind the pool (one that stopped
        // taking commits for a while) lacks volumes the pool holds: a rebuild
        // from it must not delete their thin ids as leaked.
        let explained = pending.map { [$0.oldTransactionID, $0.newTransactionID].contains(poolTransaction) }
            ?? (record.transactionID == poolTransaction)
        if rebuilt && !explained {
            offline = offline.map { finding in
                var finding = finding
                finding.detail += "; the catalog was rebuilt from a copy behind the pool (its transaction id "
                    + "\(record.transactionID), the pool's \(poolTransaction)), so thin ids it lacks may be volumes "
                    + "made since: this repair left them; copy out their data (dmsetup create with a thin table of "
                    + "that id) before the next thinsr-check --repair deletes them"
                return finding
            }
        }
        let repairable = offline.contains { $0.code != .missingThinID } && (!rebuilt || explained)
        guard repair && (repairable || copyFinding != nil) else {
            report.findings += offline.map { finding in
                var finding = finding
                if finding.code != .missingThinID && !rebuilt {
                    finding.detail += "; run thinsr-check --repair \(sr.names.uuidString)"
                }
                return finding
            }
            if let copyFinding { report.findings.append(copyFinding) }
            return
        }
        if !repairable { report.findings += offline }
        // Assembling the pool mounts the copy, and the writer that opens the catalog rebuilds it.
        if copyFinding != nil { sr = try discovery.find(sr.names.uuidString) }
        let (online, copyCurrent) = try await repairOnline(sr, lock: lock, deleteLeaked: repairable)
        if repairable { report.findings += online }
        if var copyFinding {
            copyFinding.repaired = copyCurrent
            copyFinding.detail += copyCurrent ? "; rebuilt from the catalog" : "; it could not be rebuilt"
            report.findings.append(copyFinding)
        }
    }

    /// What the offline check needs of the SR record.
    struct CatalogState {
        var transactionID: UInt64
        var revision: Int64
    }

    /// The catalog's ids, record and open transaction, read from a scratch
    /// copy. A catalog that is gone, whose filesystem e2fsck cannot fix, that
    /// will not open or fails `PRAGMA integrity_check` is reported (the last
    /// finding) and nil returned.
    private func readCatalog(_ sr: DiscoveredSR, repair: Bool, into report: inout CheckReport) async throws(ThinError)
        -> CatalogReading? {
        guard sr.volumes[.catalog] != nil else {
            report.findings.append(CheckFinding(.catalogMissing, detail: SRLifecycle.catalogMissing(sr).message,
                                                repaired: false))
            return nil
        }
        if let finding = try await checkCatalogFilesystem(sr, repair: repair) {
            report.findings.append(finding)
            guard finding.repaired else { return nil }
        }
        do {
            let (referenced, record, revision, pending, integrity) = try await lifecycle.withCatalogReadOnly(sr) { catalog throws(ThinError) in
                (try catalog.referencedThinIDs(), try catalog.srRecord(), try catalog.revision(), try catalog.pending(),
                 try catalog.integrityProblems())
            }
            guard integrity.isEmpty else {
                report.findings.append(CheckFinding(.catalogDamaged, detail: "PRAGMA integrity_check: "
                                                    + integrity.prefix(3).joined(separator: "; "), repaired: false))
                return nil
            }
            return (referenced, CatalogState(transactionID: record.transactionID, revision: revision), pending)
        } catch where error.code == .catalogInconsistent {
            report.findings.append(CheckFinding(.catalogDamaged, detail: error.message, repaired: false))
            return nil
        }
    }

    /// `thin_check` of the metadata LV; with `repair`, a damaged one is
    /// rebuilt into the spare. Returns whether the check can go on.
    private func checkMetadata(_ sr: inout DiscoveredSR, repair: Bool, referenced: Set<ThinDeviceID>,
                               into report: inout CheckReport) async throws(ThinError) -> Bool {
        let check = try await host.programs.thinCheck(sr.mapperPath(.metadata))
        guard !check.clean else { return true }
        report.metadata = "damaged"
        var finding = CheckFinding(.metadataDamaged,
                                   detail: "thin_check: " + messageLine(check.report, otherwise: "failed"), repaired: false)
        if repair {
            try await repairMetadata(sr, referenced: referenced, finding: &finding)
            if finding.repaired { report.metadata = "repaired" }
            sr = try discovery.find(sr.names.uuidString)
        } else {
            finding.detail += "; run thinsr-check --repair \(sr.names.uuidString)"
        }
        report.findings.append(finding)
        return finding.repaired
    }

    /// An open transaction, transaction ids that disagree, and thin ids only
    /// one side has, from the offline pool's metadata and the catalog.
    static func transactionFindings(pending: PendingTransaction?, catalogTransaction: UInt64, poolTransaction: UInt64,
                                    present: Set<ThinDeviceID>, referenced: Set<ThinDeviceID>) -> [CheckFinding] {
        if let pending {
            return [CheckFinding(.openTransaction, detail: "an interrupted operation left transaction "
                                 + "\(pending.oldTransactionID) -> \(pending.newTransactionID) open; the pool's "
                                 + "id is \(poolTransaction)", repaired: false)]
        }
        var findings: [CheckFinding] = []
        if catalogTransaction != poolTransaction {
            findings.append(CheckFinding(.transactionIDMismatch, detail: "the pool's transaction id is "
                                         + "\(poolTransaction), the catalog's \(catalogTransaction), and no "
                                         + "transaction is open", repaired: false))
        }
        return findings + CheckReport.compareIDs(pool: present, catalog: referenced, repairable: true)
    }

    /// What needs pool messages is repaired online: the pool assembled as
    /// attach would, without recovery, checked with repair, then torn down.
    /// Returns the findings and whether the catalog copy is attached and current.
    private func repairOnline(_ sr: DiscoveredSR, lock: FileLock, deleteLeaked: Bool = true) async throws(ThinError)
        -> (findings: [CheckFinding], copyCurrent: Bool) {
        let attached = try await lifecycle.assemble(sr, lock: lock, recover: false)
        let online: CheckReport
        let copyCurrent: Bool
        do throws(ThinError) {
            online = deleteLeaked ? try await attached.administration.check(repair: true) : CheckReport(
                srUUID: sr.uuid, attached: false, metadata: "clean", findings: [])
            copyCurrent = attached.catalog.copyAttached ? try attached.catalog.copy.isCurrent() : false
        } catch {
            try? lifecycle.tearDown(attached, sr)
            throw error
        }
        try lifecycle.tearDown(attached, sr)
        return (online.findings, copyCurrent)
    }

    /// `e2fsck -fn` of the catalog's filesystem (`-fy` with `repair`): a
    /// finding if it has errors, repaired if e2fsck fixed them.
    private func checkCatalogFilesystem(_ sr: DiscoveredSR, repair: Bool) async throws(ThinError) -> CheckFinding? {
        let result: FilesystemCheckResult
        do {
            result = try await host.programs.checkCatalogFilesystem(device: sr.mapperPath(.catalog),
                                                                    mode: repair ? .fix : .report)
        } catch {
            throw .backend("e2fsck could not run", error)
        }
        // After a crash the journal needs replaying, which -n skips (so it may
        // see what the replay would fix) and the read-only mount does.
        guard !result.clean, repair || !result.onlyJournalUnreplayed else { return nil }
        let fixed = repair && result.usable
        return CheckFinding(.catalogFilesystemDamaged, detail: "e2fsck: " + CheckReport.filesystemProblem(result.output)
                            + (fixed ? "; fixed by e2fsck -fy" : repair ? "; e2fsck could not fix it"
                               : "; run thinsr-check --repair \(sr.names.uuidString)"), repaired: fixed)
    }

    /// `thin_repair` into the zeroed spare; the copy is swapped in only if it
    /// checks clean and keeps every id the catalog references.
    private func repairMetadata(_ sr: DiscoveredSR, referenced: Set<ThinDeviceID>,
                                finding: inout CheckFinding) async throws(ThinError) {
        let metadata = sr.mapperPath(.metadata)
        let spare = sr.mapperPath(.spare)
        try host.system.zeroStart(of: spare)
        FaultInjection.point("spare-zeroed")
        do { try await host.programs.repairMetadata(input: metadata, output: spare) } catch {
            finding.detail += "; thin_repair failed: \(messageLine(error.description, otherwise: "failed")); the metadata is unchanged"
            return
        }
        FaultInjection.point("metadata-repaired")
        let recheck = try await host.programs.thinCheck(spare)
        let lost = referenced.subtracting(try await host.programs.thinIDs(spare, metadataSnapshot: false))
        if !recheck.clean {
            finding.detail += "; the repaired copy still fails thin_check, so it was not used"
        } else if !lost.isEmpty {
            finding.detail += "; the repaired copy lacks thin ids the catalog references ("
                + lost.sorted().map(\.description).joined(separator: ", ") + "), so it was not used"
        } else {
            try swapMetadataAndSpare(sr)
            finding.repaired = true
            finding.detail += "; rebuilt with thin_repair into the spare, which is now the metadata "
                + "(the damaged copy is kept as the spare)"
        }
    }

    /// Makes the spare, which holds the repaired copy, the metadata. The one
    /// commit point is a single `lvchange` giving it the next generation; the
    /// names and role tags then follow (`normalizeMetadataPair`), so a repair
    /// killed at any step is finished by the next thinsr-check or attach, and
    /// a second repair never zeroes the copy a first one made.
    private func swapMetadataAndSpare(_ sr: DiscoveredSR) throws(ThinError) {
        guard let metadata = sr.volumes[.metadata], let spare = sr.volumes[.spare] else {
            throw ThinError(.catalogInconsistent, "SR \(sr.names.uuidString) lacks its metadata or spare LV")
        }
        let next = "\(MetadataGeneration.tagPrefix)\(MetadataGeneration.of(metadata) + 1)"
        do {
            try host.lvm.setActive(false, group: sr.volumeGroup, names: [metadata.name, spare.name])
            FaultInjection.point("metadata-pair-deactivated")
            try host.lvm.retag(group: sr.volumeGroup, name: spare.name, remove: MetadataGeneration.tags(of: spare),
                               add: [next])
        } catch {
            throw .backend("making the repaired copy the metadata failed", error)
        }
        FaultInjection.point("metadata-generation-advanced")
        let normal = try lifecycle.normalizeMetadataPair(sr.uuid)
        let pair = [LVRole.metadata, .spare].compactMap { normal.volumes[$0]?.name }
        do { try host.lvm.setActive(true, group: sr.volumeGroup, names: pair) } catch {
            throw .backend("cannot activate the SR's metadata LVs", error)
        }
    }
}

extension SRLifecycle {
    /// Unmounts what a killed check or rebuild left at the inspection and
    /// rebuild mount points (only ever used under the SR lock).
    func clearInspectionMounts(_ names: SRNames) throws(ThinError) {
        for mount in [names.inspectMount, names.rebuildMount] where host.system.isMounted(mount) {
            try host.system.unmount(mount)
        }
    }

    /// Renames and retags the metadata pair until the LV named `_meta` is the
    /// metadata (the higher generation) with its role tag, and `_spare` the
    /// spare. Each step is one LVM command chosen from what LVM shows now, so
    /// a run killed anywhere is finished by the next. Returns the SR as LVM
    /// shows it at the end.
    func normalizeMetadataPair(_ uuid: UUID) throws(ThinError) -> DiscoveredSR {
        let names = SRNames(uuid: uuid)
        let (metadataName, spareName) = (names.lv(.metadata), names.lv(.spare))
        for _ in 0..<8 {
            let sr = try discovery.find(uuid.lowercased)
            guard !sr.metadataPairIsNormal, let metadata = sr.volumes[.metadata], let spare = sr.volumes[.spare] else {
                return sr
            }
            let group = sr.volumeGroup
            do {
                if metadata.name != metadataName {
                    if spare.name == metadataName {
                        try host.lvm.renameLogicalVolume(group: group, from: spare.name, to: names.swapLV)
                        FaultInjection.point("spare-renamed-aside")
                    } else {
                        try host.lvm.renameLogicalVolume(group: group, from: metadata.name, to: metadataName)
                        FaultInjection.point("metadata-renamed")
                    }
                } else if spare.name != spareName {
                    try host.lvm.renameLogicalVolume(group: group, from: spare.name, to: spareName)
                    FaultInjection.point("spare-renamed")
                } else if !metadata.tags.contains(LVRole.metadata.tag) || metadata.tags.contains(LVRole.spare.tag) {
                    try host.lvm.retag(group: group, name: metadata.name, remove: [LVRole.spare.tag],
                                       add: [LVRole.metadata.tag])
                    FaultInjection.point("metadata-retagged")
                } else {
                    try host.lvm.retag(group: group, name: spare.name, remove: [LVRole.metadata.tag],
                                       add: [LVRole.spare.tag])
                    FaultInjection.point("spare-retagged")
                }
            } catch {
                throw .backend("renaming SR \(names.uuidString)'s metadata LVs to match their roles failed", error)
            }
        }
        throw ThinError(.catalogInconsistent, "the metadata LVs of SR \(names.uuidString) do not settle on their names")
    }
}
