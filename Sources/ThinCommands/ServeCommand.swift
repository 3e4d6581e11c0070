public import ArgumentParser
public import ThinCore
#if canImport(Glibc)
import Glibc
#endif

public struct VDIServe: TransferTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-serve",
        abstract: "Export a volume over NBD.",
        discussion: """
            Runs nbdkit (or qemu-nbd, see below) on the volume's device until it is stopped (SIGTERM or SIGINT, as systemd stops a \
            service), on a unix socket or a TCP port, and prints the export's URI once it accepts \
            connections. Read-only unless --writable, with base:allocation block status from the pool's \
            metadata, so nbdinfo --map shows holes where nothing is provisioned and nbdcopy or qemu-img copy \
            only data; a volume attached read-write elsewhere is refused (serve a snapshot of it). \
            --writable serves a detached volume read-write to one client at a time, reporting every block \
            as data (its mappings change under the export), and refuses snapshots. --detach starts the \
            server in the background and prints its URI and pid file; kill the pid to stop it. The volume \
            stays attached for the server (shared with other readers) until it stops. With --tls-psk or \
            --tls-certificates the URI is nbds:// or nbds+unix://, which thinsr's nbd scheme opens (as a \
            template's URI) with the client credentials in /etc/thinsr/nbd-tls: the same keys.psk, or \
            ca-cert.pem, client-cert.pem and client-key.pem. \
            Where nbdkit, or the filter the mode needs (extentlist read-only, limit with --writable), is \
            missing (XCP-ng's nbdkit has no filters), qemu-nbd serves instead, from PATH or \
            /usr/lib64/qemu-dp/bin, with the same URI, rules and pid file (any number of readers, one \
            writer at a time); its block status then reports every block as data, so a copy reads the \
            whole volume and writes zeros where nothing is provisioned. TLS needs nbdkit: without it \
            --tls-psk and --tls-certificates are refused with Not_available (exit 69) before anything is \
            attached. THINSR_NBD_SERVER=qemu-nbd picks qemu-nbd where nbdkit would serve. A server killed \
            with SIGKILL leaves qemu-nbd running (it has no --exit-with-parent as nbdkit does). \
            With --holder (what xapi's datapath plugin runs), the device attached for that holder (its \
            thinvdi-attach --holder) is served as it is, read-write unless attached read-only, on a socket \
            thinsr names under its run directory (THINSR_RUN_DIR, /run/thinsr/nbd/), with the volume's \
            uuid as export name; the address printed is xapi's form, nbd:unix:SOCKET:exportname=UUID. \
            Served by nbdkit's file plugin, or by qemu-nbd where nbdkit is missing. A second start for the \
            same holder prints the running server's address. The server ends when the holder detaches \
            (thinvdi-detach --holder, or any detach that removes the device): the detach stops it and \
            waits, and the server flushes the device before it ends. Refused with Volume_not_active when \
            the volume is not attached for the holder. --receive (with --holder) listens instead on a \
            socket that takes NBD client connections passed by SCM_RIGHTS, one per connection to it, with \
            a short text (xapi's datapath id), as xapi's Datapath.import_activate passes them; each is \
            served read-write by its own nbdkit -s until the client disconnects; it needs the volume active \
            for the holder (not only attached) and prints the socket's path.
            """)
    public static let examples = [
        ("thinvdi-serve vmstore nightly-1 --socket /run/web01.sock", "Serve a snapshot on a unix socket."),
        ("thinvdi-serve vmstore nightly-1 --port 10809 --bind 192.0.2.10 --detach",
         "Serve on TCP in the background."),
        ("thinvdi-serve vmstore web01-root --holder 7 --detach",
         "Serve the device attached for domain 7 in the background; prints nbd:unix:...:exportname=..."),
    ]

    @OptionGroup public var volume: VolumeArgument
    @Option(help: ArgumentHelp("Listen on this unix socket (it must not exist).", valueName: "path"),
            completion: .file())
    var socket: String?
    @Option(help: ArgumentHelp("Listen on this TCP port.", valueName: "port")) var port: Int?
    @Option(help: ArgumentHelp("With --port: the address to listen on (default 127.0.0.1; :: or 0.0.0.0 for all).",
                               valueName: "address"))
    var bind: String?
    @Flag(help: "Serve read-write (refused on a snapshot and on an attached volume).") var writable = false
    @Option(name: .customLong("tls-certificates"),
            help: ArgumentHelp("Require TLS with the X.509 certificates in this directory (nbdkit's layout).",
                               valueName: "dir"), completion: .directory)
    var tlsCertificates: String?
    @Option(name: .customLong("tls-psk"), help: ArgumentHelp("Require TLS with this pre-shared key file.", valueName: "file"),
            completion: .file())
    var tlsPSK: String?
    @Option(name: .customLong("export-name"), help: ArgumentHelp("The NBD export name (default: the volume's key).",
                                                                  valueName: "name"))
    var exportName: String?
    @Option(help: ArgumentHelp("Serve the device attached for this holder (xapi's domain), on a socket thinsr names.",
                               valueName: "holder"))
    var holder: String?
    @Flag(help: "With --holder: take NBD connections passed by SCM_RIGHTS on the socket (xapi's import_activate).")
    var receive = false
    @Flag(help: "Run in the background; print the URI and the pid file.") var detach = false
    @Option(name: .customLong("pid-file"), help: ArgumentHelp("Write the server's pid here once it accepts connections.",
                                                              valueName: "path"), completion: .file())
    var pidFile: String?
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func checkArguments() throws(ThinError) {
        if receive, holder == nil { throw .init(.invalidArgument, "--receive needs --holder") }
        if holder != nil {
            let conflicting = [socket.map { _ in "--socket" }, port.map { _ in "--port" }, bind.map { _ in "--bind" },
                               writable ? "--writable" : nil, tlsCertificates.map { _ in "--tls-certificates" },
                               tlsPSK.map { _ in "--tls-psk" }, exportName.map { _ in "--export-name" }].compactMap { $0 }
            if let first = conflicting.first {
                throw .init(.invalidArgument, "--holder serves the holder's device on a socket thinsr names; drop \(first)")
            }
            if let pidFile, System.exists(pidFile) {
                throw .init(.invalidArgument, "\(pidFile) already exists; remove it if no server uses it, or choose another path")
            }
            return
        }
        guard (socket == nil) != (port == nil) else {
            throw .init(.invalidArgument, "give exactly one of --socket PATH and --port N")
        }
        if let socket, System.exists(socket) {
            throw .init(.invalidArgument, "\(socket) already exists; remove it if no server uses it, or choose another path")
        }
        if let port, !(1...65535).contains(port) {
            throw .init(.invalidArgument, "--port \(port) is out of range; give a TCP port from 1 to 65535")
        }
        if bind != nil, port == nil { throw .init(.invalidArgument, "--bind needs --port") }
        if tlsCertificates != nil, tlsPSK != nil {
            throw .init(.invalidArgument, "give one of --tls-certificates and --tls-psk")
        }
        for path in [tlsCertificates, tlsPSK].compactMap({ $0 }) where !System.exists(path) {
            throw .init(.invalidArgument, "\(path) does not exist; give nbdkit's TLS certificate directory or PSK file")
        }
        if let pidFile, System.exists(pidFile) {
            throw .init(.invalidArgument, "\(pidFile) already exists; remove it if no server uses it, or choose another path")
        }
    }

    var request: ServeRequest {
        ServeRequest(volume: volume.vdi, socket: socket, port: port, bind: bind, writable: writable,
                     tlsCertificates: tlsCertificates, tlsPSK: tlsPSK, exportName: exportName, pidFile: pidFile)
    }

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        if let holder { return try await serveForHolder(holder, host: host) }
        if detach { return try await startInBackground() }
        try await ServeJob(jobContext(sr: volume.target.sr, host: host, progress: ProgressMode.none)).run(request) {
            Console.out($0)
        }
        return 0
    }

    /// Starts this same command without --detach in its own session, waits
    /// until it accepts connections (its pid file appears), and prints where.
    private func startInBackground() async throws(ThinError) -> Int32 {
        let pidPath = System.absolutePath(pidFile ?? "\(Paths.runRoot)/serve-\(getpid()).pid")
        var arguments = [Self.toolName, "--pid-file", pidPath]
        if let socket { arguments += ["--socket", System.absolutePath(socket)] }
        if let port { arguments += ["--port", String(port)] }
        if let bind { arguments += ["--bind", bind] }
        if writable { arguments.append("--writable") }
        if let tlsCertificates { arguments += ["--tls-certificates", System.absolutePath(tlsCertificates)] }
        if let tlsPSK { arguments += ["--tls-psk", System.absolutePath(tlsPSK)] }
        if let exportName { arguments += ["--export-name", exportName] }
        if output.verbose { arguments.append("--verbose") }
        arguments += ["--", volume.target.sr, volume.vdi]
        let (address, pid) = try await DetachedServer.start(arguments, tool: Self.toolName, pidFile: pidPath,
                                                            fallbackURI: request.uri(export: exportName ?? volume.vdi))
        if output.json {
            Console.printJSON(ServeJSON(uri: address, pid: pid, pid_file: pidPath))
        } else {
            Console.out(address)
            Console.out(pidPath)
        }
        return 0
    }
}

