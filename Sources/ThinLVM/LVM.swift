internal import CLVM2Cmd
import Synchronization
import ThinTools
import ThinTrace
#if canImport(Glibc)
import Glibc
#endif

/// A failed LVM command: the command (already validated, so safe to show) and
/// the error lines LVM printed.
public struct LVMError: Error, Equatable, CustomStringConvertible {
    public var command: String
    public var messages: [String]

    public init(command: String, messages: [String]) {
        self.command = command
        self.messages = messages
    }

    public var description: String {
        let detail = messages.last.map { ": \($0)" } ?? ""
        return "lvm \(command) failed\(detail)"
    }
}

/// One word of an LVM command line. Every word is validated when it is made,
/// so no caller-supplied string reaches LVM's command-line parser unchecked.
public struct LVMArgument: Equatable, Sendable, CustomStringConvertible {
    public let text: String

    /// Options and fixed words written by this library (e.g. `--yes`).
    public init(option: StaticString) {
        text = option.description
    }

    /// `local/extra_system_ids=["<id>"]` for `--config`: lets one command see
    /// a VG another host owns (the takeover). The id is checked against the
    /// characters LVM allows in system IDs.
    public init(extraSystemID id: String) throws(LVMValidationError) {
        guard LVMNames.isValidSystemID(id) else { throw LVMValidationError(what: "system ID", value: id) }
        text = "local/extra_system_ids=[\"\(id)\"]"
    }

    /// A value this library built from validated parts; refuses anything outside
    /// LVM's own name/path character set.
    public init(validated value: String) throws(LVMValidationError) {
        guard !value.isEmpty, value.utf8.count <= 4096,
              value.unicodeScalars.allSatisfy({ LVMNames.argumentCharacters.contains($0) })
        else { throw LVMValidationError(what: "argument", value: value) }
        text = value
    }

    public var description: String { text }
}

public struct LVMValidationError: Error, Equatable, CustomStringConvertible {
    public var what: String
    public var value: String
    public var description: String { "invalid \(what) \"\(value)\" for LVM" }
}

/// LVM's naming rules (lvm(8) "VALID NAMES", tags in lvm(8) "TAGS").
public enum LVMNames {
    static let nameCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+_.-".unicodeScalars)
    static let tagCharacters = nameCharacters.union("/=!:&#".unicodeScalars)
    /// LVM keeps only these characters in a system ID (lvmsystemid(7)).
    public static func isValidSystemID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128 && id.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || ".-_+".unicodeScalars.contains($0)
        }
    }

    static let argumentCharacters = tagCharacters.union(",@%".unicodeScalars)
    /// Substrings LVM reserves for its own sub-LVs.
    static let reservedSubstrings = ["_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_mimage", "_mlog",
                                     "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdo", "_vorigin",
                                     "_wcorig"]

    public static func isValidVGName(_ name: String) -> Bool {
        isValidName(name) && name != "lvm"
    }

    public static func isValidLVName(_ name: String) -> Bool {
        isValidName(name) && !name.hasPrefix("snapshot") && !name.hasPrefix("pvmove")
            && !reservedSubstrings.contains(where: name.contains)
    }

    public static func isValidTag(_ tag: String) -> Bool {
        !tag.isEmpty && tag.utf8.count <= 1024 && !tag.hasPrefix("-")
            && tag.unicodeScalars.allSatisfy(tagCharacters.contains)
    }

    /// Device paths we pass to LVM: absolute, no `..`, LVM-safe characters only.
    public static func isValidDevicePath(_ path: String) -> Bool {
        path.hasPrefix("/dev/") && !path.split(separator: "/").contains("..")
            && path.unicodeScalars.allSatisfy(tagCharacters.contains) && path.utf8.count <= 4096
    }

    private static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 127 && name != "." && name != ".." && !name.hasPrefix("-")
            && name.unicodeScalars.allSatisfy(nameCharacters.contains)
    }
}

/// LVM through liblvm2cmd: one in-process command interpreter, reused across
/// calls. liblvm2cmd is not reentrant, so calls are serialized. The library is
/// loaded on first use (see the CLVM2Cmd module map). Where no liblvm2cmd can
/// be loaded (or `THINSR_LVM=command` asks for it), the same command lines
/// run through the host's `lvm` program, one process each: what it prints on
/// standard output is read as the library's printed lines, and its error
/// lines are the command's messages, so reports and errors read the same.
public final class LVM: Sendable {
    public static let shared = LVM()

