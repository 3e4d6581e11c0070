public import FoundationEssentials
import ThinDeviceMapper
import ThinLVM
import ThinTools

/// One problem `thinsr-check` found, and whether `--repair` fixed it.
public struct CheckFinding: Sendable, Equatable {
    /// A stable name: `open-transaction`, `leaked-thin-id`, ...
    public var problem: String
    public var detail: String
    public var repaired: Bool
}

/// What `thinsr-check` found on one SR.
public struct CheckReport: Sendable {
    public enum Outcome: String, Sendable { case clean, repaired, damaged }

    public var srUUID: UUID
    public var attached: Bool
    /// `clean`, `damaged` or `repaired` (thin_check's verdict on the pool metadata).
    public var metadata: String
    public var findings: [CheckFinding]

    public var outcome: Outcome {
        if findings.isEmpty { return .clean }
        return findings.allSatisfy(\.repaired) ? .repaired : .damaged
    }
}

/// Checks an SR's pool metadata and its catalog against each other, and with
/// `repair` does what is safe: finish or undo an open transaction, delete thin
/// ids nothing references, rebuild metadata that fails `thin_check` into the
/// spare LV. Nothing the catalog references is ever deleted.
public enum SRCheck {
    public static func run(_ reference: String, repair: Bool) async throws(ThinError) -> CheckReport {
        try System.requireRoot("thinsr-check")
        let sr = try Discovery.find(reference)
        try sr.requireOwned()
        guard !sr.isIncomplete else {
            return CheckReport(srUUID: sr.uuid, attached: false, metadata: "-", findings: [
                CheckFinding(problem: "incomplete-sr", detail: "thinsr-create did not finish; run it again with "
                             + "--uuid \(sr.names.uuidString) or remove the SR with thinsr-destroy", repaired: false),
            ])
        }
        if sr.attached {
            let attached = try AttachedSR.open(sr.names.uuidString, exclusive: true)
            defer { attached.close() }
            return try await attached.check(repair: repair)
        }
        return try await checkDetached(sr, repair: repair)
    }

    // MARK: detached

    /// Offline: `thin_check` on the metadata LV; with `repair`, `thin_repair`
    /// into the spare, which is swapped in only if it checks clean and still
    /// holds every thin id the catalog references.
    static func checkDetached(_ sr: DiscoveredSR, repair: Bool) async throws(ThinError) -> CheckReport {
        let names = sr.names
        var report = CheckReport(srUUID: sr.uuid, attached: false, metadata: "clean", findings: [])
        let roles = ["meta", "spare", "catalog"]
        let inactive = roles.compactMap { sr.volumes[$0] }.filter { !$0.active }.map(\.name)
        do { try LVM.shared.setActive(true, group: sr.volumeGroup, names: inactive) } catch {
            throw .backend("cannot activate the SR's metadata LVs", error)
        }
        defer { try? LVM.shared.setActive(false, group: sr.volumeGroup, names: inactive) }
        let metadataPath = SRLifecycle.mapperPath(sr.volumeGroup, names.metadataLV)
        let spare = SRLifecycle.mapperPath(sr.volumeGroup, names.spareLV)
        let referenced = try SRLifecycle.withCatalogReadOnly(sr) { catalog throws(ThinError) in
            try catalog.referencedThinIDs()
        }
        let check = try await thinCheck(metadataPath)
        var metadataForIDs = metadataPath
        if !check.clean {
            report.metadata = "damaged"
            var finding = CheckFinding(problem: "metadata-damaged",
                                       detail: "thin_check: " + firstLine(check.report), repaired: false)
            if repair {
                try DirectIO.zero(device: spare)
                do { try await ThinTools.repair(input: metadataPath, output: spare) } catch {
                    finding.detail += "; thin_repair failed: \(firstLine(error.description)); the metadata is unchanged"
                    report.findings.append(finding)
                    return report
                }
                let recheck = try await thinCheck(spare)
                let kept = try await thinIDs(spare, metadataSnapshot: false)
                let lost = referenced.subtracting(kept)
                if !recheck.clean {
                    finding.detail += "; the repaired copy still fails thin_check, so it was not used"
                } else if !lost.isEmpty {
                    finding.detail += "; the repaired copy lacks thin ids the catalog references ("
                        + lost.sorted().map(String.init).joined(separator: ", ") + "), so it was not used"
                } else {
                    try swapMetadataAndSpare(sr)
                    finding.repaired = true
                    finding.detail += "; rebuilt with thin_repair into the spare, which is now the metadata "
                        + "(the damaged copy is kept as the spare)"
                    report.metadata = "repaired"
                    metadataForIDs = metadataPath
                }
            } else {
                finding.detail += "; run thinsr-check --repair \(names.uuidString)"
            }
            report.findings.append(finding)
            guard finding.repaired else { return report }
        }
        let present = try await thinIDs(metadataForIDs, metadataSnapshot: false)
        report.findings += compareIDs(pool: present, catalog: referenced, repairable: false)
        return report
    }

