import ThinTools
import ThinDeviceMapper

extension SRAdministration {
    /// Online: the pool's state, any open transaction, `thin_check` through a
    /// metadata snapshot, thin ids against the catalog, attached devices'
    /// tables, and catalog rows that contradict themselves.
    func check(repair: Bool) async throws(ThinError) -> CheckReport {
        var report = CheckReport(srUUID: names.uuid, attached: true, metadata: "clean", findings: [])
        let usage: ThinPoolUsage
        switch try pool.status() {
        case .failed, .error:
            report.metadata = "damaged"
            report.findings.append(CheckFinding(.poolFailed, detail: "the pool has failed; detach the SR "
                                                + "and run thinsr-check --repair \(names.uuidString)", repaired: false))
            return report
        case .active(let active):
            usage = active
        }
        if usage.needsCheck {
            report.findings.append(CheckFinding(.needsCheck, detail: "the kernel flagged the metadata as "
                                                + "needing a check; detach the SR and run thinsr-check --repair",
                                                repaired: false))
        }
        let current = try await checkOpenTransaction(repair: repair, usage: usage, into: &report)
        let transactionOpen = try catalog.pending() != nil
        let programs = host.programs
        // thin_check learnt --metadata-snap in 0.9 (XCP-ng 8.3 has 0.7): older ones would call the pool damaged.
        let version = await programs.thinToolsVersion()
        let checksLive = version.map { $0 >= ProgramProbes.liveCheckVersion } ?? true
        let (check, present) = try await sr.withMetadataSnapshot { path throws(ThinError) in
            (checksLive ? try await programs.thinCheck(path, metadataSnapshot: true) : nil,
             try await programs.thinIDs(path, metadataSnapshot: true))
        }
        if check == nil {
            report.metadata = "not checked"
            report.notes.append("live metadata not checked: thin-provisioning-tools \(version.map { "\($0)" } ?? "") is "
                                + "older than 0.9 (thin_check has no --metadata-snap); detach the SR and run thinsr-check "
                                + "to check it offline")
        }
        if let check, !check.clean {
            report.metadata = "damaged"
            report.findings.append(CheckFinding(.metadataDamaged, detail: "thin_check: "
                                                + messageLine(check.report, otherwise: "failed") + "; detach the SR and run "
                                                + "thinsr-check --repair \(names.uuidString)", repaired: false))
            return report
        }
        guard !transactionOpen else { return report }  // the ids differ by design until it settles
        try checkThinIDs(present, repair: repair, usage: current, into: &report)
        report.findings += try checkCatalogIntegrity()
        report.findings += try checkRows()
        report.findings += try checkRawVolumes()
        report.findings += try checkDevices(repair: repair)
        return report
    }

    /// Preallocated volumes' LVs against their rows (`lvs`): a row whose LV
    /// is gone has lost its data; an LV of the SR's that no row names was
    /// made or kept behind thinsr's back. Neither is repaired: which copy of
    /// the truth is right is the admin's call.
    private func checkRawVolumes() throws(ThinError) -> [CheckFinding] {
        let lvs = try sr.preallocated.rawLogicalVolumes().map(\.name)
        let rows = try catalog.rawLVNames()
        var findings: [CheckFinding] = []
        for volume in try catalog.volumes() where volume.rawLV.map({ !lvs.contains($0) }) ?? false {
            findings.append(CheckFinding(.rawLVMissing, detail: "the LV \(volume.rawLV ?? "") of "
                                         + "preallocated volume \(volume.key) is missing (vgcfgrestore \(volumeGroup) "
                                         + "brings back a removed LV from LVM's archive; or thinvdi-destroy the volume)",
                                         repaired: false))
        }
        for lv in lvs.sorted() where !rows.contains(lv) {
            findings.append(CheckFinding(.rawLVOrphaned, detail: "the LV \(volumeGroup)/\(lv) carries this "
                                         + "SR's tags but no volume names it; inspect it, then remove it with lvremove",
                                         repaired: false))
        }
        return findings
    }

