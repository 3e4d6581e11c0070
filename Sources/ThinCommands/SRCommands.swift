public import ArgumentParser
import FoundationEssentials
public import ThinCore

public struct SRStat: WholeSRTool {
    public static let access = ToolAccess.read
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-stat",
        abstract: "Show an attached SR's state and space.",
        discussion: "Reads the pool's status from device-mapper and the SR's record from its catalog.")
    public static let examples = [("thinsr-stat vmstore", "Show the SR's space and health."),
                                  ("thinsr-stat --json vmstore", "The same as an SMAPIv3 sr_stat record.")]

    @OptionGroup public var target: SRArgument
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let stat = SRStatJSON(try sr.administration.status())
        if output.json { return Console.printJSON(stat) }
        let bytes = { (value: UInt64?) in value.map { "\(ByteSize.format($0)) (\($0) bytes)" } ?? "-" }
        Console.fields([
            ("uuid", stat.uuid), ("name", stat.name), ("description", stat.description),
            ("health", stat.health[1].isEmpty ? stat.health[0] : "\(stat.health[0]): \(stat.health[1])"),
            ("mode", stat.mode), ("volume group", stat.volume_group), ("pool device", stat.pool_device),
            ("pool mode", stat.pool_mode), ("block size", ByteSize.format(stat.block_size)),
            ("data used", bytes(stat.data_used)), ("data total", bytes(stat.data_total)),
            ("metadata used", bytes(stat.metadata_used)), ("metadata total", bytes(stat.metadata_total)),
            ("free space", bytes(stat.free_space) + " (pool \(ByteSize.format(stat.pool_free)) + volume group "
             + "\(ByteSize.format(stat.vg_free)))"),
            ("preallocated", bytes(stat.preallocated_bytes)),
            ("transaction id", stat.transaction_id.map(String.init) ?? "-"),
            ("on full", stat.on_full ?? "-"), ("needs check", stat.needs_check.map { $0 ? "yes" : "no" } ?? "-"),
            ("autoextend", stat.autoextend_threshold >= 100 ? "off"
                : "at \(stat.autoextend_threshold)% used, by \(stat.autoextend_step.hasSuffix("%") ? stat.autoextend_step : ByteSize.format(UInt64(stat.autoextend_step) ?? 0))"),
            ("warning at", "\(stat.warning_threshold)% used"),
            ("volumes", "\(stat.volume_count) (\(stat.attached_volume_count) attached)"), ("created", stat.created),
        ])
    }
}

