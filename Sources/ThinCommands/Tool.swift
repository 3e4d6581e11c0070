public import ArgumentParser
public import ThinCore
import ThinTrace
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// What a tool does with SRs, declared once per tool: `launch` checks root and
/// opens what the access needs, so no tool does either itself.
public enum ToolAccess: Sendable {
    /// Lists, creates, attaches, detaches, destroys or checks whole SRs.
    case lifecycle
    /// Reads one attached SR (WAL snapshot reads, no lock).
    case read
    /// Changes one attached SR, holding its lock for the whole run.
    case write
}

/// Options every tool has.
public struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print the result (or the error) as one JSON value on standard output.")
    public var json = false

    @Flag(name: [.short, .long],
          help: "Print each device-mapper call, LVM command and helper program on stderr, with its time (as THINSR_LOG=debug does).")
    public var verbose = false

    public init() {}
}

/// A tool: parses its arguments, is given what its access needs, prints the
/// result. Errors become one line on stderr (and a JSON error object with
/// `--json`) and the exit status the man page documents for their code.
public protocol ToolCommand: AsyncParsableCommand {
    var output: OutputOptions { get }
    static var access: ToolAccess { get }
    /// Every tool drives LVM or device-mapper, so every tool needs root.
    static var needsRoot: Bool { get }
    /// Lines for the man page's EXAMPLES section: (command, what it does).
    static var examples: [(String, String)] { get }
    /// Exit statuses beyond the shared error table, for the man page.
    static var extraExitStatuses: [(Int32, String)] { get }
    /// Refuses combinations of arguments the parser cannot judge alone (after
    /// it has refused unknown options and extra arguments).
    func checkArguments() throws(ThinError)
    /// Does the work; returns the exit status (0 but for `extraExitStatuses`).
    func perform(host: Host) async throws(ThinError) -> Int32
}

/// A tool that works on whole SRs.
public protocol LifecycleTool: ToolCommand {
    func execute(_ lifecycle: SRLifecycle) async throws(ThinError)
}

/// A tool that works inside one attached SR, which `launch` opens once.
public protocol SRTool: ToolCommand {
    var reference: String { get }
    func execute(on sr: AttachedSR) async throws(ThinError)
}

extension ToolCommand {
    public static var needsRoot: Bool { true }
    public static var extraExitStatuses: [(Int32, String)] { [] }
    public func checkArguments() throws(ThinError) {}
    static var toolName: String { configuration.commandName ?? "\(self)" }

    public mutating func run() async throws {
        let status: Int32
        do {
            try checkArguments()
            if Self.needsRoot { try System.requireRoot(Self.toolName) }
            status = try await perform(host: .live)
        } catch {
            Console.report(error, tool: Self.toolName, json: output.json)
            throw ExitCode(error.code.exitStatus)
        }
        if status != 0 { throw ExitCode(status) }
    }
}

extension LifecycleTool {
    public static var access: ToolAccess { .lifecycle }

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        try await execute(SRLifecycle(host: host))
        return 0
    }
}

/// An SR tool that names just the SR.
public protocol WholeSRTool: SRTool {
    var target: SRArgument { get }
}

/// An SR tool that names a volume in it.
public protocol VolumeTool: SRTool {
    var volume: VolumeArgument { get }
}

extension WholeSRTool {
    public var reference: String { target.sr }
}

extension VolumeTool {
    public var reference: String { volume.target.sr }
}

extension SRTool {
    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let sr = try AttachedSR.open(reference, for: Self.access == .write ? .write : .read, host: host)
        defer { sr.close() }
        try await execute(on: sr)
        return 0
    }
}

