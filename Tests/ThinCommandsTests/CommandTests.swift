import ArgumentParser
import Testing
import ThinCore
@testable import ThinCommands
#if canImport(Glibc)
import Glibc
#endif

/// The repository root, from this file's path.
let repositoryRoot: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}()

func readText(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        if count == 0 { break }
        bytes += buffer[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

@Suite("man pages")
struct ManualPageTests {
    @Test("every tool's committed man page is what its definitions generate")
    func committedPagesAreCurrent() throws {
        for tool in allTools {
            let name = tool.toolName
            // The date line is the build's (SOURCE_DATE_EPOCH), so it is left out of the comparison.
            let undated = { (page: String?) in page?.split(separator: "\n").filter { !$0.hasPrefix(".Dd ") } }
            let committed = readText("\(repositoryRoot)/man/\(name).8")
            #expect(undated(committed) == undated(try ManualPage.render(tool)), "man/\(name).8 is stale: run make man")
        }
    }

    @Test("every option a tool accepts is documented, and nothing else")
    func optionsAgree() throws {
        for tool in allTools {
            let page = try ManualPage.render(tool)
            let accepted = Set(try ManualPage.optionNames(tool))
            #expect(accepted.contains("--json"), "\(tool.toolName) lacks --json")
            #expect(accepted.contains("--help"), "\(tool.toolName) lacks --help")
            for option in accepted {
                let macro = option.hasPrefix("--") ? "Fl -\(option.dropFirst(2))" : "Fl \(option.dropFirst())"
                #expect(page.contains(".It \(macro)") || page.contains(", \(macro)"),
                        "\(tool.toolName): \(option) missing from OPTIONS")
            }
            let documented = page.split(separator: "\n").filter { $0.hasPrefix(".It Fl") }
                .flatMap { $0.split(separator: " ").enumerated().filter { $0.offset > 0 }.map(\.element) }
                .enumerated().compactMap { _, word in word.hasPrefix("-") ? "-" + word : nil }
            for option in documented {
                #expect(accepted.contains(String(option)), "\(tool.toolName): man page documents unknown \(option)")
            }
        }
    }

    @Test("the date line is SOURCE_DATE_EPOCH's day, in mdoc's form")
    func date() {
        #expect(ManualPage.mdocDate(1_764_547_200) == "December 1, 2025")
        #expect(ManualPage.mdocDate(0) == "January 1, 1970")
    }

    @Test("pages have EXAMPLES, EXIT STATUS with every status, and SEE ALSO")
    func sections() throws {
        for tool in allTools {
            let page = try ManualPage.render(tool)
            for section in [".Sh NAME", ".Sh SYNOPSIS", ".Sh DESCRIPTION", ".Sh OPTIONS", ".Sh EXIT STATUS",
                            ".Sh EXAMPLES", ".Sh SEE ALSO"] {
                #expect(page.contains(section), "\(tool.toolName) lacks \(section)")
            }
            for status in Set(ErrorCode.allCases.map(\.exitStatus)) {
                #expect(page.contains(".It \(status)\n"), "\(tool.toolName) does not document exit status \(status)")
            }
            #expect(!tool.examples.isEmpty)
        }
    }
}

@Suite("completions")
struct CompletionTests {
    @Test("committed completion scripts are current, for bash, zsh and fish")
    func current() {
        for tool in allTools {
            for shell in CompletionScripts.shells {
                let path = "\(repositoryRoot)/completions/\(CompletionScripts.relativePath(shell, tool: tool.toolName))"
                #expect(readText(path) == tool.completionScript(for: shell), "\(path) is stale: run make completions")
            }
        }
    }
}

@Suite("argument parsing and error paths (no root, no kernel)")
struct ParsingTests {
    /// The parser refuses `arguments` with a one-line usage error (exit 64) naming the problem.
    func expectUsageError<T: ToolCommand>(_ type: T.Type, _ arguments: [String], containing text: String) {
        do {
            _ = try type.parse(arguments)
            Issue.record("\(type.toolName) accepted \(arguments)")
        } catch {
            let message = type.message(for: error)
            #expect(type.exitCode(for: error).rawValue == 64)
            #expect(message.contains(text), "\(message)")
            #expect(!message.contains("\n"), "\(message)")
        }
    }

    /// The tool parses `arguments` but refuses them before any work, with a one-line Invalid_argument.
    func expectRefusal<T: ToolCommand>(_ type: T.Type, _ arguments: [String], containing text: String) throws {
        let command = try type.parse(arguments)
        #expect { try command.checkArguments() } throws: { error in
            guard let error = error as? ThinError else { return false }
            return error.code == .invalidArgument && error.message.contains(text) && !error.message.contains("\n")
        }
    }

    @Test("thinsr-create needs exactly one of --device and --vg")
    func placement() throws {
        try expectRefusal(SRCreate.self, ["--name", "x"], containing: "--device DEV")
        try expectRefusal(SRCreate.self, ["--device", "/dev/loop0", "--vg", "vg0"], containing: "not both")
    }

    @Test("thinsr-create refuses a malformed uuid and bad sizes before touching anything")
    func createArguments() {
        expectUsageError(SRCreate.self, ["--uuid", "nope", "--vg", "v"], containing: "is not a uuid")
        expectUsageError(SRCreate.self, ["--vg", "v", "--pool-size", "10Q"], containing: "unknown suffix")
        expectUsageError(SRCreate.self, ["--vg", "v", "--block-size=-1"], containing: "block size \"-1\" is not a number")
    }

    @Test("thinvdi-create rejects bad sizes before looking up the SR", arguments: [
        ("10Q", "unknown suffix"), ("", "not a number"), ("-1", "not a number"), ("99999999T", "too large"),
    ])
    func sizes(size: String, text: String) {
        expectUsageError(VDICreate.self, ["sr", "--name", "n"] + (size.hasPrefix("-") ? ["--size=\(size)"] : ["--size", size]),
                         containing: text)
    }

    @Test("nothing to set, a pair without =, and no key to unset are refused before any work")
    func validation() throws {
        try expectRefusal(SRSet.self, ["sr"], containing: "nothing to set")
        try expectRefusal(VDISet.self, ["sr", "vdi"], containing: "nothing to set")
        expectUsageError(VDISet.self, ["sr", "vdi", "novalue"], containing: "is not KEY=VALUE")
        expectUsageError(VDIUnset.self, ["sr", "vdi"], containing: "<key>")
        expectUsageError(SRExtend.self, ["sr", "--size", "+ten"], containing: "not a number")
    }

    @Test("each tool declares its access: lifecycle tools take no open SR, the others one SR")
    func access() {
        let lifecycle = allTools.filter { $0.access == .lifecycle }.map { $0.toolName }
        #expect(Set(lifecycle) == ["thinsr-create", "thinsr-attach", "thinsr-detach", "thinsr-destroy", "thinsr-ls",
                                   "thinsr-check", "thinsr-monitor", "thinsr-host",
                                   // (A mirror operation names its SR: these open it from there, or read no SR at all.)
                                   "thinvdi-mirror-stat", "thinvdi-mirror-stop"])
        let readers = allTools.filter { $0.access == .read }.map { $0.toolName }
        #expect(Set(readers) == ["thinsr-stat", "thinvdi-stat", "thinvdi-ls", "thinvdi-tree", "thinvdi-changed"])
        #expect(allTools.allSatisfy { $0.needsRoot })
        // Jobs (copies, hydration) open their SR for setting up and tearing down only, never while they work.
        let transfers: Set = ["thinvdi-export", "thinvdi-import", "thinvdi-serve", "thinvdi-hydrate", "thinvdi-mirror"]
        for tool in allTools where tool.access != .lifecycle && !transfers.contains(tool.toolName) {
            #expect(tool is any SRTool.Type, "\(tool.toolName)")
        }
        for tool in allTools where transfers.contains(tool.toolName) {
            #expect(tool.access == .write && !(tool is any SRTool.Type), "\(tool.toolName)")
        }
    }

    @Test("missing required arguments are usage errors (exit 64)", arguments: [
        ([String](), "thinvdi-create"), (["sr"], "thinvdi-create"), (["sr", "--name", "x"], "thinvdi-create"),
    ])
    func missing(arguments: [String], tool: String) {
        #expect(throws: (any Error).self) { try VDICreate.parse(arguments) }
        do { _ = try VDICreate.parse(arguments) } catch { #expect(VDICreate.exitCode(for: error).rawValue == 64) }
    }

    @Test("unknown options are usage errors")
    func unknownOption() {
        for tool in allTools {
            do {
                _ = try tool.parseAsRoot(["--no-such-option"])
                Issue.record("\(tool.toolName) accepted --no-such-option")
            } catch {
                #expect(tool.exitCode(for: error).rawValue == 64)
            }
        }
    }

    @Test("every tool is a distinct, correctly named command")
    func names() {
        let names = allTools.map { $0.toolName }
        #expect(Set(names).count == names.count)
        #expect(names.allSatisfy { $0.hasPrefix("thinsr-") || $0.hasPrefix("thinvdi-") })
        // Every tool has its entry-point target, and every entry point is a tool.
        var entryPoints: [String] = []
        if let directory = opendir("\(repositoryRoot)/Sources") {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name.hasPrefix("thinsr-") || name.hasPrefix("thinvdi-") { entryPoints.append(name) }
            }
            closedir(directory)
        }
        #expect(entryPoints.sorted() == names.sorted())
    }

    @Test("error codes map to stable, distinct-by-kind exit statuses")
    func exitStatuses() {
        #expect(ErrorCode.invalidArgument.exitStatus == 64)
        #expect(ErrorCode.srDoesNotExist.exitStatus == 2 && ErrorCode.volumeDoesNotExist.exitStatus == 2)
        #expect(ErrorCode.volumeInUse.exitStatus == 3)
        #expect(ErrorCode.volumeIsTemplate.exitStatus == 7)
        // A tool's own statuses never reuse a shared one (130, a cancel, is the shared one itself).
        let shared = Set(ErrorCode.allCases.map(\.exitStatus))
        for tool in allTools {
            for (status, _) in tool.extraExitStatuses where status != ErrorCode.cancelled.exitStatus {
                #expect(!shared.contains(status), "\(tool.toolName)'s exit status \(status) is also a shared one")
            }
        }
        #expect(ErrorCode.permissionDenied.exitStatus == 77)
        #expect(ErrorCode.allCases.allSatisfy { $0.exitStatus != 0 })
    }

    @Test("a bare --progress means a bar; a spelled-out mode and words after -- are left alone")
    func bareProgress() {
        #expect(ProgressMode.expandBareFlag(["sr", "--progress", "f"]) == ["sr", "--progress=bar", "f"])
        #expect(ProgressMode.expandBareFlag(["--progress", "json", "f"]) == ["--progress", "json", "f"])
        #expect(ProgressMode.expandBareFlag(["--progress"]) == ["--progress=bar"])
        #expect(ProgressMode.expandBareFlag(["--", "--progress"]) == ["--", "--progress"])
    }

    @Test("transfer tools refuse impossible combinations before touching anything", arguments: [
        ["thinvdi-export", "sr", "v", "-", "--format", "qcow2"], ["thinvdi-export", "sr", "v", "-", "--base", "s"],
        ["thinvdi-export", "sr", "v", "out.vhd", "--base", "s"], ["thinvdi-export", "sr", "v", "o.qcow2", "--base-image", "b"],
        ["thinvdi-import", "sr", "--name", "n", "-"], ["thinvdi-import", "sr", "--name", "n", "--size", "1M", "--format", "qcow2", "-"],
        ["thinvdi-import", "sr", "--name", "n", "/nonexistent/image.qcow2"],
        ["thinvdi-serve", "sr", "v"], ["thinvdi-serve", "sr", "v", "--socket", "/tmp", "--port", "1"],
        ["thinvdi-serve", "sr", "v", "--socket", "/tmp"], ["thinvdi-serve", "sr", "v", "--port", "70000"],
        ["thinvdi-serve", "sr", "v", "--socket", "/tmp/none.sock", "--bind", "::"],
    ])
    func transferRefusals(_ words: [String]) throws {
        let tool = try #require(allTools.first { $0.toolName == words[0] })
        let command = try tool.parse(ProgressMode.expandBareFlag(Array(words.dropFirst())))
        #expect(throws: ThinError.self) { try command.checkArguments() }
    }
}