    /// How this host's LVM is driven.
    public enum Backend: Sendable, Equatable, CustomStringConvertible {
        /// liblvm2cmd, loaded in this process (by this soname or path).
        case library(String)
        /// The `lvm` program at this path; `forced` when THINSR_LVM=command asked for it.
        case command(String, forced: Bool)

        public var description: String {
            switch self {
            case .library(let name): return "liblvm2cmd (\(name))"
            case .command(let path, let forced):
                return "the lvm command (\(path)): " + (forced ? "THINSR_LVM=command" : "no liblvm2cmd can be loaded")
            }
        }
    }

    /// `THINSR_LVM=command`: the lvm command even where liblvm2cmd loads (the
    /// kernel suite runs both; and a way round a library that misbehaves).
    public static var commandForced: Bool { getenv("THINSR_LVM").map { String(cString: $0) } == "command" }

    /// The backend a command run now would use, probed without keeping
    /// anything loaded (the host report); nil when the host has neither.
    public static var hostBackend: Backend? {
        if !commandForced, let name = libraryName { return .library(name) }
        return Program.lvm.path.map { .command($0, forced: commandForced) }
    }

    /// The three liblvm2cmd functions we call, resolved with dlsym.
    private struct Library {
        typealias Initialise = @convention(c) () -> UnsafeMutableRawPointer?
        typealias Run = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?) -> Int32
        typealias SetLog = @convention(c) (lvm2_log_fn_t?) -> Void
        var initialise: Initialise
        var run: Run
        var setLog: SetLog

        /// LVM 2.03 (Debian 12), 2.02 (XCP-ng 8.3's lvm2-libs), then the development link.
        static let sonames = ["liblvm2cmd.so.2.03", "liblvm2cmd.so.2.02", "liblvm2cmd.so"]
        /// Looked in by path too: the release's private loader knows only its own
        /// directory and Debian's, not CentOS's /usr/lib64 (when ld.so.cache misses it).
        static let directories = ["/usr/lib64", "/lib64", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib"]
        static var candidates: [String] { sonames + directories.flatMap { dir in sonames.map { "\(dir)/\($0)" } } }

        static func load() -> Result<Library, LVMError> {
            for name in candidates {
                guard let handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL) else { continue }
                guard let initialise = dlsym(handle, "lvm2_init"), let run = dlsym(handle, "lvm2_run"),
                      let setLog = dlsym(handle, "lvm2_log_fn") else { break }
                return .success(Library(initialise: unsafeBitCast(initialise, to: Initialise.self),
                                        run: unsafeBitCast(run, to: Run.self),
                                        setLog: unsafeBitCast(setLog, to: SetLog.self)))
            }
            let detail = dlerror().map { String(cString: $0) } ?? "not found"
            return .failure(LVMError(command: "(load)", messages: [
                "cannot load liblvm2cmd (\(detail)) and no lvm command was found; install lvm2 (lvm2-libs on XCP-ng)"]))
        }
    }

    /// Where liblvm2cmd is looked for, in order.
    public static var libraryCandidates: [String] { Library.candidates }

    /// The liblvm2cmd this host has (the first candidate that loads), for the host report.
    public static var libraryName: String? {
        Library.candidates.first { name in
            guard let handle = dlopen(name, RTLD_LAZY | RTLD_LOCAL) else { return false }
            dlclose(handle)
            return true
        }
    }

    /// What runs the commands, once chosen.
    private enum Engine {
        case library(Library, UnsafeMutableRawPointer)
        case command(Program)
    }

    private struct State: @unchecked Sendable {
        var engine: Engine?
    }
    private let state = Mutex(State())
    /// Set by tests: the program to drive instead of probing the host.
    private let commandProgram: Program?

    private init() { commandProgram = nil }

    /// LVM driven through the program at `path` (tests: a stand-in `lvm`).
    init(commandAt path: String) { commandProgram = Program.at(path) }

    /// The library unless THINSR_LVM=command; the `lvm` program where the library cannot be loaded.
    private func chooseEngine() -> Result<Engine, LVMError> {
        // LVM complains about inherited descriptors (e.g. a VM's console ports);
        // the command closes them itself, the library leaves them.
        setenv("LVM_SUPPRESS_FD_WARNINGS", "1", 0)
        // Where the host keeps a master configuration (XCP-ng: dom0's default one
        // has metadata_read_only = 1), thinsr writes with it, as sm does; the
        // lvm command inherits it from this process's environment.
        if let master = LVMConfiguration.masterDirectory { setenv("LVM_SYSTEM_DIR", master, 1) }
        if let commandProgram { return .success(.command(commandProgram)) }
        let loaded = Self.commandForced ? nil : Library.load()
        if case .success(let library)? = loaded {
            library.setLog { level, _, _, _, message in
                guard let message else { return }
                LVMLog.record(level: level, message: String(cString: message))
            }
            guard let handle = library.initialise() else {
                return .failure(LVMError(command: "(load)", messages: ["liblvm2cmd failed to initialise"]))
            }
            return .success(.library(library, handle))
        }
        if Program.lvm.path != nil { return .success(.command(Program.lvm)) }
        if case .failure(let error)? = loaded { return .failure(error) }
        return .failure(LVMError(command: "(load)", messages: [
            "THINSR_LVM=command but no lvm command was found; install lvm2"]))
    }

    /// Runs one command (e.g. `["lvcreate", ...]`) and returns what it printed.
    @discardableResult
    public func run(_ arguments: [LVMArgument]) throws(LVMError) -> [String] {
        let command = arguments.map(\.text).joined(separator: " ")
        let start = ContinuousClock.now
        let result: Result<[String], LVMError> = state.withLock { state in
            if state.engine == nil {
                switch chooseEngine() {
                case .failure(let error): return .failure(error)
                case .success(let engine): state.engine = engine
                }
            }
            switch state.engine {
            case .library(let library, let handle)?:
                LVMLog.reset()
                let status = library.run(handle, command)
                let (printed, errors) = LVMLog.take()
                // lvm2_run returns LVM's ECMD_PROCESSED (1) on success.
                return status == 1 ? .success(printed) : .failure(LVMError(command: command, messages: errors))
            case .command(let program)?:
                return Self.runCommand(program, arguments.map(\.text), command: command)
            case nil:
                return .failure(LVMError(command: command, messages: ["no LVM backend"]))
            }
        }
        Trace.step("lvm", command, outcome: (try? result.get()) == nil ? "failed" : "ok", since: start)
        return try result.get()
    }

    /// One command through the `lvm` program: its standard output is what the
    /// library would have printed; its error lines (warnings dropped, as the
    /// library's log drops them, unless nothing else was said) are the messages.
    static func runCommand(_ program: Program, _ words: [String], command: String) -> Result<[String], LVMError> {
        let result: ExternalCommandResult
        do { result = try ExternalCommand.runCollecting(program, words) } catch {
            return .failure(LVMError(command: command, messages: [error.standardError]))
        }
        let printed = result.standardOutput.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if result.exitStatus == 0 { return .success(printed.last == "" ? Array(printed.dropLast()) : printed) }
        let said = result.standardError.split(separator: "\n").map { String($0.drop(while: \.isWhitespace)) }
            .filter { !$0.isEmpty }
        let errors = said.filter { !$0.hasPrefix("WARNING:") }
        let messages = errors.isEmpty ? said : errors
        return .failure(LVMError(command: command, messages: messages.isEmpty
            ? ["\(program.name) exited with status \(result.exitStatus)"] : messages))
    }
}

