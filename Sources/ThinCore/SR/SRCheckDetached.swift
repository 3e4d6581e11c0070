import ThinTools
import ThinLVM
import ThinDeviceMapper

extension SRLifecycle {
    /// Offline: `thin_check` on the metadata LV; with `repair`, `thin_repair`
    /// into the spare, which is swapped in only if it checks clean and still
    /// holds every thin id the catalog references.
    func checkDetached(_ sr: DiscoveredSR, repair: Bool) async throws(ThinError) -> CheckReport {
        var report = CheckReport(srUUID: sr.uuid, attached: false, metadata: "clean", findings: [])
        let inactive = [LVRole.metadata, .spare, .catalog].compactMap { sr.volumes[$0] }.filter { !$0.active }.map(\.name)
        do { try host.lvm.setActive(true, group: sr.volumeGroup, names: inactive) } catch {
            throw .backend("cannot activate the SR's metadata LVs", error)
        }
        defer { try? host.lvm.setActive(false, group: sr.volumeGroup, names: inactive) }
        let metadata = sr.mapperPath(.metadata)
        let referenced = try withCatalogReadOnly(sr) { catalog throws(ThinError) in try catalog.referencedThinIDs() }
        let check = try await host.programs.thinCheck(metadata)
        if !check.clean {
            report.metadata = "damaged"
            var finding = CheckFinding(problem: "metadata-damaged",
                                       detail: "thin_check: " + CheckReport.firstLine(check.report), repaired: false)
            if repair {
                try await repairMetadata(sr, referenced: referenced, finding: &finding)
                if finding.repaired { report.metadata = "repaired" }
            } else {
                finding.detail += "; run thinsr-check --repair \(sr.names.uuidString)"
            }
            report.findings.append(finding)
            guard finding.repaired else { return report }
        }
        let present = try await host.programs.thinIDs(metadata, metadataSnapshot: false)
        report.findings += CheckReport.compareIDs(pool: present, catalog: referenced, repairable: false)
        return report
    }

    /// `thin_repair` into the zeroed spare; the copy is swapped in only if it
    /// checks clean and keeps every id the catalog references.
    private func repairMetadata(_ sr: DiscoveredSR, referenced: Set<ThinDeviceID>,
                                finding: inout CheckFinding) async throws(ThinError) {
        let metadata = sr.mapperPath(.metadata)
        let spare = sr.mapperPath(.spare)
        try host.system.zeroStart(of: spare)
        do { try await host.programs.repairMetadata(input: metadata, output: spare) } catch {
            finding.detail += "; thin_repair failed: \(CheckReport.firstLine(error.description)); the metadata is unchanged"
            return
        }
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

    /// Swaps the metadata and spare LVs by name and role tag, so the repaired
    /// copy becomes the metadata and the damaged one the spare.
    private func swapMetadataAndSpare(_ sr: DiscoveredSR) throws(ThinError) {
        let names = sr.names
        let group = sr.volumeGroup
        let (metadata, spare) = (names.lv(.metadata), names.lv(.spare))
        do {
            try host.lvm.setActive(false, group: group, names: [metadata, spare])
            try host.lvm.renameLogicalVolume(group: group, from: metadata, to: names.swapLV)
            try host.lvm.renameLogicalVolume(group: group, from: spare, to: metadata)
            try host.lvm.retag(group: group, name: metadata, remove: [LVRole.spare.tag], add: [LVRole.metadata.tag])
            try host.lvm.renameLogicalVolume(group: group, from: names.swapLV, to: spare)
            try host.lvm.retag(group: group, name: spare, remove: [LVRole.metadata.tag], add: [LVRole.spare.tag])
            try host.lvm.setActive(true, group: group, names: [metadata, spare])
        } catch {
            throw .backend("swapping the repaired metadata in failed", error)
        }
    }
}