    /// Swaps the metadata and spare LVs by name and role tag, so the repaired
    /// copy becomes the metadata and the damaged one the spare.
    static func swapMetadataAndSpare(_ sr: DiscoveredSR) throws(ThinError) {
        let names = sr.names
        let swap = "thinsr_\(Naming.hex(names.uuid))_swap"
        let group = sr.volumeGroup
        do {
            try LVM.shared.setActive(false, group: group, names: [names.metadataLV, names.spareLV])
            try LVM.shared.renameLogicalVolume(group: group, from: names.metadataLV, to: swap)
            try LVM.shared.renameLogicalVolume(group: group, from: names.spareLV, to: names.metadataLV)
            try LVM.shared.retag(group: group, name: names.metadataLV, remove: [SRNames.roleTag("spare")],
                                 add: [SRNames.roleTag("meta")])
            try LVM.shared.renameLogicalVolume(group: group, from: swap, to: names.spareLV)
            try LVM.shared.retag(group: group, name: names.spareLV, remove: [SRNames.roleTag("meta")],
                                 add: [SRNames.roleTag("spare")])
            try LVM.shared.setActive(true, group: group, names: [names.metadataLV, names.spareLV])
        } catch {
            throw .backend("swapping the repaired metadata in failed", error)
        }
    }

    static func thinCheck(_ device: String, metadataSnapshot: Bool = false) async throws(ThinError) -> ThinTools.CheckResult {
        do { return try await ThinTools.check(metadataDevice: device, metadataSnapshot: metadataSnapshot) } catch {
            throw .backend("thin_check could not run", error)
        }
    }

    static func thinIDs(_ device: String, metadataSnapshot: Bool) async throws(ThinError) -> Set<UInt32> {
        do {
            return Set(try await ThinTools.list(metadataDevice: device, metadataSnapshot: metadataSnapshot)
                .map(\.deviceID))
        } catch {
            throw .backend("thin_ls failed", error)
        }
    }

    /// Leaked ids (in the pool, not the catalog) and missing ones (the reverse).
    static func compareIDs(pool: Set<UInt32>, catalog: Set<UInt32>, repairable: Bool) -> [CheckFinding] {
        var findings: [CheckFinding] = []
        for id in pool.subtracting(catalog).sorted() {
            findings.append(CheckFinding(problem: "leaked-thin-id", detail: "thin id \(id) is in the pool but no "
                                         + "volume in the catalog uses it" + (repairable ? "" : "; attach the SR "
                                         + "and run thinsr-check --repair to delete it"), repaired: false))
        }
        for id in catalog.subtracting(pool).sorted() {
            findings.append(CheckFinding(problem: "missing-thin-id", detail: "the catalog references thin id \(id), "
                                         + "which the pool lacks; that volume's data is lost", repaired: false))
        }
        return findings
    }

    static func firstLine(_ text: String) -> String {
        String(text.split(whereSeparator: \.isNewline).first ?? "failed")
    }
}