public struct SRSet: WholeSRTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-set",
        abstract: "Change an attached SR's name, description, pool-full policy or pool monitor policy.",
        discussion: """
            The SR's uuid never changes. --on-full takes effect at once: the live pool is reloaded with \
            the new policy, and it is kept for later attaches. The monitor policy (thinsr-monitor): at \
            --autoextend-threshold percent of the pool's data or metadata used, grow the pool by \
            --autoextend-step (a size, or a percent of the pool's data with a % suffix) from the volume \
            group's free space; warn from --warning-threshold percent. A threshold of 100 never grows the \
            pool. The pool's low water mark follows the threshold, so the kernel signals the crossing.
            """)
    public static let examples = [("thinsr-set vmstore --name vmstore-ssd", "Rename the SR."),
                                  ("thinsr-set vmstore --on-full error", "Fail writes at once when the pool is full."),
                                  ("thinsr-set vmstore --autoextend-threshold 70 --autoextend-step 10G",
                                   "Grow the pool by 10 GiB whenever it is 70% used.")]

    @OptionGroup public var target: SRArgument
    @OptionGroup var labels: LabelChanges
    var name: String? { labels.name }
    var description: String? { labels.description }
    @Option(name: .customLong("on-full"),
            help: ArgumentHelp("What writes do when the pool's data is full: queue or error.",
                               valueName: "queue|error"))
    var onFull: OnFullPolicy?
    @Option(name: .customLong("autoextend-threshold"),
            help: ArgumentHelp("Grow the pool at this percent of data or metadata used (50-100; 100: never).",
                               valueName: "percent"))
    var autoextendThreshold: Int?
    @Option(name: .customLong("autoextend-step"),
            help: ArgumentHelp("How much each growth adds: a size (K, M, G, T) or a percent of the pool's data (20%).",
                               valueName: "size|percent%"))
    var autoextendStep: String?
    @Option(name: .customLong("warning-threshold"),
            help: ArgumentHelp("Warn (in the journal) from this percent of data or metadata used (1-100).",
                               valueName: "percent"))
    var warningThreshold: Int?
    @OptionGroup public var output: OutputOptions
    public init() {}

    var step: AutoextendPolicy.Step? {
        get throws(ThinError) {
            guard let autoextendStep else { return nil }
            if autoextendStep.hasSuffix("%") {
                guard let step = AutoextendPolicy.Step(text: autoextendStep) else {
                    throw .init(.invalidArgument, "--autoextend-step \(autoextendStep) is not a percent from 1% to 1000%")
                }
                return step
            }
            let bytes = try ByteCount(parsing: autoextendStep, what: "autoextend step").bytes
            guard bytes >= 1 << 20 else {
                throw .init(.invalidArgument, "--autoextend-step \(autoextendStep) is below 1M; give a larger size or a percent")
            }
            return .bytes(bytes)
        }
    }

    public func checkArguments() throws(ThinError) {
        guard name != nil || description != nil || onFull != nil || autoextendThreshold != nil
                || autoextendStep != nil || warningThreshold != nil else {
            throw ThinError(.invalidArgument, "nothing to set: give --name, --description, --on-full, "
                            + "--autoextend-threshold, --autoextend-step or --warning-threshold")
        }
        if let autoextendThreshold, !AutoextendPolicy.thresholdRange.contains(autoextendThreshold) {
            throw .init(.invalidArgument, "--autoextend-threshold \(autoextendThreshold) is out of range; give 50 to 100 "
                        + "(percent used; 100 never grows the pool)")
        }
        if let warningThreshold, !AutoextendPolicy.warningRange.contains(warningThreshold) {
            throw .init(.invalidArgument, "--warning-threshold \(warningThreshold) is out of range; give 1 to 100")
        }
        _ = try step
    }

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        if name != nil || description != nil { try sr.administration.setLabel(name: name, description: description) }
        if let onFull { try sr.administration.setOnFull(onFull) }
        if autoextendThreshold != nil || autoextendStep != nil || warningThreshold != nil {
            try sr.administration.setAutoextend(threshold: autoextendThreshold, step: try step, warning: warningThreshold)
        }
        if output.json { Console.printJSON(SRStatJSON(try sr.administration.status())) }
    }
}

public struct SRExtend: WholeSRTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-extend",
        abstract: "Grow an attached SR's pool.",
        discussion: """
            Adds devices to the volume group of an SR that owns its devices (--device), grows the pool \
            metadata and its spare to what the larger pool needs (and doubles them when more than half is \
            used), grows the pool data and reloads the live pool. A pool that ran out of data space goes \
            back to read-write, and writes it queued complete. Without --size, an own-the-world SR takes \
            all free space in its volume group; a be-nice SR needs --size.
            """)
    public static let examples = [
        ("thinsr-extend vmstore --device /dev/sdd", "Add a disk to the SR and grow the pool onto it."),
        ("thinsr-extend scratch --size +50G", "Grow a be-nice SR's pool by 50 GiB from its VG's free space."),
    ]

    @OptionGroup public var target: SRArgument
    @Option(help: ArgumentHelp("The new pool data size, or +SIZE to grow by SIZE (K, M, G or T suffix).",
                               valueName: "size"), transform: SRExtendRequest.Size.parse)
    var size: SRExtendRequest.Size?
    @Option(name: .customLong("device"), help: ArgumentHelp("A raw block device to add (repeatable).",
                                                            valueName: "device"),
            completion: .file())
    var devices: [String] = []
    @OptionGroup public var output: OutputOptions
    public init() {}


    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let status = try await sr.administration.extend(SRExtendRequest(size: size, devices: devices))
        let stat = SRStatJSON(status)
        if output.json { return Console.printJSON(stat) }
        Console.out("\(stat.uuid): pool data \(ByteSize.format(stat.data_total ?? 0)), metadata "
                    + "\(ByteSize.format(stat.metadata_total ?? 0)), pool \(stat.pool_mode)")
    }
}