/// Every tool, in the order `--help` and the README list them.
public let allTools: [any ToolCommand.Type] = [
    SRCreate.self, SRAttach.self, SRDetach.self, SRDestroy.self, SRStat.self, SRList.self, SRSet.self,
    SRExtend.self, SRCheckCommand.self, SRMonitor.self, HostCheck.self,
    VDICreate.self, VDIDestroy.self, VDIStat.self, VDIList.self, VDIAttach.self, VDIDetach.self,
    VDISnapshot.self, VDIClone.self, VDIRevert.self, VDICompose.self, VDIResize.self, VDISet.self, VDIUnset.self, VDITree.self,
    VDIChanged.self, VDIDataDestroy.self, VDIExport.self, VDIImport.self, VDIServe.self,
    VDIIntroduce.self, VDIForget.self, VDIHydrate.self, VDIMirror.self, VDIMirrorStat.self, VDIMirrorStop.self,
]

/// The multi-call binary's dispatcher: `argv[0]`'s basename picks the tool;
/// `thinsr TOOL ARGS...` works too, and `thinsr --list` lists the tools.
public enum MultiCall {
    public static func main() async {
        let arguments = ProcessArguments.current
        let invokedAs = String(arguments.first?.split(separator: "/").last ?? "thinsr")
        if let tool = allTools.first(where: { $0.toolName == invokedAs }) {
            return await tool.launch(Array(arguments.dropFirst()))
        }
        let rest = Array(arguments.dropFirst())
        if let first = rest.first, let tool = allTools.first(where: { $0.toolName == first }) {
            return await tool.launch(Array(rest.dropFirst()))
        }
        switch rest.first {
        case "--list":
            for tool in allTools { Console.out(tool.toolName) }
        case "generate-manual" where rest.count == 2:
            exitOnError { try ManualPage.writeAll(to: rest[1]) }
        case "generate-completions" where rest.count == 2:
            exitOnError { try CompletionScripts.writeAll(to: rest[1]) }
        default:
            Console.err("thinsr: run as one of the tools (a link named after it), or as thinsr TOOL ARGS...")
            Console.err("tools: " + allTools.map { $0.toolName }.joined(separator: " "))
            Glibc.exit(64)
        }
    }

    private static func exitOnError(_ body: () throws -> Void) {
        do { try body() } catch {
            Console.err("thinsr: \(error)")
            Glibc.exit(1)
        }
    }
}

extension ToolCommand {
    /// Every tool starts here. Help, completion and dump-help requests behave
    /// as ArgumentParser makes them; a usage error (parsing, or `validate`)
    /// becomes one line on stderr (and a JSON error with `--json`) and exit 64.
    public static func launch(_ arguments: [String]? = nil) async {
        let arguments = arguments ?? Array(ProcessArguments.current.dropFirst())
        let timing = WorkTimer(tool: toolName)
        defer { timing.report() }
        if let level = Trace.levelFromEnvironment() { Trace.enable(level: level) }
        do {
            var command = try parse(ProgressMode.expandBareFlag(arguments))
            if command.output.verbose { Trace.enable(level: .debug) }
            try await command.run()
        } catch {
            timing.report()
            let code = exitCode(for: error)
            if code == .success || error is ExitCode { exit(withError: error) }
            let usage = ThinError(.invalidArgument, "\(message(for: error)); see \(toolName) --help")
            Console.report(usage, tool: toolName, json: arguments.contains("--json"))
            Glibc.exit(ErrorCode.invalidArgument.exitStatus)
        }
    }
}

/// With THINSR_TIMING set, a tool reports on stderr how long its own work took
/// (from entry to exit, without process start-up), so benchmarks can split
/// start-up from the operation.
final class WorkTimer {
    private let tool: String
    private let start: ContinuousClock.Instant?
    private var reported = false

    init(tool: String) {
        self.tool = tool
        start = getenv("THINSR_TIMING") != nil ? ContinuousClock.now : nil
    }

    func report() {
        guard let start, !reported else { return }
        reported = true
        let elapsed = ContinuousClock.now - start
        let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        Console.err("thinsr-timing: \(tool) \(micros)")
    }
}
