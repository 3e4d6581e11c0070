import ArgumentParser
import FoundationEssentials
import Synchronization
import ThinCore
#if canImport(Glibc)
import Glibc
#endif

/// How a long copy reports progress on stderr: a bar for people, one JSON
/// object per line for scripts, or nothing.
/// `--progress`, declared once for every tool with a long operation.
struct ProgressOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Progress on stderr: bar, json or none (a bare --progress: bar; default: a bar on a "
                               + "terminal).", valueName: "mode"))
    var progress: ProgressMode?
}

enum ProgressMode: String, ExpressibleByArgument, CaseIterable, Sendable {
    case bar, json, none

    /// A bare `--progress` means a bar; the argument parser needs its value
    /// spelled out, so `launch` rewrites it.
    static func expandBareFlag(_ arguments: [String]) -> [String] {
        var result: [String] = []
        for (index, argument) in arguments.enumerated() {
            if argument == "--" { return result + arguments[index...] }
            let next = index + 1 < arguments.count ? arguments[index + 1] : nil
            if argument == "--progress", next.flatMap(ProgressMode.init(rawValue:)) == nil {
                result.append("--progress=bar")
            } else {
                result.append(argument)
            }
        }
        return result
    }
}

/// A job's progress on stderr: bytes done of a total (0 when unknown), rate, ETA.
final class ProgressReporter: JobProgress {
    private struct State {
        var operation = ""
        var total: UInt64 = 0
        var start = ContinuousClock.now
        var done: UInt64 = 0
        var lastShown: ContinuousClock.Instant?
    }

    let mode: ProgressMode
    private let state = Mutex(State())

    /// `mode` nil: a bar when stderr is a terminal, else nothing.
    init(mode: ProgressMode?) {
        self.mode = mode ?? (isatty(2) == 1 ? .bar : .none)
    }

    func begin(_ operation: String, total: UInt64) {
        state.withLock { $0 = State(operation: operation, total: total) }
    }

    func update(done: UInt64) {
        guard mode != .none else { return }
        let now = ContinuousClock.now
        let line: String? = state.withLock { state in
            state.done = max(state.done, done)
            let interval: Duration = mode == .bar ? .milliseconds(200) : .seconds(1)
            if let last = state.lastShown, now - last < interval, state.done != state.total { return nil }
            state.lastShown = now
            return render(state, now: now)
        }
        if let line { emit(line) }
    }

    /// The closing line: the bar ends with a newline; JSON says it is done.
    func finish() {
        guard mode != .none else { return }
        let line: String = state.withLock { state in
            if state.total > 0 { state.done = state.total }
            return render(state, now: .now)
        }
        emit(line)
        if mode == .bar { Console.errRaw("\n") }
    }

    private func emit(_ line: String) {
        if mode == .bar { Console.errRaw("\r" + line) } else { Console.err(line) }
    }

    private func render(_ state: State, now: ContinuousClock.Instant) -> String {
        let (operation, total, done) = (state.operation, state.total, state.done)
        let elapsed = max(Double((now - state.start).components.attoseconds) / 1e18
                          + Double((now - state.start).components.seconds), 0.001)
        let rate = Double(done) / elapsed
        let remaining = total > done && rate > 0 ? Double(total - done) / rate : 0
        if mode == .json {
            let percent = total > 0 ? Double(done) * 100 / Double(total) : 0
            return "{\"operation\":\"\(operation)\",\"done\":\(done),\"total\":\(total),"
                + "\"percent\":\(Int(percent)),\"rate\":\(UInt64(rate)),\"eta_seconds\":\(Int(remaining.rounded(.up)))}"
        }
        let rateText = "\(ByteSize.format(UInt64(rate)))/s"
        guard total > 0 else { return "\(operation)  \(ByteSize.format(done))  \(rateText)\u{1B}[K" }
        let width = 30
        let filled = Int(Double(width) * Double(done) / Double(total))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let seconds = Int(remaining.rounded(.up))
        let eta = seconds >= 3600 ? "\(seconds / 3600):\(pad(seconds / 60 % 60)):\(pad(seconds % 60))"
            : "\(seconds / 60):\(pad(seconds % 60))"
        return "\(operation) [\(bar)] \(Int(Double(done) * 100 / Double(total)))%  \(ByteSize.format(done)) / "
            + "\(ByteSize.format(total))  \(rateText)  ETA \(eta)\u{1B}[K"
    }

    private func pad(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
}

/// A tool that runs a job for a long time: it holds the SR lock only while
/// the job sets up and tears down, never while it copies, so the SR's other
/// operations go on meanwhile.
protocol TransferTool: ToolCommand {}

extension TransferTool {
    public static var access: ToolAccess { .write }
}

extension ToolCommand {
    /// Where a job of this tool runs: the SR named on the command line, its
    /// progress on stderr as `--progress` asks, cancelled by SIGINT or SIGTERM.
    func jobContext(sr: String, host: Host, progress: ProgressMode?) -> JobContext {
        JobContext(sr: sr, host: host, progress: ProgressReporter(mode: progress), cancellation: .signals)
    }
}
