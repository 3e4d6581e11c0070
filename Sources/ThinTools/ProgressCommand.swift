import Subprocess
import Synchronization
import SystemPackage
import ThinTrace
#if canImport(Glibc)
import Glibc
#endif

/// The signal that asked this process to stop (0: none yet), and the process
/// group of the copy running now, which the handler stops with it.
private let receivedCancelSignal = Atomic<Int32>(0)
private let runningGroup = Atomic<Int32>(0)
/// The write end of a pipe the handler writes a byte to, so a poll that
/// includes the read end wakes at once whichever thread the signal reaches.
private let wakeWriter = Atomic<Int32>(-1)
private let wakeReader = Atomic<Int32>(-1)

/// SIGINT, SIGTERM and SIGHUP as a request to cancel: long copies (import,
/// export, serve) check for it between their steps and stop the engine they
/// run, then undo what they began. Engines run in their own process group,
/// so a terminal's Ctrl-C reaches them only through this handler, after
/// which the tool, not the engine, decides what is left behind.
public enum CancelSignals {
    public static func install() {
        // Initialise both globals here, not for the first time inside the handler.
        _ = receivedCancelSignal.load(ordering: .relaxed)
        _ = runningGroup.load(ordering: .relaxed)
        if wakeReader.load(ordering: .relaxed) < 0 {
            var ends: [Int32] = [-1, -1]
            // pipe2 needs _GNU_SOURCE: pipe, then the flags.
            if pipe(&ends) == 0 {
                for end in ends {
                    _ = fcntl(end, F_SETFD, FD_CLOEXEC)
                    _ = fcntl(end, F_SETFL, O_NONBLOCK)
                }
                wakeReader.store(ends[0], ordering: .relaxed)
                wakeWriter.store(ends[1], ordering: .relaxed)
            }
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signal in
            receivedCancelSignal.store(signal, ordering: .relaxed)
            let group = runningGroup.load(ordering: .relaxed)
            if group > 0 { kill(-group, SIGTERM) }
            let writer = wakeWriter.load(ordering: .relaxed)
            if writer >= 0 {
                var byte: UInt8 = 1
                _ = write(writer, &byte, 1)
            }
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        for signal in [SIGINT, SIGTERM, SIGHUP] { sigaction(signal, &action, nil) }
    }

    /// A descriptor that becomes readable when a cancel signal arrives (-1
    /// before `install`), for waits that poll.
    public static var wakeDescriptor: Int32 { wakeReader.load(ordering: .relaxed) }

    /// The signal received, if any.
    public static var received: Int32? {
        let signal = receivedCancelSignal.load(ordering: .relaxed)
        return signal == 0 ? nil : signal
    }

    fileprivate static func running(_ group: Int32) {
        runningGroup.store(group, ordering: .relaxed)
        if group > 0, received != nil { kill(-group, SIGTERM) }
    }
}

/// How far a copy engine says it is: qemu-img -p's "(12.34/100%)" and
/// nbdcopy --progress=FD's "12/100" lines.
public enum EngineProgress {
    /// The last fraction (0...1) in `text`, and the text minus progress tokens.
    public static func parse(_ text: String) -> (fraction: Double?, rest: String) {
        var fraction: Double?
        var rest: [Substring] = []
        for piece in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\r" || $0 == "\n" }) {
            let token = piece.trimmingSpaces
            if token.hasPrefix("("), token.hasSuffix("/100%)"),
               let value = Double(token.dropFirst().dropLast("/100%)".count)) {
                fraction = value / 100
            } else if token.hasSuffix("/100"), let value = Double(token.dropLast("/100".count)) {
                fraction = value / 100
            } else {
                rest.append(piece)
            }
        }
        return (fraction.map { min(max($0, 0), 1) }, rest.joined(separator: "\n"))
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}

extension ExternalCommand {
    /// Where an engine's progress arrives.
    public enum ProgressStream: Sendable {
        /// Standard output (qemu-img -p); standard error is collected.
        case standardOutput
        /// Standard error (nbdcopy --progress=2); standard output is this
        /// process's own (the data of an export to `-`).
        case standardError
    }

    /// Runs a copy engine in its own process group, reporting its progress
    /// to `progress` as it goes; SIGINT/SIGTERM stop it (see `CancelSignals`).
    /// Returns its exit status and what it printed besides progress.
    public static func runReportingProgress(
        _ program: Program, _ arguments: [String], progressOn stream: ProgressStream = .standardOutput,
        environment: [String: String] = [:], progress: @escaping @Sendable (Double) -> Void
    ) async throws(ExternalCommandError) -> ExternalCommandResult {
        let path = try requirePath(program, arguments)
        var options = PlatformOptions()
        options.processGroupID = 0
        let start = ContinuousClock.now
        let line = ([path] + arguments).joined(separator: " ")
        let env: Environment = environment.isEmpty ? .inherit
            : .inherit.updating(Dictionary(uniqueKeysWithValues: environment.map { (Environment.Key(rawValue: $0.key)!, Optional($0.value)) }))
        do {
            let status: TerminationStatus
            let messages: String
            switch stream {
            case .standardOutput:
                let result = try await Subprocess.run(
                    .path(FilePath(path)), arguments: Arguments(arguments), environment: env,
                    platformOptions: options, input: .none, output: .sequence, error: .string(limit: 1 << 20)
                ) { execution in
                    CancelSignals.running(execution.processIdentifier.value)
                    defer { CancelSignals.running(0) }
                    return try await drainProgress(execution.standardOutput, progress)
                }
                status = result.terminationStatus
                messages = result.standardError + result.closureResult
            case .standardError:
                let result = try await Subprocess.run(
                    .path(FilePath(path)), arguments: Arguments(arguments), environment: env,
                    platformOptions: options, input: .none,
                    output: .fileDescriptor(.standardOutput, closeAfterSpawningProcess: false), error: .sequence
                ) { execution in
                    CancelSignals.running(execution.processIdentifier.value)
                    defer { CancelSignals.running(0) }
                    return try await drainProgress(execution.standardError, progress)
                }
                status = result.terminationStatus
                messages = result.closureResult
            }
            let code: Int32
            switch status {
            case .exited(let value): code = value
            case .signaled(let signal): code = 128 + signal
            }
            Trace.step("exec", line, outcome: "exit \(code)", since: start)
            return ExternalCommandResult(exitStatus: code, standardOutput: "", standardError: messages)
        } catch {
            Trace.step("exec", line, outcome: "failed to start: \(error)", since: start)
            throw ExternalCommandError(program: program.name, arguments: arguments, exitStatus: nil, standardError: "\(error)")
        }
    }

