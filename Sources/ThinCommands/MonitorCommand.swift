public import ArgumentParser
public import ThinCore

public struct SRMonitor: ToolCommand {
    public static let access = ToolAccess.lifecycle
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-monitor",
        abstract: "Watch every attached SR's pool and grow it by its autoextend policy.",
        discussion: """
            A long-running service (thinsr-monitor.service), one per host. It waits for device-mapper \
            events (a pool crossing the low water mark its table sets from the threshold, running out of \
            space, being resumed) and also looks at every pool each --interval seconds. When a pool's data \
            or metadata use reaches the SR's --autoextend-threshold (thinsr-set), it grows the pool from the \
            volume group's free space by --autoextend-step (or by what there is, with a warning), as \
            thinsr-extend does; from --warning-threshold it warns. Warnings and actions go to the system \
            journal and to stderr, once per crossing; on a xapi host they are also raised as xapi \
            messages on the SR (xe message-create: THINSR_POOL_WARNING priority 3, THINSR_POOL_STUCK 2, \
            THINSR_POOL_GROWN 5), which XenCenter and Xen Orchestra show as alerts. A pool that fills anyway follows its --on-full \
            policy; queued writes complete once the pool has grown. A second monitor is refused; a killed \
            monitor leaves the pools as they were, and the next start catches up. --once looks once and \
            exits (for cron, or to check the policy).
            """)
    public static let examples = [("thinsr-monitor", "Run in the foreground (as the systemd unit does)."),
                                  ("thinsr-monitor --once --json", "Look at every pool once and print what was done.")]
    public static let extraExitStatuses: [(Int32, String)] = []

    @Option(help: ArgumentHelp("Seconds between looks when no event comes (1-3600).", valueName: "seconds"))
    var interval: Int = 5
    @Flag(help: "Look at every pool once, then exit.") var once = false
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func checkArguments() throws(ThinError) {
        guard (1...3600).contains(interval) else {
            throw .init(.invalidArgument, "--interval \(interval) is out of range; give 1 to 3600 seconds")
        }
    }

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let quiet = once && output.json
        let job = MonitorJob(host: host, interval: interval, once: once) { message in
            if !quiet { Console.err("thinsr-monitor: \(message)") }
        }
        let (looks, firstFailure) = try await job.run()
        if once && output.json { Console.printJSON(looks.map(MonitorJSON.init)) }
        if once, let firstFailure { throw firstFailure }
        return 0
    }
}

struct MonitorJSON: Encodable {
    var sr: String
    var name: String
    var data_percent: Int
    var metadata_percent: Int
    var level: String
    var grown_bytes: UInt64
    var message: String?

    var error: String?

    init(_ look: MonitorLook) {
        switch look {
        case .watched(let report): self.init(report)
        case .failed(let uuid, let name, let failure): self.init(failed: uuid, name: name, failure)
        }
    }

    init(failed uuid: String, name: String, _ failure: ThinError) {
        sr = uuid
        self.name = name
        data_percent = 0
        metadata_percent = 0
        level = "error"
        grown_bytes = 0
        error = failure.message
    }

    init(_ report: PoolWatchReport) {
        sr = report.uuid
        name = report.name
        data_percent = report.dataPercent
        metadata_percent = report.metadataPercent
        level = report.level.rawValue
        grown_bytes = report.grownBytes
        message = report.message
    }
}
