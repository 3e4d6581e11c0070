public import ArgumentParser
public import ThinCore

/// `thinvdi-mirror`: a volume mirrored to an NBD export (see `MirrorJob`).
public struct VDIMirror: TransferTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-mirror",
        abstract: "Mirror a volume to an NBD export: copy what it holds, then send every write to both sides.",
        discussion: """
            The kernel does the work: the volume's device becomes a device-mapper mirror of its own table \
            and the remote, attached through qemu-nbd as an NBD device, with a region log on which only \
            the regions holding data (the pool's mappings say which) start out of sync. The kernel copies \
            those, one region at a time, holding a guest write only while it copies that region; every \
            write to a copied region goes to both sides. The remote must read zeros where the volume holds \
            nothing (a new volume, e.g. thinvdi-serve --writable of a new volume on the other host); give \
            --full otherwise. Guest discards are refused while the mirror runs (the remote might not read \
            zeros where they land).

            An attached volume (read-write, loaded) stays mirrored until its detach (with --domain: the \
            detach for that holder, as xapi's Datapath.deactivate after the guest paused) or \
            thinvdi-mirror-stop; both flush the remote and put the volume's own table back. Without \
            --background the tool waits until the copy is whole and prints the operation. A detached \
            volume is attached for this run, copied whole, flushed and detached again: a copy to the \
            remote. SIGINT or SIGTERM stops the mirror (exit status 130); what was copied stays on the \
            remote. A remote that fails, or leaves a request unanswered for --remote-timeout seconds (a \
            stalled host), drops out of the mirror: the guest's write completes on the volume alone, the \
            volume runs on unharmed and thinvdi-mirror-stat says failed.
            """)
    public static let examples = [
        ("thinvdi-mirror vmstore web01-root 'nbd://host2:10809/web01-root' --progress",
         "Copy a detached volume to an NBD export another host serves (thinvdi-serve --writable there)."),
        ("thinvdi-mirror vmstore web01-root 'nbd+unix:///web01?socket=/run/x.sock' --background --json",
         "Start mirroring an attached volume and print the operation at once."),
    ]
    public static let extraExitStatuses: [(Int32, String)] = [
        (130, "stopped by SIGINT or SIGTERM; the volume runs on its own table, the remote keeps what was copied"),
    ]

    @OptionGroup public var volume: VolumeArgument
    @Argument(help: ArgumentHelp("The NBD export: nbd+unix:///EXPORT?socket=PATH or nbd://HOST[:PORT]/EXPORT.",
                                 valueName: "uri"))
    var remote: String
    @Option(help: ArgumentHelp("End the mirror at the detach of this holder (xapi's domain) instead of the volume's.",
                               valueName: "holder"))
    var domain: String?
    @Flag(help: "Copy every region, not only those holding data (a remote that may not read zeros).")
    var full = false
    @Flag(help: "Return once the mirror runs; print its operation (attached volumes only).")
    var background = false
    @Option(name: .customLong("connect-timeout"),
            help: ArgumentHelp("Seconds to wait for the remote's socket to appear and answer (default 30).",
                               valueName: "seconds"))
    var connectTimeout: UInt32 = 30
    @Option(name: .customLong("remote-timeout"),
            help: ArgumentHelp("Seconds the remote may leave a request unanswered before the mirror fails (the guest's "
                               + "writes go on here; default \(MirrorRequest.defaultRemoteTimeoutSeconds)).",
                               valueName: "seconds"))
    var remoteTimeout: UInt32 = MirrorRequest.defaultRemoteTimeoutSeconds
    @OptionGroup var progressOptions: ProgressOptions
    var progress: ProgressMode? { progressOptions.progress }
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func checkArguments() throws(ThinError) {
        _ = try NBDRemote(uri: remote)
        guard (1...3600).contains(connectTimeout) else {
            throw ThinError(.invalidArgument, "--connect-timeout must be from 1 to 3600 seconds")
        }
        guard (1...600).contains(remoteTimeout) else {
            throw ThinError(.invalidArgument, "--remote-timeout must be from 1 to 600 seconds")
        }
    }

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let request = MirrorRequest(volume: volume.vdi, remote: try NBDRemote(uri: remote), domain: domain, full: full,
                                    connectSeconds: connectTimeout, remoteTimeoutSeconds: remoteTimeout)
        let outcome = try await MirrorJob(jobContext(sr: volume.target.sr, host: host, progress: background ? ProgressMode.none : progress))
            .run(request, wait: !background)
        switch outcome {
        case .started(let record):
            if output.json { Console.printJSON(MirrorJSON(record, progress: 0, complete: false, failed: false)) }
            else { Console.out("mirroring \(record.key) to \(record.remote): operation \(record.operation)") }
        case .synchronized(let now):
            if output.json { Console.printJSON(MirrorJSON(now)) }
            else {
                Console.out("\(now.record.key) is in sync with \(now.record.remote); each write reaches both until "
                            + "its detach or thinvdi-mirror-stop \(now.record.operation)")
            }
        case .copied(let record):
            if output.json { Console.printJSON(MirrorJSON(record, progress: 1, complete: true, failed: false)) }
            else { Console.out("\(record.key) copied to \(record.remote)") }
        }
        return 0
    }
}

