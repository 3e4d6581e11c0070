import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// A test-only switch proving crash consistency. Every mutating operation
/// marks its steps with `point`; THINSR_FAULT=<step> makes the process kill
/// itself with SIGKILL there, and THINSR_FAULT_TRACE=<file> appends each step
/// reached to the file, so tests learn an operation's steps from the code.
/// THINSR_FAULT_PAUSE=<step>:<milliseconds> sleeps there instead, so a test
/// can catch a fast operation in the middle (a cancel during zeroing); a
/// cancel signal ends the pause at once, so tests can pause long enough for
/// a slow machine without waiting it out.
enum FaultInjection {
    static let target = Paths.environment("THINSR_FAULT")
    static let trace = Paths.environment("THINSR_FAULT_TRACE")
    static let pause: (step: String, milliseconds: UInt32)? = {
        guard let text = Paths.environment("THINSR_FAULT_PAUSE"), let colon = text.lastIndex(of: ":"),
              let milliseconds = UInt32(text[text.index(after: colon)...]) else { return nil }
        return (String(text[..<colon]), milliseconds)
    }()

    static func point(_ name: String) {
        if let trace {
            let descriptor = open(trace, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            if descriptor >= 0 {
                var line = name + "\n"
                line.withUTF8 { bytes in _ = write(descriptor, bytes.baseAddress, bytes.count) }
                close(descriptor)
            }
        }
        if target == name { kill(getpid(), SIGKILL) }
        if let pause, pause.step == name { sleepUnlessCancelled(milliseconds: pause.milliseconds) }
    }

    /// Waits on the cancel signals' wake pipe, which any thread's handler
    /// writes to (a plain sleep on this thread would miss a signal that
    /// reached another one).
    private static func sleepUnlessCancelled(milliseconds: UInt32) {
        let wake = CancelSignals.wakeDescriptor
        guard wake >= 0 else { usleep(milliseconds * 1000); return }
        var waited: UInt32 = 0
        while waited < milliseconds, CancelSignals.received == nil {
            let slice = min(milliseconds - waited, 100)
            var entry = pollfd(fd: wake, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, Int32(slice))
            waited += slice
        }
    }
}
