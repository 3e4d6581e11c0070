import ArgumentParser
import ThinCore
#if canImport(Glibc)
import Glibc
#endif

/// Every tool, in the order `--help` and the README list them.
public let allTools: [any ToolCommand.Type] = [
    SRCreate.self, SRAttach.self, SRDetach.self, SRDestroy.self, SRStat.self, SRList.self,
    VDICreate.self, VDIDestroy.self, VDIStat.self, VDIList.self, VDIAttach.self, VDIDetach.self,
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
            return await tool.main(Array(arguments.dropFirst()))
        }
        let rest = Array(arguments.dropFirst())
        if let first = rest.first, let tool = allTools.first(where: { $0.toolName == first }) {
            return await tool.main(Array(rest.dropFirst()))
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
            exit(64)
        }
    }

    private static func exitOnError(_ body: () throws -> Void) {
        do { try body() } catch {
            Console.err("thinsr: \(error)")
            exit(1)
        }
    }
}

extension ToolCommand {
    /// The per-tool entry points call this, so they need only import ThinCommands.
    public static func launch() async { await main() }
}
