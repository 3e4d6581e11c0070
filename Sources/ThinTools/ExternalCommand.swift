import Subprocess
import SystemPackage
import ThinTrace
#if canImport(Glibc)
import Glibc
#endif

/// One line of what a program printed, for a one-line error: its first (or,
/// with `last`, its last) non-empty line, at most 300 characters.
public func messageLine(_ text: String, last: Bool = false, otherwise fallback: String = "no message") -> String {
    let lines = text.split(whereSeparator: \.isNewline)
    guard let line = last ? lines.last : lines.first else { return fallback }
    return String(line.prefix(300))
}

/// A program that ran and did not succeed, or could not be started.
public struct ExternalCommandError: Error, Equatable, CustomStringConvertible {
    public var program: String
    public var arguments: [String]
    public var exitStatus: Int32?
    public var standardError: String
    /// The host has no such program (the message names its package).
    public var programMissing = false

    public init(program: String, arguments: [String], exitStatus: Int32?, standardError: String) {
        self.program = program
        self.arguments = arguments
        self.exitStatus = exitStatus
        self.standardError = standardError
    }

    public var description: String {
        let status = exitStatus.map { "exited with status \($0)" } ?? "could not be run"
        let detail = standardError.split(separator: "\n").last.map { ": \($0)" } ?? ""
        return "\(program) \(status)\(detail)"
    }
}

/// What a program printed and how it exited.
public struct ExternalCommandResult: Sendable {
    public var exitStatus: Int32
    public var standardOutput: String
    public var standardError: String
}

/// Runs the external programs the suite depends on (thin-provisioning-tools,
/// e2fsprogs, util-linux) with an argument vector, never through a shell.
public enum ExternalCommand {
    /// sbin directories are searched too: tools run from a user's PATH still find thin_check.
    static let searchPath = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"]

    public static func locate(_ program: Program) -> String? {
        let name = program.name
        if name.hasPrefix("/") { return access(name, X_OK) == 0 ? name : nil }
        let pathDirectories = (getenv("PATH").map { String(cString: $0) } ?? "")
            .split(separator: ":").map(String.init)
        for directory in pathDirectories + searchPath + program.alsoIn where access("\(directory)/\(name)", X_OK) == 0 {
            return "\(directory)/\(name)"
        }
        return nil
    }

    /// `program`'s path, or the error that names it and its package.
    static func requirePath(_ program: Program, _ arguments: [String]) throws(ExternalCommandError) -> String {
        guard let path = locate(program) else {
            var error = ExternalCommandError(program: program.name, arguments: arguments, exitStatus: nil,
                                             standardError: "\(program.name) not found; install \(program.package)")
            error.programMissing = true
            throw error
        }
        return path
    }

    /// Runs `program` and returns its output whatever its exit status.
    public static func run(_ program: Program, _ arguments: [String],
                           outputLimit: Int = 16 << 20) async throws(ExternalCommandError) -> ExternalCommandResult {
        let path = try requirePath(program, arguments)
        let start = ContinuousClock.now
        do {
            let result = try await Subprocess.run(
                .path(FilePath(path)), arguments: Arguments(arguments),
                output: .string(limit: outputLimit), error: .string(limit: 1 << 20))
            let status: Int32
            switch result.terminationStatus {
            case .exited(let code): status = code
            case .signaled(let signal): status = 128 + signal
            }
            Trace.step("exec", ([path] + arguments).joined(separator: " "), outcome: "exit \(status)", since: start)
            return ExternalCommandResult(exitStatus: status, standardOutput: result.standardOutput ?? "",
                                         standardError: result.standardError)
        } catch {
            Trace.step("exec", ([path] + arguments).joined(separator: " "), outcome: "failed to start: \(error)", since: start)
            throw ExternalCommandError(program: program.name, arguments: arguments, exitStatus: nil,
                                       standardError: "\(error)")
        }
    }

    /// Runs `program` and throws unless it exits 0.
    @discardableResult
    public static func check(_ program: Program, _ arguments: [String]) async throws(ExternalCommandError) -> String {
        let result = try await run(program, arguments)
        guard result.exitStatus == 0 else {
            throw ExternalCommandError(program: program.name, arguments: arguments, exitStatus: result.exitStatus,
                                       standardError: result.standardError)
        }
        return result.standardOutput
    }

