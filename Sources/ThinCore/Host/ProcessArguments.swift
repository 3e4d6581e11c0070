internal import CThinShims

/// The process's arguments, as the C library passed them to the program
/// (`argv`), not as /proc/self/cmdline says: the release must start in a bare
/// root without /proc (make dist's check runs it in an empty chroot).
public enum ProcessArguments {
    public static var current: [String] {
        guard let arguments = CThinShims_arguments() else { return CommandLine.arguments }
        return (0..<Int(CThinShims_argument_count())).compactMap { arguments[$0].map { String(cString: $0) } }
    }
}
