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
    /// Taken while a free /dev/nbdN is chosen and connected, by thinsr and
    /// by the nbd scheme script alike; root's own, never world-writable /run/lock.
    static var nbdLock: String { "\(lockRoot)/nbd.lock" }

    static func environment(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The node of LVM's `<vg>-<lv>` device (LVM doubles each `-` inside either name).
    static func mapperPath(group: String, volume: String) -> String {
        DmName(lvmGroup: group, volume: volume).path
    }
}
