import ArgumentParser
import ThinCore
import ThinTrace
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Every tool, in the order `--help` and the README list them.
public let allTools: [any ToolCommand.Type] = [
    SRCreate.self, SRAttach.self, SRDetach.self, SRDestroy.self, SRStat.self, SRList.self, SRSet.self,
    SRExtend.self, SRCheckCommand.self,
    VDICreate.self, VDIDestroy.self, VDIStat.self, VDIList.self, VDIAttach.self, VDIDetach.self,
    VDISnapshot.self, VDIClone.self, VDIRevert.self, VDIResize.self, VDISet.self, VDIUnset.self, VDITree.self,
]

extension ToolCommand {
    static var toolName: String { configuration.commandName ?? "\(self)" }
}

/// The multi-call binary's dispatcher: `argv[0]`'s basename picks the tool;
/// `thinsr TOOL ARGS...` works too, and `thinsr --list` lists the tools.
public enum MultiCall {
    public static func main() async {
        let arguments = CommandLine.arguments
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
    /// as ArgumentParser makes them; a usage error becomes one line on stderr
    /// (and a JSON error with `--json`) and exit status 64.
    public static func launch(_ arguments: [String]? = nil) async {
        let arguments = arguments ?? Array(CommandLine.arguments.dropFirst())
        let timing = WorkTimer(tool: toolName)
        defer { timing.report() }
        if let level = Trace.levelFromEnvironment() { Trace.enable(level: level) }
        do {
            var command = try parse(arguments)
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
    private let start: timespec?
    private var reported = false

    init(tool: String) {
        self.tool = tool
        if getenv("THINSR_TIMING") != nil {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            start = now
        } else {
            start = nil
        }
    }

    func report() {
        guard let start, !reported else { return }
        reported = true
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let micros = (now.tv_sec - start.tv_sec) * 1_000_000 + (now.tv_nsec - start.tv_nsec) / 1000
        Console.err("thinsr-timing: \(tool) \(micros)")
    }
}
