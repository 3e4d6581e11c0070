public import ThinTools
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a job reports how far it is: the command prints it (a bar, JSON
/// lines, or nothing); the job only counts.
public protocol JobProgress: Sendable {
    /// The job knows what it will do now: `total` bytes (0 when unknown).
    /// A job of two stages (zeroing, then an import) begins twice.
    func begin(_ operation: String, total: UInt64)
    /// Bytes done so far in the current stage.
    func update(done: UInt64)
    /// The stage is whole.
    func finish()
}

/// Progress nobody watches.
public struct SilentProgress: JobProgress {
    public init() {}
    public func begin(_ operation: String, total: UInt64) {}
    public func update(done: UInt64) {}
    public func finish() {}
}

/// How a job learns it should stop: between its steps it asks; an engine
/// it runs is stopped by the signal handler itself (see `CancelSignals`).
public struct JobCancellation: Sendable {
    private let requested: @Sendable () -> Bool

    public init(_ requested: @escaping @Sendable () -> Bool) { self.requested = requested }

    public var isRequested: Bool { requested() }

    /// SIGINT, SIGTERM or SIGHUP to this process (installs the handler).
    public static var signals: JobCancellation {
        CancelSignals.install()
        return JobCancellation { CancelSignals.received != nil }
    }

    /// Never cancelled.
    public static let never = JobCancellation { false }
}

/// A cancel a caller raises itself (a test, or a job that stops another).
public final class CancelToken: Sendable {
    private let raised = Atomic<Bool>(false)
    public init() {}
    public func cancel() { raised.store(true, ordering: .relaxed) }
    public var cancellation: JobCancellation { JobCancellation { [self] in raised.load(ordering: .relaxed) } }
}

/// What a job runs on the host besides the `Host` seam: the copy engines
/// and servers, the descriptor that keeps a device from being removed under
/// a copy, the stream copy and the zeroing. `LiveJobSystem` is this
/// machine's; host tests pass a recording double.
public protocol JobSystem: Sendable {
    /// A program's path, or nil when it is not installed.
    func path(of program: Program) -> String?
    /// Runs a copy engine until it exits, with its progress (0...1) as it goes.
    func runEngine(_ program: Program, _ arguments: [String], progressOn stream: ExternalCommand.ProgressStream,
                   progress: @escaping @Sendable (Double) -> Void) async throws(ExternalCommandError) -> ExternalCommandResult
    /// Runs a server until it exits or a cancel signal stops it; `ready`
    /// once `readyFile` appears. Returns its exit status.
    func runServer(_ program: Program, _ arguments: [String], readyFile: String,
                   ready: @escaping @Sendable () -> Void) async throws(ExternalCommandError) -> Int32
    /// Copies standard input onto `device` (at most `limit` bytes); returns the bytes read.
    func copyStandardInput(toDevice device: String, limit: UInt64,
                           progress: (UInt64) -> Void) throws(ThinError) -> UInt64
    /// Zeroes `[from, to)` of `device`, asking `stop` between pieces.
    func zero(_ device: String, from: UInt64, to: UInt64, progress: (UInt64) -> Void,
              stop: () -> Bool) throws(ThinError)
    /// A block device's size, or nil when `path` is none.
    func blockDeviceSize(_ path: String) -> UInt64?
    /// Opens `device` and keeps it open (its open count stops a plain detach).
    func holdDevice(_ device: String) throws(ThinError) -> Int32
    func releaseDevice(_ descriptor: Int32)
    /// Waits between two looks at a job running in the kernel.
    func pause(milliseconds: UInt32)
    /// Which of nbdkit's filters thinsr uses the host has (none without nbdkit).
    func nbdkitFilters() async -> [String]
    /// Writes `device`'s data runs into `target` without an engine (see `ExtentCopy`).
    func writeExtents(of device: String, runs: [ExportExtents.Run], size: UInt64, to target: String,
                      progress: (UInt64) -> Void, stop: () -> Bool) throws(ThinError)
    /// A listening unix socket at `path` for descriptors passed by SCM_RIGHTS.
    func listen(at path: String) throws(ThinError) -> Int32
    /// The next descriptor passed on `listening` with its message's text;
    /// nil after `timeout` milliseconds or when a cancel signal arrives.
    func receiveDescriptor(on listening: Int32, timeout: Int32) throws(ThinError) -> (message: String, descriptor: Int32)?
    /// Starts a server on one connection (`descriptor` as its standard input
    /// and output, as `nbdkit -s` serves); returns its pid.
    func serveConnection(_ program: Program, _ arguments: [String], descriptor: Int32) throws(ExternalCommandError) -> Int32
    /// Whether a child `serveConnection` started has ended (it is reaped then).
    func hasEnded(_ child: Int32) -> Bool
    /// Stops children `serveConnection` started (SIGTERM) and waits for them.
    func stopChildren(_ children: [Int32])
    func closeDescriptor(_ descriptor: Int32)
}

/// This machine: the engines as processes, the device's descriptor, BLKZEROOUT.
public struct LiveJobSystem: JobSystem {
    public init() {}

    public func path(of program: Program) -> String? { program.path }

    public func runEngine(_ program: Program, _ arguments: [String], progressOn stream: ExternalCommand.ProgressStream,
                          progress: @escaping @Sendable (Double) -> Void) async throws(ExternalCommandError) -> ExternalCommandResult {
        try await ExternalCommand.runReportingProgress(program, arguments, progressOn: stream, progress: progress)
    }

    public func runServer(_ program: Program, _ arguments: [String], readyFile: String,
                          ready: @escaping @Sendable () -> Void) async throws(ExternalCommandError) -> Int32 {
        try await ExternalCommand.runForwardingSignals(program, arguments, ready: readyFile, ready: ready)
    }

    public func copyStandardInput(toDevice device: String, limit: UInt64,
                                  progress: (UInt64) -> Void) throws(ThinError) -> UInt64 {
        try StreamCopy.copyStandardInput(toDevice: device, limit: limit, progress: progress)
    }

    public func zero(_ device: String, from: UInt64, to: UInt64, progress: (UInt64) -> Void,
                     stop: () -> Bool) throws(ThinError) {
        try BlockZeroing.zero(device, from: from, to: to, progress: progress, stop: stop)
    }

    public func blockDeviceSize(_ path: String) -> UInt64? { System.blockDeviceSize(path) }
    public func holdDevice(_ device: String) throws(ThinError) -> Int32 { try System.holdDevice(device) }
    public func releaseDevice(_ descriptor: Int32) { System.releaseDevice(descriptor) }
    public func pause(milliseconds: UInt32) { usleep(milliseconds * 1000) }
    public func nbdkitFilters() async -> [String] { await ProgramProbes.nbdkit()?.filters ?? [] }
    public func writeExtents(of device: String, runs: [ExportExtents.Run], size: UInt64, to target: String,
                             progress: (UInt64) -> Void, stop: () -> Bool) throws(ThinError) {
        try ExtentCopy.write(from: device, runs: runs, size: size, to: target, progress: progress, stop: stop)
    }
    public func listen(at path: String) throws(ThinError) -> Int32 { try System.listenUnix(path) }
    public func receiveDescriptor(on listening: Int32,
                                  timeout: Int32) throws(ThinError) -> (message: String, descriptor: Int32)? {
        try System.receiveDescriptor(listening, wake: CancelSignals.wakeDescriptor, timeout: timeout)
    }
    public func serveConnection(_ program: Program, _ arguments: [String],
                                descriptor: Int32) throws(ExternalCommandError) -> Int32 {
        try ExternalCommand.spawnServing(program, arguments, descriptor: descriptor)
    }
    public func hasEnded(_ child: Int32) -> Bool { ExternalCommand.exitStatus(ofChild: child) != nil }
    public func stopChildren(_ children: [Int32]) {
        for child in children { kill(child, SIGTERM) }
        for child in children {
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        }
    }
    public func closeDescriptor(_ descriptor: Int32) { close(descriptor) }
}

/// Where a job runs: the SR it opens for each phase, the seams, how it
/// reports and how it is stopped.
public struct JobContext: Sendable {
    public let sr: String
    public let host: Host
    public let system: any JobSystem
    public let progress: any JobProgress
    public let cancellation: JobCancellation

    public init(sr: String, host: Host, system: any JobSystem = LiveJobSystem(), progress: any JobProgress = SilentProgress(),
                cancellation: JobCancellation = .signals) {
        self.sr = sr
        self.host = host
        self.system = system
        self.progress = progress
        self.cancellation = cancellation
    }

    var cancelled: Bool { cancellation.isRequested }

    /// This context with the SR named by its uuid: a lease's later phases
    /// open it straight from its mount, with no scan by name, and still find
    /// it if it is renamed meanwhile (the tools' own phases keep the name
    /// they were given, which their messages repeat).
    func pinned(to names: SRNames) -> JobContext {
        JobContext(sr: names.uuidString, host: host, system: system, progress: progress, cancellation: cancellation)
    }

    /// Runs `body` on the SR opened for `access` (one phase), then closes it.
    func phase<T>(_ access: SRAccess = .write,
                  _ body: (AttachedSR) async throws(ThinError) -> T) async throws(ThinError) -> T {
        let sr = try AttachedSR.open(sr, for: access, host: host)
        defer { sr.close() }
        return try await body(sr)
    }

    /// A program's path for a command line, or the error naming its package.
    func located(_ program: Program) throws(ThinError) -> String {
        guard let path = system.path(of: program) else {
            throw ThinError(.notAvailable, "\(program.name) not found; install \(program.package)")
        }
        return path
    }
}

func cancelled(_ what: String) -> ThinError { ThinError(.cancelled, "\(what) cancelled") }
