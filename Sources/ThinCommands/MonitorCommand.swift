public import ArgumentParser
import FoundationEssentials
public import ThinCore
import ThinDeviceMapper
import ThinTools

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
            journal and to stderr, once per crossing. A pool that fills anyway follows its --on-full \
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
        CancelSignals.install()
        let instance = try MonitorInstance()
        defer { withExtendedLifetime(instance) {} }
        if !once { log(.info, "watching every attached SR (interval \(interval) s)") }
        var reports: [MonitorJSON] = []
        while CancelSignals.received == nil {
            // Armed before the look: an event during it wakes the wait at once.
            let events = once ? nil : DeviceMapperEvents.arm()
            let attached = AttachedSR.attachedSummaries(host: host)
            SRMetrics.removeStale(attached: Set(attached.map(\.uuid)))
            for summary in attached where CancelSignals.received == nil {
                do {
                    let sr = try AttachedSR.open(summary.uuid, for: .write, host: host)
                    defer { sr.close() }
                    let report = try await sr.watchPool()
                    sr.publishMetrics()
                    if let message = report.message {
                        log(report.level == .normal ? .info : report.level == .grown ? .notice : .warning, message)
                    }
                    reports.append(MonitorJSON(report))
                } catch where error.code == .srNotAttached || error.code == .srDoesNotExist {
                    continue   // detached since it was listed
                } catch {
                    log(.error, "SR \(summary.uuid): cannot watch its pool: \(error.message)")
                }
            }
            if once { break }
            let milliseconds = Int32(interval * 1000)
            if let events {
                _ = events.wait(milliseconds: milliseconds)
            } else {
                // No event support: sleep in short steps so a stop is quick.
                for _ in 0..<(interval * 10) where CancelSignals.received == nil {
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
        if once && output.json { Console.printJSON(reports) }
        if !once { log(.info, "stopped") }
        return 0
    }

    private func log(_ priority: SystemLog.Priority, _ message: String) {
        SystemLog.write(priority, message)
        if !(once && output.json) { Console.err("thinsr-monitor: \(message)") }
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