/// Which LVM configuration thinsr's LVM commands read.
public enum LVMConfiguration {
    /// XCP-ng's lvm2 installs `/etc/lvm/master/lvm.conf` (metadata writable) beside a
    /// read-only default, and its writers set `LVM_SYSTEM_DIR` to it.
    /// `THINSR_LVM_MASTER_DIR` names another (the kernel suite's XCP-ng shape).
    public static var masterDirectory: String? {
        let directory = getenv("THINSR_LVM_MASTER_DIR").map { String(cString: $0) } ?? "/etc/lvm/master"
        return access(directory + "/lvm.conf", R_OK) == 0 ? directory : nil
    }
}

/// What liblvm2cmd printed during the current command.
enum LVMLog {
    private static let lines = Mutex<(printed: [String], errors: [String])>(([], []))
    private static let debug = getenv("THINSR_DEBUG") != nil

    static func reset() { lines.withLock { $0 = ([], []) } }
    static func take() -> ([String], [String]) { lines.withLock { ($0.printed, $0.errors) } }

    static func record(level: Int32, message: String) {
        if debug { writeStandardError("liblvm2cmd[\(level)]: \(message)\n") }
        lines.withLock { lines in
            switch level {
            case LVM2_LOG_PRINT: lines.printed.append(message)
            case ...LVM2_LOG_ERROR where level > LVM2_LOG_SUPPRESS: lines.errors.append(message)
            default: break
            }
        }
    }
}

/// Writes to fd 2 directly: stdio's `stderr` is shared mutable state to Swift 6.
func writeStandardError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