    /// An open transaction is a finding; `repair` finishes or undoes it.
    /// An open transaction whose ids match neither of the pool's is settled
    /// by what the pool holds (`resolveByEvidence`).
    private func checkOpenTransaction(repair: Bool, usage: ThinPoolUsage,
                                      into report: inout CheckReport) async throws(ThinError) -> ThinPoolUsage {
        guard let pending = try catalog.pending() else { return usage }
        let matchesNeither = ![pending.oldTransactionID, pending.newTransactionID].contains(usage.transactionID)
        var finding = CheckFinding(.openTransaction, detail: "an interrupted operation left transaction "
                                   + "\(pending.oldTransactionID) -> \(pending.newTransactionID) open ("
                                   + pending.messages.map(\.text).joined(separator: "; ") + ")"
                                   + (matchesNeither ? "; the pool's id, \(usage.transactionID), matches neither side" : ""),
                                   repaired: false)
        var current = usage
        if repair && matchesNeither {
            let programs = host.programs
            let present = try await sr.withMetadataSnapshot { path throws(ThinError) in
                try await programs.thinIDs(path, metadataSnapshot: true)
            }
            finding.detail += "; " + (try transactions.resolveByEvidence(pending, present: present, usage: usage))
            finding.repaired = true
            current = try pool.usage()
        } else if repair {
            current = try sr.recovered()
            finding.repaired = true
            finding.detail += "; finished or undone"
        }
        report.findings.append(finding)
        return current
    }

    /// Pool ids against catalog ids, and the two transaction ids; `repair`
    /// deletes leaked ids (no row points at them) and records the pool's id.
    private func checkThinIDs(_ present: Set<ThinDeviceID>, repair: Bool, usage: ThinPoolUsage,
                              into report: inout CheckReport) throws(ThinError) {
        let referenced = try catalog.referencedThinIDs()
        let leaked = present.subtracting(referenced).sorted()
        report.findings += CheckReport.compareIDs(pool: present, catalog: referenced, repairable: true)
        let record = try catalog.srRecord()
        if record.transactionID != usage.transactionID {
            var finding = CheckFinding(.transactionIDMismatch, detail: "the pool's transaction id is "
                                       + "\(usage.transactionID), the catalog's \(record.transactionID), and no "
                                       + "transaction is open", repaired: false)
            if repair {
                try catalog.setTransactionID(usage.transactionID)
                finding.repaired = true
                finding.detail += "; the catalog now records the pool's id"
            }
            report.findings.append(finding)
        }
        guard repair && !leaked.isEmpty else { return }
        try sr.transact(leaked.map { .delete($0) }, from: try pool.usage()) { _ throws(ThinError) in }
        for index in report.findings.indices where report.findings[index].code == .leakedThinID {
            report.findings[index].repaired = true
            report.findings[index].detail += "; deleted"
        }
    }

    /// SQLite's own check of the catalog's pages and indexes.
    func checkCatalogIntegrity() throws(ThinError) -> [CheckFinding] {
        let problems = try catalog.integrityProblems()
        guard !problems.isEmpty else { return [] }
        return [CheckFinding(.catalogDamaged, detail: "PRAGMA integrity_check: "
                             + problems.prefix(3).joined(separator: "; "), repaired: false)]
    }