    /// Runs `program` to its end, synchronously, and returns what it printed
    /// on each stream and its exit status whatever it is (for a seam whose
    /// callers cannot await: LVM driven through its `lvm` command). Standard
    /// input is /dev/null.
    public static func runCollecting(_ program: Program, _ arguments: [String],
                                     outputLimit: Int = 16 << 20) throws(ExternalCommandError) -> ExternalCommandResult {
        let path = try requirePath(program, arguments)
        let start = ContinuousClock.now
        func failure(_ what: String, _ code: Int32) -> ExternalCommandError {
            ExternalCommandError(program: program.name, arguments: arguments, exitStatus: nil,
                                 standardError: "\(what): \(String(cString: strerror(code)))")
        }
        var output: [Int32] = [-1, -1], errors: [Int32] = [-1, -1]
        guard pipe(&output) == 0 else { throw failure("pipe", errno) }
        guard pipe(&errors) == 0 else {
            let code = errno
            output.forEach { close($0) }
            throw failure("pipe", code)
        }
        // Close-on-exec at once: a program another thread starts meanwhile must not keep a write end open.
        for end in output + errors { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        var readEnds = [output[0], errors[0]]
        defer { readEnds.filter { $0 >= 0 }.forEach { close($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
        let (spawned, pid) = spawn(path, arguments, actions: &actions)
        close(output[1])
        close(errors[1])
        guard spawned == 0 else {
            Trace.step("exec", ([path] + arguments).joined(separator: " "), outcome: "failed to start", since: start)
            throw failure("cannot start \(path)", spawned)
        }
        // Both streams are drained together: a program blocked writing one would never close the other.
        var collected: [[UInt8]] = [[], []]
        var buffer = [UInt8](repeating: 0, count: 65536)
        while readEnds.contains(where: { $0 >= 0 }) {
            var polled = readEnds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&polled, nfds_t(polled.count), -1) >= 0 || errno == EINTR else { break }
            for index in polled.indices where polled[index].fd >= 0 && polled[index].revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(polled[index].fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    if collected[index].count < outputLimit { collected[index] += buffer[0..<count] }
                } else if count == 0 || errno != EINTR {
                    close(readEnds[index])
                    readEnds[index] = -1
                }
            }
        }
        let code = waitForExit(pid)
        Trace.step("exec", ([path] + arguments).joined(separator: " "), outcome: "exit \(code)", since: start)
        return ExternalCommandResult(exitStatus: code, standardOutput: String(decoding: collected[0], as: UTF8.self),
                                     standardError: String(decoding: collected[1], as: UTF8.self))
    }

    /// Runs `program` to its end, synchronously, its output discarded (for
    /// undoing steps from places that cannot await: a release in a `defer`).
    /// Returns its exit status, or nil if it could not be started.
    @discardableResult
    public static func runToEnd(_ program: Program, _ arguments: [String]) -> Int32? {
        guard let path = locate(program) else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let start = ContinuousClock.now
        let (spawned, pid) = spawn(path, arguments, actions: &actions)
        guard spawned == 0 else { return nil }
        let code = waitForExit(pid)
        Trace.step("exec", ([path] + arguments).joined(separator: " "), outcome: "exit \(code)", since: start)
        return code
    }

    /// posix_spawn of `path` with `arguments` (argv[0] is the path) in this
    /// process's environment: its result (0 or an errno) and the child's pid.
    static func spawn(_ path: String, _ arguments: [String], actions: inout posix_spawn_file_actions_t,
                      attributes: UnsafePointer<posix_spawnattr_t>? = nil) -> (result: Int32, pid: pid_t) {
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, attributes, argv, environ)
        return (result, pid)
    }

    /// Waits for the child `pid` and returns its exit status as a shell reports it (128 + N for signal N).
    static func waitForExit(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return shellStatus(fromWait: status)
    }

    /// A wait status as a shell reports it: the exit code, or 128 + N when signal N ended the process.
    static func shellStatus(fromWait status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
