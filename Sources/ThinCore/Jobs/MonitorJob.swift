import ThinDeviceMapper
import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// One look of the pool monitor at one SR.
public enum MonitorLook: Sendable {
    case watched(PoolWatchReport)
    case failed(uuid: String, name: String, ThinError)
}

/// The pool monitor as a job: every attached SR's pool looked at (without
/// its lock; with it, when it is free and the pool must grow), then a wait
/// for a device-mapper event or the interval, until a cancel signal; or
/// one look with `once`. What it logs goes to the system log and `echo`.
public struct MonitorJob: Sendable {
    public let host: Host
    public let interval: Int
    public let once: Bool
    let echo: @Sendable (String) -> Void

    public init(host: Host, interval: Int, once: Bool, echo: @escaping @Sendable (String) -> Void) {
        self.host = host
        self.interval = interval
        self.once = once
        self.echo = echo
    }

    /// Runs until stopped; returns the looks of a `once` run (its first
    /// failure is thrown after them, through `firstFailure`).
    public func run() async throws(ThinError) -> (looks: [MonitorLook], firstFailure: ThinError?) {
        CancelSignals.install()
        let instance = try MonitorInstance()
        defer { withExtendedLifetime(instance) {} }
        if !once { log(.info, "watching every attached SR (interval \(interval) s)") }
        var state = RoundState()
        while CancelSignals.received == nil {
            // Armed before the look: an event during it wakes the wait at once.
            let events = once ? nil : DeviceMapperEvents.arm()
            SRMetrics.removeStale(host: host)
            let retrySoon = await lookAtEach(&state)
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
        if !once { log(.info, "stopped") }
        return (state.looks, state.firstFailure)
    }

    private struct RoundState {
        var looks: [MonitorLook] = []
        var firstFailure: ThinError?
        /// Logged once until it changes.
        var lastFailure: [String: String] = [:]
    }

    /// One look at every attached SR; true when one was busy (look again soon).
    private func lookAtEach(_ state: inout RoundState) async -> Bool {
        var retrySoon = false
        for summary in AttachedSR.attachedSummaries(host: host) where CancelSignals.received == nil {
            do {
                guard let report = try await look(at: summary.uuid) else {
                    retrySoon = true   // a writer holds the SR: look again in a second, never wait behind it
                    continue
                }
                state.lastFailure[summary.uuid] = nil
                if let message = report.message {
                    log(report.level == .normal ? .info : report.level == .grown ? .notice : .warning, message)
                    await XapiAlerts.raise(report, message: message)
                }
                if once { state.looks.append(.watched(report)) }
            } catch where error.code == .srNotAttached || error.code == .srDoesNotExist {
                continue   // detached since it was listed
            } catch {
                state.firstFailure = state.firstFailure ?? error
                if once { state.looks.append(.failed(uuid: summary.uuid, name: summary.name, error)) }
                if state.lastFailure[summary.uuid] != error.message {
                    state.lastFailure[summary.uuid] = error.message
                    log(.error, "SR \(summary.uuid): cannot watch its pool: \(error.message)")
                }
            }
        }
        return retrySoon
    }

    /// One look at one SR: without its lock first; with it, if it is free,
    /// when the pool needs to grow. nil: the lock was busy.
    private func look(at uuid: String) async throws(ThinError) -> PoolWatchReport? {
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
        echo(message)
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