public struct SRCheckCommand: ToolCommand {
    public static let access = ToolAccess.lifecycle
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-check",
        abstract: "Check an SR's pool metadata and catalog, and repair what is safe.",
        discussion: """
            Runs thin_check on the pool metadata (through a metadata snapshot while the SR is attached, \
            offline while it is detached) and compares the pool with the catalog: thin ids the catalog does \
            not know (leaked), volumes whose thin id the pool lacks (missing), an open transaction left by an \
            interrupted operation, a transaction id mismatch, catalog rows whose kind or size contradict \
            themselves, and attached devices that map the wrong thin id or size. With --repair it finishes \
            or undoes an open transaction, deletes leaked ids, records the pool's transaction id, removes \
            orphaned devices, and, on a detached SR whose metadata fails thin_check, runs thin_repair into \
            the spare LV and swaps the result in only if it checks clean and keeps every thin id the catalog \
            references (the damaged metadata becomes the spare). The catalog is checked too (e2fsck of its \
            filesystem, PRAGMA integrity_check), and so is its copy, the second copy of every row that each \
            commit also writes, on an LV of its own. A detached SR whose catalog is lost (its LV removed or \
            zeroed, its filesystem beyond e2fsck, its database corrupt) is rebuilt from the copy by --repair, \
            which then reconciles the rebuilt catalog with the pool; a copy that is missing, damaged or \
            behind is made anew from the catalog. Nothing the catalog references is deleted. \
            Exit status 0 means clean, 6 that everything found was repaired, 5 that damage is left.
            """)
    public static let examples = [("thinsr-check vmstore", "Check the SR."),
                                  ("thinsr-detach vmstore && thinsr-check --repair vmstore",
                                   "Repair the SR's metadata offline.")]
    public static let extraExitStatuses: [(Int32, String)] = [
        (6, "Problems were found and all of them were repaired."),
    ]

    @OptionGroup public var target: SRArgument
    @Flag(help: "Repair what is safe to repair.") var repair = false
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let report = try await SRLifecycle(host: host).check(target.sr, repair: repair)
        let uuid = report.srUUID.uuidString.lowercased()
        if output.json {
            Console.printJSON(CheckReportJSON(report))
        } else {
            Console.out("SR \(uuid) (\(report.attached ? "attached" : "detached")): metadata \(report.metadata)")
            for note in report.notes { Console.out("note: \(note)") }
            for finding in report.findings {
                Console.out("\(finding.repaired ? "repaired" : "found"): \(finding.problem): \(finding.detail)")
            }
            Console.out("result: \(report.outcome == .damaged ? "damage left" : report.outcome.rawValue)")
        }
        switch report.outcome {
        case .clean: return 0
        case .repaired: return 6
        case .damaged:
            let first = report.findings.first { !$0.repaired }
            Console.err("thinsr-check: SR \(uuid) has damage left: \(first?.problem ?? "?")"
                        + (repair ? "" : "; run thinsr-check --repair \(uuid)"))
            return ErrorCode.catalogInconsistent.exitStatus
        }
    }
}

struct CheckReportJSON: Encodable {
    struct Finding: Encodable { var problem: String; var detail: String; var repaired: Bool }
    var sr: String
    var attached: Bool
    var metadata: String
    var result: String
    var findings: [Finding]
    var notes: [String]

    init(_ report: CheckReport) {
        sr = report.srUUID.uuidString.lowercased()
        attached = report.attached
        metadata = report.metadata
        result = report.outcome == .damaged ? "damaged" : report.outcome.rawValue
        findings = report.findings.map { Finding(problem: $0.problem, detail: $0.detail, repaired: $0.repaired) }
        notes = report.notes
    }
}
