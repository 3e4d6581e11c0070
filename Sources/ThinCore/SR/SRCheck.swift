public import FoundationEssentials
import ThinDeviceMapper
import ThinTools

/// What `thinsr-check` can find. The raw values are the stable names its
/// output, its JSON and the suites read.
public enum CheckProblem: String, CaseIterable, Sendable {
    // The pool and its metadata.
    case poolFailed = "pool-failed", needsCheck = "needs-check", metadataDamaged = "metadata-damaged",
         metadataNamesUnfinished = "metadata-names-unfinished", incompleteSR = "incomplete-sr"
    // The pool against the catalog.
    case openTransaction = "open-transaction", transactionIDMismatch = "transaction-id-mismatch",
         leakedThinID = "leaked-thin-id", missingThinID = "missing-thin-id"
    // The catalog and its copy.
    case catalogMissing = "catalog-missing", catalogDamaged = "catalog-damaged",
         catalogFilesystemDamaged = "catalog-filesystem-damaged", catalogBehindCopy = "catalog-behind-copy",
         catalogCopyMissing = "catalog-copy-missing", catalogCopyDamaged = "catalog-copy-damaged",
         catalogCopyStale = "catalog-copy-stale"
    // The catalog's rows, raw volumes' LVs, volume devices.
    case kindDisagrees = "kind-disagrees", lineageBroken = "lineage-broken", sizeDisagrees = "size-disagrees"
    case rawLVMissing = "raw-lv-missing", rawLVOrphaned = "raw-lv-orphaned"
    case orphanDevice = "orphan-device", deviceUnfinished = "device-unfinished", deviceDisagrees = "device-disagrees"
}

/// One problem `thinsr-check` found, and whether `--repair` fixed it.
public struct CheckFinding: Sendable, Equatable {
    public var code: CheckProblem
    public var detail: String
    public var repaired: Bool

    init(_ code: CheckProblem, detail: String, repaired: Bool) {
        self.code = code
        self.detail = detail
        self.repaired = repaired
    }

    /// The stable name: `open-transaction`, `leaked-thin-id`, ...
    public var problem: String { code.rawValue }
}

/// What `thinsr-check` found on one SR.
public struct CheckReport: Sendable {
    public enum Outcome: String, Sendable { case clean, repaired, damaged }

    public var srUUID: UUID
    public var attached: Bool
    /// `clean`, `damaged` or `repaired` (thin_check's verdict on the pool metadata).
    public var metadata: String
    public var findings: [CheckFinding]
    /// What was not checked, and why (never damage): e.g. thin-provisioning-tools
    /// too old to check a live pool's metadata.
    public var notes: [String] = []

    public var outcome: Outcome {
        if findings.isEmpty { return .clean }
        return findings.allSatisfy(\.repaired) ? .repaired : .damaged
    }

    /// Leaked ids (in the pool, not the catalog) and missing ones (the reverse).
    static func compareIDs(pool: Set<ThinDeviceID>, catalog: Set<ThinDeviceID>, repairable: Bool) -> [CheckFinding] {
        var findings: [CheckFinding] = []
        for id in pool.subtracting(catalog).sorted() {
            findings.append(CheckFinding(.leakedThinID, detail: "thin id \(id) is in the pool but no "
                                         + "volume in the catalog uses it" + (repairable ? "" : "; attach the SR "
                                         + "and run thinsr-check --repair to delete it"), repaired: false))
        }
        for id in catalog.subtracting(pool).sorted() {
            findings.append(CheckFinding(.missingThinID, detail: "the catalog references thin id \(id), "
                                         + "which the pool lacks; that volume's data is lost", repaired: false))
        }
        return findings
    }

    /// e2fsck's first line that says something: lines that are only the
    /// device's name (e2fsck -p starts its report with "<device>: ") skipped.
    static func filesystemProblem(_ output: String) -> String {
        let trimmed = { (text: Substring) in text.drop { $0 == " " || $0 == "\t" } }
        let lines = output.split(whereSeparator: \.isNewline).map(trimmed)
        let telling = lines.first { line in
            guard line.hasPrefix("/dev/"), let colon = line.firstIndex(of: ":") else { return !line.isEmpty }
            return !trimmed(line[line.index(after: colon)...]).isEmpty
        }
        return telling.map(String.init) ?? "failed"
    }
}

extension SRLifecycle {
    /// Checks an SR's pool metadata and its catalog against each other, and with
    /// `repair` does what is safe: finish or undo an open transaction, delete thin
    /// ids nothing references, rebuild metadata that fails `thin_check` into the
    /// spare LV. Nothing the catalog references is ever deleted.
    public func check(_ reference: String, repair: Bool) async throws(ThinError) -> CheckReport {
        let (sr, lock) = try lockedFind(reference)
        defer { lock.release() }
        try discovery.requireOwned(sr)
        guard !sr.isIncomplete else {
            return CheckReport(srUUID: sr.uuid, attached: false, metadata: "-", findings: [
                CheckFinding(.incompleteSR, detail: "thinsr-create did not finish; run it again with "
                             + "--uuid \(sr.names.uuidString) or remove the SR with thinsr-destroy", repaired: false),
            ])
        }
        guard sr.attached else { return try await OfflineCheck(lifecycle: self).checkDetached(sr, repair: repair, lock: lock) }
        let attached = try AttachedSR.open(sr.names, for: .write, lock: lock, host: host)
        defer { attached.close() }
        var report = try await attached.administration.check(repair: repair)
        report.findings += try await checkCatalogCopy(attached, sr, repair: repair)
        return report
    }
}

/// Helpers both checks use: thin_check and thin_ls, as findings' inputs.
extension HelperPrograms {
    func thinCheck(_ device: String, metadataSnapshot: Bool = false) async throws(ThinError) -> ThinTools.CheckResult {
        do { return try await checkMetadata(device: device, metadataSnapshot: metadataSnapshot, clearNeedsCheckFlag: false) } catch {
            throw .backend("thin_check could not run", error)
        }
    }

    func thinIDs(_ device: String, metadataSnapshot: Bool) async throws(ThinError) -> Set<ThinDeviceID> {
        do {
            return Set(try await listDevices(metadataDevice: device, metadataSnapshot: metadataSnapshot)
                .compactMap { ThinDeviceID($0.deviceID) })
        } catch {
            throw .backend("thin_ls failed", error)
        }
    }
}