extension VDIServe {
    var holderKind: HolderServer.Kind { receive ? .receiver : .nbd }

    /// --holder: in the foreground, serve until stopped; with --detach, give a
    /// running server's address or start one in its own session.
    func serveForHolder(_ holder: String, host: Host) async throws(ThinError) -> Int32 {
        let json = output.json
        guard detach else {
            try await ServeJob(jobContext(sr: volume.target.sr, host: host, progress: ProgressMode.none))
                .runForHolder(volume.vdi, holder: holder, kind: holderKind, pidFile: pidFile) { server in
                    if json { Console.printJSON(HolderServeJSON(server)) } else { Console.out(server.address) }
                }
            return 0
        }
        let sr = try AttachedSR.open(volume.target.sr, for: .read, host: host)
        let plan: HolderServerPlan
        do { plan = try sr.attachments.holderServerPlan(volume.vdi, holder: holder, kind: holderKind) } catch {
            sr.close()
            throw error
        }
        sr.close()
        let server: HolderServer
        switch plan {
        case .running(let running): server = running
        case .start(let setup):
            let pidPath = System.absolutePath(pidFile ?? Paths.servePidFile(getpid()))
            var arguments = [Self.toolName, "--holder", holder, "--pid-file", pidPath]
            if receive { arguments.append("--receive") }
            if output.verbose { arguments.append("--verbose") }
            arguments += ["--", volume.target.sr, volume.vdi]
            let (address, pid) = try await DetachedServer.start(arguments, tool: Self.toolName, pidFile: pidPath,
                                                                fallbackURI: setup.address)
            server = HolderServer(holder: holder, kind: holderKind, pid: pid, startTime: nil, socket: setup.socket,
                                  address: address)
        }
        if json { Console.printJSON(HolderServeJSON(server)) } else { Console.out(server.address) }
        return 0
    }
}

/// A holder's server: what clients are given, its socket and the serving process.
struct HolderServeJSON: Encodable {
    var uri: String
    var socket: String
    var pid: Int32
    var holder: String

    init(_ server: HolderServer) {
        uri = server.address
        socket = server.socket
        pid = server.pid
        holder = server.holder
    }
}

struct ServeJSON: Encodable {
    var uri: String
    var pid: Int32
    var pid_file: String
}