/// `thinvdi-mirror-stat`: how far mirrors are (xapi's Data.stat and Data.ls).
public struct VDIMirrorStat: ToolCommand {
    public static let access = ToolAccess.lifecycle
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-mirror-stat",
        abstract: "Show how far volume mirrors are: failed, complete (in sync), progress.",
        discussion: """
            With operations (as thinvdi-mirror prints them, <sr-uuid>/<volume-uuid>), each one's state; \
            without, every mirror on this host, running or ended. Takes no lock and starts no program: it \
            reads the mirror's record and the kernel's status of the mirror. Progress counts the regions \
            copied of those that needed a copy, from 0 to 1, and never goes back; complete means every \
            region is copied and each write reaches both sides.
            """)
    public static let examples = [("thinvdi-mirror-stat", "Every mirror on this host."),
                                  ("thinvdi-mirror-stat --json 7d0c...-.../5b1e...", "One operation, for a script.")]

    @Argument(help: ArgumentHelp("Mirror operations (default: all).", valueName: "operation"))
    var operations: [String] = []
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let found: [MirrorProgress]
        if operations.isEmpty { found = MirrorQueries.all(host: host) } else {
            var each: [MirrorProgress] = []
            for operation in operations { each.append(try MirrorQueries.progress(operation: operation, host: host)) }
            found = each
        }
        if output.json {
            if operations.count == 1, let one = found.first { Console.printJSON(MirrorJSON(one)) }
            else { Console.printJSON(found.map(MirrorJSON.init)) }
        } else {
            Console.table(["OPERATION", "VOLUME", "REMOTE", "STATE", "PROGRESS"], found.map {
                [$0.record.operation, $0.record.key, $0.record.remote, Self.state($0),
                 String(Int(($0.progress * 100).rounded(.down))) + "%"]
            })
        }
        return 0
    }

    static func state(_ progress: MirrorProgress) -> String {
        if progress.failed { return "failed" }
        if progress.record.state.hasEnded { return progress.record.state.rawValue }
        return progress.complete ? "in-sync" : progress.record.state.rawValue
    }
}

/// `thinvdi-mirror-stop`: ends a mirror (xapi's Data.cancel and Data.destroy).
public struct VDIMirrorStop: ToolCommand {
    public static let access = ToolAccess.lifecycle
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-mirror-stop",
        abstract: "Stop a volume's mirror: flush the remote, put the volume's own table back.",
        discussion: """
            The volume runs on unchanged; the remote keeps what was copied. The mirror's record stays (so \
            thinvdi-mirror-stat still answers for it) unless --forget is given; --forget on an ended \
            mirror only forgets it. Stopping an ended mirror changes nothing.
            """)
    public static let examples = [("thinvdi-mirror-stop 7d0c...-.../5b1e...", "Stop one mirror."),
                                  ("thinvdi-mirror-stop --forget 7d0c...-.../5b1e...", "Stop it and forget it.")]

    @Argument(help: ArgumentHelp("The mirror operation, as thinvdi-mirror printed it.", valueName: "operation"))
    var operation: String
    @Flag(help: "Forget the mirror's record too.") var forget = false
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        guard MirrorRecord.parse(operation: operation) != nil, let srUUID = operation.split(separator: "/").first else {
            throw ThinError(.invalidArgument, "\"\(operation.prefix(200))\" is not a mirror operation (<sr-uuid>/<volume-uuid>); "
                            + "list them with thinvdi-mirror-stat")
        }
        let sr = try AttachedSR.open(String(srUUID), for: .write, host: host)
        defer { sr.close() }
        if forget {
            try sr.mirrors.forget(operation: operation)
            if output.json { Console.printJSON(["operation": operation, "state": "forgotten"]) }
            else { Console.out("mirror \(operation) stopped and forgotten") }
        } else {
            let record = try sr.mirrors.stop(operation: operation)
            if output.json { Console.printJSON(MirrorJSON(sr.mirrors.progress(record))) }
            else { Console.out("mirror of \(record.key) to \(record.remote): \(record.state.rawValue)") }
        }
        return 0
    }
}

struct MirrorJSON: Encodable {
    var operation: String
    var volume: String
    var remote: String
    var domain: String?
    var state: String
    var failed: Bool
    var complete: Bool
    var progress: Double
    var failure: String?

    init(_ record: MirrorRecord, progress: Double, complete: Bool, failed: Bool) {
        operation = record.operation
        volume = record.key
        remote = record.remote
        domain = record.domain
        state = record.state.rawValue
        self.failed = failed
        self.complete = complete
        self.progress = progress
        failure = record.failure
    }

    init(_ now: MirrorProgress) {
        self.init(now.record, progress: now.progress, complete: now.complete, failed: now.failed)
        state = VDIMirrorStat.state(now)
    }
}