extension SRLifecycle {
    /// Runs `body` on a detached SR's catalog, mounted read-only for the call.
    static func withCatalogReadOnly<T>(_ sr: DiscoveredSR,
                                       _ body: (Catalog) throws(ThinError) -> T) throws(ThinError) -> T {
        let names = sr.names
        guard let catalogLV = sr.volumes["catalog"] else {
            throw ThinError(.catalogInconsistent, "SR \(names.uuidString) has no catalog LV")
        }
        let mountPoint = "\(names.runDirectory)/inspect"
        let wasActive = catalogLV.active
        do { if !wasActive { try LVM.shared.setActive(true, group: sr.volumeGroup, names: [catalogLV.name]) } } catch {
            throw .backend("cannot activate the catalog LV", error)
        }
        defer {
            if !wasActive { try? LVM.shared.setActive(false, group: sr.volumeGroup, names: [catalogLV.name]) }
        }
        try Mounts.mount(device: mapperPath(sr.volumeGroup, catalogLV.name), at: mountPoint, type: "ext4",
                         readOnly: true)
        defer {
            try? Mounts.unmount(mountPoint)
            System.removeDirectory(mountPoint)
            System.removeDirectory(names.runDirectory)
        }
        let catalog = try Catalog(path: "\(mountPoint)/catalog.db", readOnly: true)
        defer { catalog.database.close() }
        return try body(catalog)
    }
}

extension Catalog {
    /// Every thin id a catalog row points at, including a pending switch's.
    func referencedThinIDs() throws(ThinError) -> Set<UInt32> {
        var ids = Set<UInt32>()
        for row in try database.query("SELECT thin_id, pending_thin_id FROM volume") {
            if let id = row.int(0) { ids.insert(UInt32(id)) }
            if let id = row.int(1) { ids.insert(UInt32(id)) }
        }
        return ids
    }
}

// MARK: attached

extension AttachedSR {
    /// Online: the pool's state, any open transaction, `thin_check` through a
    /// metadata snapshot, thin ids against the catalog, attached devices'
    /// tables, and catalog rows that contradict themselves.
    func check(repair: Bool) async throws(ThinError) -> CheckReport {
        var report = CheckReport(srUUID: names.uuid, attached: true, metadata: "clean", findings: [])
        let usage: ThinPoolUsage
        switch try pool.status() {
        case .failed, .error:
            report.metadata = "damaged"
            report.findings.append(CheckFinding(problem: "pool-failed", detail: "the pool has failed; detach the SR "
                                                + "and run thinsr-check --repair \(names.uuidString)", repaired: false))
            return report
        case .active(let active):
            usage = active
        }
        if usage.needsCheck {
            report.findings.append(CheckFinding(problem: "needs-check", detail: "the kernel flagged the metadata as "
                                                + "needing a check; detach the SR and run thinsr-check --repair",
                                                repaired: false))
        }
        var current = usage
        if let pending = try catalog.pending() {
            var finding = CheckFinding(problem: "open-transaction", detail: "an interrupted operation left "
                                       + "transaction \(pending.oldTransactionID) -> \(pending.newTransactionID) open "
                                       + "(\(pending.messages.joined(separator: "; ")))", repaired: false)
            if repair {
                current = try recover()
                finding.repaired = true
                finding.detail += "; finished or undone"
            }
            report.findings.append(finding)
        }
        let transactionOpen = try catalog.pending() != nil
        let (check, present) = try await withMetadataSnapshot { path throws(ThinError) in
            (try await SRCheck.thinCheck(path, metadataSnapshot: true),
             try await SRCheck.thinIDs(path, metadataSnapshot: true))
        }
        if !check.clean {
            report.metadata = "damaged"
            report.findings.append(CheckFinding(problem: "metadata-damaged", detail: "thin_check: "
                                                + SRCheck.firstLine(check.report) + "; detach the SR and run "
                                                + "thinsr-check --repair \(names.uuidString)", repaired: false))
            return report
        }
        guard !transactionOpen else { return report }  // the ids differ by design until it settles
        let referenced = try catalog.referencedThinIDs()
        let leaked = present.subtracting(referenced).sorted()
        report.findings += SRCheck.compareIDs(pool: present, catalog: referenced, repairable: true)
        let record = try catalog.srRecord()
        if record.transactionID != current.transactionID {
            var finding = CheckFinding(problem: "transaction-id-mismatch", detail: "the pool's transaction id is "
                                       + "\(current.transactionID), the catalog's \(record.transactionID), and no "
                                       + "transaction is open", repaired: false)
            if repair {
                try catalog.setTransactionID(current.transactionID)
                finding.repaired = true
                finding.detail += "; the catalog now records the pool's id"
            }
            report.findings.append(finding)
        }
        if repair && !leaked.isEmpty {
            // Deleting is safe: no catalog row points at these ids.
            try transact(leaked.map { .delete($0) }, recovered: try pool.usage()) { _ throws(ThinError) in }
            for index in report.findings.indices where report.findings[index].problem == "leaked-thin-id" {
                report.findings[index].repaired = true
                report.findings[index].detail += "; deleted"
            }
        }
        report.findings += try checkRows()
        report.findings += try checkDevices(repair: repair)
        return report
    }