    /// Reads an engine's output to its end: progress tokens to `progress`,
    /// everything else returned.
    private static func drainProgress(_ output: SubprocessOutputSequence,
                                      _ progress: (Double) -> Void) async throws -> String {
        var rest = ""
        for try await buffer in output {
            let (fraction, text) = EngineProgress.parse(buffer.withUnsafeBytes { String(decoding: $0, as: UTF8.self) })
            if let fraction { progress(fraction) }
            if !text.isEmpty { rest += text + "\n" }
        }
        return rest
    }

    /// Runs a long-lived program (a server) in its own process group with
    /// this process's standard output and error, until it exits or a cancel
    /// signal stops it; `ready` is called once the file `readyFile` (the
    /// server's own pid file, written when it accepts connections) appears.
    public static func runForwardingSignals(_ program: Program, _ arguments: [String], ready readyFile: String,
                                            ready: @escaping @Sendable () -> Void) async throws(ExternalCommandError) -> Int32 {
        let path = try requirePath(program, arguments)
        var options = PlatformOptions()
        options.processGroupID = 0
        do {
            let result = try await Subprocess.run(
                .path(FilePath(path)), arguments: Arguments(arguments), platformOptions: options, input: .none,
                output: .fileDescriptor(.standardOutput, closeAfterSpawningProcess: false),
                error: .fileDescriptor(.standardError, closeAfterSpawningProcess: false)
            ) { execution in
                let pid = execution.processIdentifier.value
                CancelSignals.running(pid)
                // Until the server is ready or gone (kill 0 fails once it has been reaped or is a zombie we wait on).
                while access(readyFile, F_OK) != 0 {
                    if kill(pid, 0) != 0 || CancelSignals.received != nil { return }
                    if childExited(pid) { return }
                    try? await Task.sleep(for: .milliseconds(20))
                }
                ready()
            }
            CancelSignals.running(0)
            switch result.terminationStatus {
            case .exited(let value): return value
            case .signaled(let signal): return 128 + signal
            }
        } catch {
            CancelSignals.running(0)
            throw ExternalCommandError(program: program.name, arguments: arguments, exitStatus: nil, standardError: "\(error)")
        }
    }

    /// Whether `pid`, our child, has exited (without reaping it).
    private static func childExited(_ pid: Int32) -> Bool {
        var info = siginfo_t()
        guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 else { return true }
        return info._sifields._sigchld.si_pid == pid
    }

    /// Starts `path` in a new session, detached from this process (stdin on
    /// /dev/null, stdout and stderr into these files), and returns its pid
    /// without waiting for it.
    public static func spawnDetached(_ path: String, _ arguments: [String], standardOutput: String,
                                     standardError: String) throws(ExternalCommandError) -> Int32 {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(0x80))  // POSIX_SPAWN_SETSID (glibc >= 2.26; hidden behind _GNU_SOURCE)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, standardOutput, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, standardError, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let (result, pid) = ExternalCommand.spawn(path, arguments, actions: &actions, attributes: &attributes)
        guard result == 0 else {
            throw ExternalCommandError(program: path, arguments: arguments, exitStatus: nil,
                                       standardError: String(cString: strerror(result)))
        }
        return pid
    }

    /// Starts `program` with `descriptor` as its standard input and output
    /// (a connection it serves, as `nbdkit -s` does) in its own process
    /// group, standard error inherited; returns its pid without waiting.
    public static func spawnServing(_ program: Program, _ arguments: [String],
                                    descriptor: Int32) throws(ExternalCommandError) -> Int32 {
        let path = try requirePath(program, arguments)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, descriptor, 0)
        posix_spawn_file_actions_adddup2(&actions, descriptor, 1)
        let (result, pid) = ExternalCommand.spawn(path, arguments, actions: &actions, attributes: &attributes)
        Trace.step("exec", ([path] + arguments).joined(separator: " "),
                   outcome: result == 0 ? "started as \(pid)" : "failed to start", since: .now)
        guard result == 0 else {
            throw ExternalCommandError(program: program.name, arguments: arguments, exitStatus: nil,
                                       standardError: String(cString: strerror(result)))
        }
        return pid
    }

    /// The exit status of a child `spawnDetached` started, once it has exited (reaping it).
    public static func exitStatus(ofChild pid: Int32) -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return ExternalCommand.shellStatus(fromWait: status)
    }
}
