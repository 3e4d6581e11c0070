import FoundationEssentials
import ThinDeviceMapper

/// Where thinsr keeps its run-time state and device links.
public enum Paths {
    /// Overridable for tests; production uses /run and /dev.
    public static var runRoot: String { environment("THINSR_RUN_DIR") ?? "/run/thinsr" }
    public static var deviceRoot: String { environment("THINSR_DEV_DIR") ?? "/dev/thinsr" }
    /// What this host remembers across boots that is not SR state: where it
    /// last exported each volume (the default base of an incremental export).
    public static var stateRoot: String { environment("THINSR_STATE_DIR") ?? "/var/lib/thinsr" }
    /// The SRs' lock files: on tmpfs beside, never inside, their catalog mounts.
    static var lockRoot: String { "\(runRoot)/locks" }
    /// Answers of costly probes, kept for this boot (`ProbeCache`).
    static var probeCache: String { "\(runRoot)/probes" }
    /// Taken while a free /dev/nbdN is chosen and connected, by thinsr and
    /// by the nbd scheme script alike; root's own, never world-writable /run/lock.
    static var nbdLock: String { "\(lockRoot)/nbd.lock" }

    /// The pool monitor's instance lock and its pid (one monitor per host).
    static var monitorLock: String { "\(lockRoot)/monitor" }
    static var monitorPidFile: String { "\(runRoot)/monitor.pid" }
    /// What `thinvdi-serve` started as process `pid`: the pid file it writes
    /// unless told where, nbdkit's log, and the URI file clients wait for.
    public static func servePidFile(_ pid: Int32) -> String { "\(runRoot)/serve-\(pid).pid" }
    public static func serveLog(_ pid: Int32) -> String { "\(runRoot)/serve-\(pid).log" }
    public static func serveURIFile(_ pid: Int32) -> String { "\(runRoot)/serve-\(pid).uri" }
    /// Where this host remembers its last export of each volume of an SR.
    static func exportRecord(sr: UUID, volume: UUID) -> String {
        "\(stateRoot)/exports/\(sr.lowercased)/\(volume.lowercased)"
    }
    /// Where rrdd reads plugin metrics (THINSR_METRICS_DIR in tests).
    static var metricsDirectory: String { environment("THINSR_METRICS_DIR") ?? "/dev/shm/metrics" }

    static func environment(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The node of LVM's `<vg>-<lv>` device (LVM doubles each `-` inside either name).
    static func mapperPath(group: String, volume: String) -> String {
        DmName(lvmGroup: group, volume: volume).path
    }
}
