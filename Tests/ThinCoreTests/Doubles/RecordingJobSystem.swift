import Synchronization
@testable import ThinTools
@testable import ThinCore

/// A job-system double: engines and servers answer as a test sets them up
/// (an exit status, messages, progress fractions), a hook runs while one
/// "runs" (to look at the lease, cancel, or start a second job), and every
/// call and every descriptor held is recorded.
final class RecordingJobSystem: JobSystem {
    struct State {
        var calls: [String] = []
        var missing: Set<String> = []
        var exitStatus: Int32 = 0
        var messages = ""
        var fractions: [Double] = []
        /// Bytes standard input holds (nil: as many as asked for).
        var standardInputBytes: UInt64?
        var zeroFailure: ThinError?
        var holdFailure: ThinError?
        var held: Set<Int32> = []
        var nextDescriptor: Int32 = 100
        var arguments: [String] = []
        /// Descriptors `receiveDescriptor` hands out, in order.
        var passed: [(message: String, descriptor: Int32)] = []
    }

    let state = Mutex(State())
    /// Runs once, inside the next engine, server, copy or zeroing.
    private let hook = Mutex<(@Sendable () async -> Void)?>(nil)

    var calls: [String] { state.withLock { $0.calls } }
    var held: Set<Int32> { state.withLock { $0.held } }
    var lastArguments: [String] { state.withLock { $0.arguments } }

    func whileRunning(_ body: @escaping @Sendable () async -> Void) { hook.withLock { $0 = body } }

    private func runHook() async {
        let body = hook.withLock { hook in
            defer { hook = nil }
            return hook
        }
        await body?()
    }

    func nbdkitFilters() async -> [String] {
        state.withLock { $0.missing.contains("nbdkit-filters") || $0.missing.contains("nbdkit") ? [] : ["extentlist", "limit"] }
    }

    func writeExtents(of device: String, runs: [ExportExtents.Run], size: UInt64, to target: String,
                      progress: (UInt64) -> Void, stop: () -> Bool) throws(ThinError) {
        state.withLock { $0.calls.append("write extents \(device) -> \(target)") }
        if stop() { throw ThinError(.cancelled, "export cancelled") }
        progress(runs.filter { $0.kind == .data }.reduce(0) { $0 + $1.length })
    }

    func path(of program: Program) -> String? {
        state.withLock { $0.missing.contains(program.name) ? nil : "/usr/bin/\(program.name)" }
    }

    func runEngine(_ program: Program, _ arguments: [String], progressOn stream: ExternalCommand.ProgressStream,
                   progress: @escaping @Sendable (Double) -> Void) async throws(ExternalCommandError) -> ExternalCommandResult {
        let fractions = state.withLock { state in
            state.calls.append("engine \(program.name)")
            state.arguments = arguments
            return state.fractions
        }
        await runHook()
        for fraction in fractions { progress(fraction) }
        return state.withLock { ExternalCommandResult(exitStatus: $0.exitStatus, standardOutput: "", standardError: $0.messages) }
    }

    func runServer(_ program: Program, _ arguments: [String], readyFile: String,
                   ready: @escaping @Sendable () -> Void) async throws(ExternalCommandError) -> Int32 {
        state.withLock { state in
            state.calls.append("server \(program.name)")
            state.arguments = arguments
        }
        ready()
        await runHook()
        return state.withLock { $0.exitStatus }
    }

    func copyStandardInput(toDevice device: String, limit: UInt64,
                           progress: (UInt64) -> Void) throws(ThinError) -> UInt64 {
        let bytes = state.withLock { state in
            state.calls.append("copy stdin \(device) \(limit)")
            return min(state.standardInputBytes ?? limit, limit)
        }
        progress(bytes)
        return bytes
    }

    func zero(_ device: String, from: UInt64, to: UInt64, progress: (UInt64) -> Void,
              stop: () -> Bool) throws(ThinError) {
        let failure = state.withLock { state in
            state.calls.append("zero \(device) \(from) \(to)")
            return state.zeroFailure
        }
        if let failure { throw failure }
        if stop() { throw ThinError(.cancelled, "zeroing cancelled") }
        progress(to - from)
    }

    func blockDeviceSize(_ path: String) -> UInt64? { nil }

    func holdDevice(_ device: String) throws(ThinError) -> Int32 {
        let (failure, descriptor) = state.withLock { state in
            state.calls.append("hold \(device)")
            state.nextDescriptor += 1
            if state.holdFailure == nil { state.held.insert(state.nextDescriptor) }
            return (state.holdFailure, state.nextDescriptor)
        }
        if let failure { throw failure }
        return descriptor
    }

    func releaseDevice(_ descriptor: Int32) {
        state.withLock { state in
            state.calls.append("release \(descriptor)")
            state.held.remove(descriptor)
        }
    }

    func pause(milliseconds: UInt32) { state.withLock { $0.calls.append("pause \(milliseconds)") } }

    func listen(at path: String) throws(ThinError) -> Int32 {
        state.withLock { state in
            state.calls.append("listen \(path)")
            state.nextDescriptor += 1
            return state.nextDescriptor
        }
    }

    /// Hands out the descriptors a test queued, then runs the hook (which may cancel).
    func receiveDescriptor(on listening: Int32, timeout: Int32) throws(ThinError) -> (message: String, descriptor: Int32)? {
        state.withLock { state in
            state.calls.append("receive \(listening)")
            guard !state.passed.isEmpty else { return nil }
            return state.passed.removeFirst()
        }
    }

    func serveConnection(_ program: Program, _ arguments: [String], descriptor: Int32) throws(ExternalCommandError) -> Int32 {
        state.withLock { state in
            state.calls.append("serve \(program.name) on \(descriptor)")
            state.arguments = arguments
            state.nextDescriptor += 1
            return state.nextDescriptor
        }
    }

    func hasEnded(_ child: Int32) -> Bool { false }
    func stopChildren(_ children: [Int32]) { state.withLock { $0.calls.append("stop " + children.map(String.init).joined(separator: ",")) } }
    func closeDescriptor(_ descriptor: Int32) { state.withLock { $0.calls.append("close \(descriptor)") } }
}

/// Progress as a job reports it: every call, in order.
final class RecordingProgress: JobProgress {
    let events = Mutex<[String]>([])
    func begin(_ operation: String, total: UInt64) { events.withLock { $0.append("begin \(operation) \(total)") } }
    func update(done: UInt64) { events.withLock { $0.append("update \(done)") } }
    func finish() { events.withLock { $0.append("finish") } }
    var recorded: [String] { events.withLock { $0 } }
}