    /// Catalog rows whose kind, flags or lineage contradict each other.
    private func checkRows() throws(ThinError) -> [CheckFinding] {
        let volumes = try catalog.volumes(includingUnfinished: true)
        let known = Set(volumes.map(\.uuid))
        var findings: [CheckFinding] = []
        func found(_ problem: CheckProblem, _ detail: String) {
            findings.append(CheckFinding(problem, detail: detail, repaired: false))
        }
        for volume in volumes {
            if volume.readWrite != (volume.kind != .snapshot && volume.kind != .template) {
                found(.kindDisagrees, "\(volume.key) is a \(volume.kind.rawValue) but is marked "
                      + (volume.readWrite ? "writable" : "read-only"))
            }
            if volume.kind == .snapshot, volume.snapshotOf == nil {
                found(.kindDisagrees, "snapshot \(volume.key) records no origin")
            }
            if let parent = volume.parentUUID, !known.contains(parent) {
                found(.lineageBroken, "\(volume.key)'s parent \(parent.lowercased) is not in the catalog")
            }
            if volume.virtualSize % 512 != 0 {
                found(.sizeDisagrees, "\(volume.key) has size \(volume.virtualSize), not a multiple of 512")
            }
        }
        return findings
    }

    /// Attached volume devices must map the catalog's thin id at its size and
    /// not be left suspended; `repair` finishes a device change a killed
    /// process left (whether or not its marker survived) and removes a device
    /// no volume owns unless something holds it open.
    private func checkDevices(repair: Bool) throws(ThinError) -> [CheckFinding] {
        let volumes = try catalog.volumes(includingUnfinished: true)
        let active = try devices.active()
        let unfinished = try devices.unfinished(volumes, active: active)
        if repair {
            if !unfinished.isEmpty { try devices.finish(unfinished) }
            // A hydration's dm-clone stack or an origin left suspended is finished too.
            if try devices.resumeStacked() || !unfinished.isEmpty { System.removeFile(names.devicesChangingMarker) }
        }
        var findings: [CheckFinding] = []
        for (uuid, info) in active {
            let device = names.volumeDevice(uuid).name
            guard let volume = volumes.first(where: { $0.uuid == uuid }) else {
                var finding = CheckFinding(.orphanDevice, detail: "device \(device) belongs to no volume",
                                           repaired: false)
                if repair && info.openCount == 0 {
                    do { try host.deviceMapper.remove(name: device) } catch { throw .backend("cannot remove \(device)", error) }
                    finding.repaired = true
                    finding.detail += "; removed"
                }
                findings.append(finding)
                continue
            }
            if unfinished[uuid] != nil {
                findings.append(CheckFinding(.deviceUnfinished, detail: "the device of \(volume.key) was left "
                                             + "suspended or shorter than the volume by an interrupted operation"
                                             + (repair ? "; resumed at the volume's size" : "; run thinsr-check --repair"),
                                             repaired: repair))
                continue
            }
            let live: [TableLine]?
            do { live = try host.deviceMapper.table(name: device) } catch {
                throw .backend("cannot read the table of \(device)", error)
            }
            if volume.isPreallocated, let line = live?.first, line.targetType != .error {
                // The kernel shows the LV as major:minor.
                var expected = devices.table(for: volume)
                if let lv = sr.preallocated.rawDevicePath(volume), let number = System.blockDevice(lv) {
                    expected.parameters = "\(number.major):\(number.minor) 0"
                }
                if line != expected {
                    findings.append(CheckFinding(.deviceDisagrees, detail: "the device of \(volume.key) "
                                                 + "maps \(line.targetType) \(line.parameters) with \(line.lengthSectors) "
                                                 + "sectors; the catalog says its LV \(volume.rawLV ?? "") with "
                                                 + "\(volume.virtualSize / 512); detach and attach it again", repaired: false))
                }
                continue
            }
            guard let line = live?.first, let table = ThinTable(parameters: line.parameters) else { continue }
            if table.deviceID != volume.thinID || line.lengthSectors != volume.virtualSize / 512 {
                findings.append(CheckFinding(.deviceDisagrees, detail: "the device of \(volume.key) maps "
                                             + "thin id \(table.deviceID) with \(line.lengthSectors) sectors; the "
                                             + "catalog says thin id \(volume.thinID) with \(volume.virtualSize / 512); "
                                             + "detach and attach it again", repaired: false))
            }
        }
        return findings
    }
}
