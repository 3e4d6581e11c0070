import CThinShims

/// Device-mapper's event notification, as stratisd uses it: arm the
/// control node (`DmName.controlPath`), then poll it; it wakes at the next event of any
/// device (a thin pool crossing its low water mark, running out of space,
/// being resumed). Arming before a look at the pools means no event between
/// that look and the wait is missed.
public struct DeviceMapperEvents: ~Copyable {
    private let descriptor: Int32

    /// Arms the control device; nil where the kernel lacks DM_DEV_ARM_POLL
    /// (before 4.13): the caller then polls status on its interval alone.
    public static func arm() -> DeviceMapperEvents? {
        let descriptor = CThinShims_dm_arm_events(DmName.controlPath)
        return descriptor >= 0 ? DeviceMapperEvents(descriptor: descriptor) : nil
    }

    private init(descriptor: Int32) { self.descriptor = descriptor }

    /// Waits for an event, `milliseconds`, or `wake` (a descriptor a signal
    /// handler makes readable) whichever comes first; true when an event came.
    public consuming func wait(milliseconds: Int32, wake: Int32 = -1) -> Bool {
        let result = CThinShims_dm_wait_events(descriptor, milliseconds, wake)
        discard self
        return result == 1
    }

    deinit { _ = CThinShims_dm_wait_events(descriptor, 0, -1) }
}

/// The system log (the journal on systemd hosts), for a daemon's warnings and actions.
public enum SystemLog {
    public enum Priority: Int32, Sendable {
        case error = 3, warning = 4, notice = 5, info = 6
    }

    public static func write(_ priority: Priority, _ message: String, ident: String = "thinsr-monitor") {
        CThinShims_syslog(priority.rawValue, ident, message)
    }
}
