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
            Runs nbdkit on the volume's device until it is stopped (SIGTERM or SIGINT, as systemd stops a \
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
            ca-cert.pem, client-cert.pem and client-key.pem.
            """)
    public static let examples = [
        ("thinvdi-serve vmstore nightly-1 --socket /run/web01.sock", "Serve a snapshot on a unix socket."),
        ("thinvdi-serve vmstore nightly-1 --port 10809 --bind 192.0.2.10 --detach",
         "Serve on TCP in the background."),
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
    @Flag(help: "Run in the background; print the URI and the pid file.") var detach = false
    @Option(name: .customLong("pid-file"), help: ArgumentHelp("Write the server's pid here once it accepts connections.",
                                                              valueName: "path"), completion: .file())
    var pidFile: String?
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func checkArguments() throws(ThinError) {
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

struct ServeJSON: Encodable {
    var uri: String
    var pid: Int32
    var pid_file: String
}

