public import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The operations log a sysadmin turns on with `-v` (or THINSR_LOG=debug):
/// each device-mapper call, LVM command line and helper program the tool
/// runs, with how long it took, on stderr. Off by default, so a tool's stderr
/// carries only its own one-line error.
public enum Trace {
    private static let logger = Mutex<Logger?>(nil)

    /// Turns the log on at `level`, writing to standard error.
    public static func enable(level: Logger.Level) {
        var log = Logger(label: "thinsr") { StreamLogHandler.standardError(label: $0) }
        log.logLevel = level
        logger.withLock { $0 = log }
    }

    /// THINSR_LOG's level (trace, debug, info, notice, warning, error, critical),
    /// or nil when it is unset or names no level.
    public static func levelFromEnvironment() -> Logger.Level? {
        guard let value = getenv("THINSR_LOG") else { return nil }
        return Logger.Level(rawValue: String(cString: value).lowercased())
    }

    /// Logs one step at debug level: `layer` (dm, lvm, exec), what ran, its outcome and time.
    /// `what` and `outcome` are built only when the log is on: this runs on every call.
    public static func step(_ layer: String, _ what: @autoclosure () -> String, outcome: @autoclosure () -> String,
                            since start: ContinuousClock.Instant) {
        guard let log = logger.withLock({ $0 }), log.logLevel <= .debug else { return }
        let elapsed = start.duration(to: .now)
        log.debug("\(layer) \(what()): \(outcome()) (\(milliseconds(elapsed)))")
    }

    /// "12.3 ms", without Foundation's formatting.
    static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let tenths = seconds * 10_000 + attoseconds / 100_000_000_000_000
        return "\(tenths / 10).\(tenths % 10) ms"
    }
}