    /// Catalog rows whose kind, flags or lineage contradict each other.
    private func checkRows() throws(ThinError) -> [CheckFinding] {
        let volumes = try catalog.volumes(includingUnfinished: true)
        let known = Set(volumes.map(\.uuid))
        var findings: [CheckFinding] = []
        for volume in volumes {
            let writable = volume.kind != .snapshot
            if volume.readWrite != writable {
                findings.append(CheckFinding(problem: "kind-disagrees", detail: "\(volume.key) is a \(volume.kind.rawValue) "
                                             + "but is marked \(volume.readWrite ? "writable" : "read-only")",
                                             repaired: false))
            }
            if volume.kind == .snapshot, volume.snapshotOf == nil {
                findings.append(CheckFinding(problem: "kind-disagrees", detail: "snapshot \(volume.key) records no "
                                             + "origin", repaired: false))
            }
            if let parent = volume.parentUUID, !known.contains(parent) {
                findings.append(CheckFinding(problem: "lineage-broken", detail: "\(volume.key)'s parent "
                                             + "\(parent.uuidString.lowercased()) is not in the catalog",
                                             repaired: false))
            }
            if volume.virtualSize == 0 || volume.virtualSize % 512 != 0 {
                findings.append(CheckFinding(problem: "size-disagrees", detail: "\(volume.key) has size "
                                             + "\(volume.virtualSize), not a positive multiple of 512",
                                             repaired: false))
            }
        }
        return findings
    }

    /// Attached volume devices must map the catalog's thin id at its size; a
    /// device no volume owns is removed by `repair` unless something holds it open.
    private func checkDevices(repair: Bool) throws(ThinError) -> [CheckFinding] {
        let volumes = try catalog.volumes(includingUnfinished: true)
        var findings: [CheckFinding] = []
        for (uuid, info) in try activeVolumeDevices() {
            let device = names.volumeDevice(uuid)
            guard let volume = volumes.first(where: { $0.uuid == uuid }) else {
                var finding = CheckFinding(problem: "orphan-device", detail: "device \(device) belongs to no volume",
                                           repaired: false)
                if repair && info.openCount == 0 {
                    do { try DeviceMapper.remove(name: device) } catch { throw .backend("cannot remove \(device)", error) }
                    finding.repaired = true
                    finding.detail += "; removed"
                }
                findings.append(finding)
                continue
            }
            guard let line = try DeviceMapper.tableOrThrow(device)?.first,
                  let table = ThinTable(parameters: line.parameters) else { continue }
            if table.deviceID != volume.thinID || line.lengthSectors != volume.virtualSize / 512 {
                findings.append(CheckFinding(problem: "device-disagrees", detail: "the device of \(volume.key) maps "
                                             + "thin id \(table.deviceID) with \(line.lengthSectors) sectors; the "
                                             + "catalog says thin id \(volume.thinID) with \(volume.virtualSize / 512); "
                                             + "detach and attach it again", repaired: false))
            }
        }
        return findings
    }
}
