public import ArgumentParser
import FoundationEssentials
public import ThinCore
import ThinDeviceMapper
import ThinTools
#if canImport(Glibc)
import Glibc
#endif

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
        CancelSignals.install()
        let instance = try MonitorInstance()
        defer { withExtendedLifetime(instance) {} }
        if !once { log(.info, "watching every attached SR (interval \(interval) s)") }
        var reports: [MonitorJSON] = []
        var firstFailure: ThinError?
        var lastFailure: [String: String] = [:]   // logged once until it changes
        while CancelSignals.received == nil {
            // Armed before the look: an event during it wakes the wait at once.
            let events = once ? nil : DeviceMapperEvents.arm()
            SRMetrics.removeStale(host: host)
            var retrySoon = false
            for summary in AttachedSR.attachedSummaries(host: host) where CancelSignals.received == nil {
                do {
                    guard let report = try await look(at: summary.uuid, host: host) else {
                        retrySoon = true   // a writer holds the SR: look again in a second, never wait behind it
                        continue
                    }
                    lastFailure[summary.uuid] = nil
                    if let message = report.message {
                        log(report.level == .normal ? .info : report.level == .grown ? .notice : .warning, message)
                        await XapiAlerts.raise(report, message: message)
                    }
                    if once { reports.append(MonitorJSON(report)) }
                } catch where error.code == .srNotAttached || error.code == .srDoesNotExist {
                    continue   // detached since it was listed
                } catch {
                    firstFailure = firstFailure ?? error
                    if once { reports.append(MonitorJSON(failed: summary.uuid, name: summary.name, error)) }
                    if lastFailure[summary.uuid] != error.message {
                        lastFailure[summary.uuid] = error.message
                        log(.error, "SR \(summary.uuid): cannot watch its pool: \(error.message)")
                    }
                }
            }
            if once || CancelSignals.received != nil { break }
            let milliseconds = Int32((retrySoon ? 1 : interval) * 1000)
            if let events {
                _ = events.wait(milliseconds: milliseconds, wake: CancelSignals.wakeDescriptor)
            } else {
                // No event support: sleep in short steps so a stop is quick.
                for _ in 0..<(milliseconds / 100) where CancelSignals.received == nil {
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
        if once && output.json { Console.printJSON(reports) }
        if !once { log(.info, "stopped") }
        if once, let firstFailure { throw firstFailure }
        return 0
    }

    /// One look at one SR: without its lock first; with it, if it is free,
    /// when the pool needs to grow. nil: the lock was busy.
    private func look(at uuid: String, host: Host) async throws(ThinError) -> PoolWatchReport? {
        let reader = try AttachedSR.open(uuid, for: .read, host: host)
        let report: PoolWatchReport
        do {
            report = try await reader.administration.watchPool(grow: false)
            reader.administration.publishMetrics()
        } catch {
            reader.close()
            throw error
        }
        reader.close()
        guard report.needsGrowth else { return report }
        guard let writer = try AttachedSR.openForWritingIfFree(uuid, host: host) else { return nil }
        defer { writer.close() }
        let grown = try await writer.administration.watchPool(grow: true)
        writer.administration.publishMetrics()
        return grown
    }

    private func log(_ priority: SystemLog.Priority, _ message: String) {
        SystemLog.write(priority, message)
        if !(once && output.json) { Console.err("thinsr-monitor: \(message)") }
    }
}

/// The monitor's warnings as xapi messages (alerts in XenCenter and Xen
/// Orchestra): SMAPIv3 has no call for them, so on a xapi host the monitor
/// runs `xe message-create` against the SR (xapi's SR uuid is the SR's own).
/// Elsewhere there is no `xe` and the journal is the only record.
/// THINSR_XE names another program (the kernel suite records the calls).
enum XapiAlerts {
    static let program: String? = {
        if let chosen = getenv("THINSR_XE").map({ String(cString: $0) }) { return chosen.isEmpty ? nil : chosen }
        return ["/opt/xensource/bin/xe", "/usr/bin/xe"].first { ExternalCommand.locate(.at($0)) != nil }
    }()

    /// xapi's priorities: 1 is the most urgent, 5 informational.
    static func priority(_ level: PoolWatchReport.Level) -> Int? {
        switch level {
        case .normal: return nil
        case .grown: return 5
        case .warning: return 3
        case .stuck: return 2
        }
    }

    static func raise(_ report: PoolWatchReport, message: String) async {
        guard let program, let priority = priority(report.level) else { return }
        let name = "THINSR_POOL_\(report.level.rawValue.uppercased())"
        // Bounded: a xapi that does not answer must not stop the monitor's watch.
        let arguments = ["10", program, "message-create", "name=\(name)", "body=\(message)", "priority=\(priority)",
                         "sr-uuid=\(report.uuid)"]
        do {
            let result = try await ExternalCommand.run(Program.timeout, arguments)
            if result.exitStatus != 0 {
                SystemLog.write(.warning, "xe message-create for SR \(report.uuid) failed (exit \(result.exitStatus)): "
                                + (result.standardError.split(whereSeparator: \.isNewline).last.map(String.init) ?? ""))
            }
        } catch {
            SystemLog.write(.warning, "cannot run xe message-create: \(error)")
        }
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
