import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// What `thinvdi-serve` was asked for.
public struct ServeRequest: Sendable {
    public var volume: String
    public var socket: String?
    public var port: Int?
    public var bind: String?
    public var writable: Bool
    public var tlsCertificates: String?
    public var tlsPSK: String?
    public var exportName: String?
    public var pidFile: String?

    public init(volume: String, socket: String?, port: Int?, bind: String?, writable: Bool, tlsCertificates: String?,
                tlsPSK: String?, exportName: String?, pidFile: String?) {
        self.volume = volume
        self.socket = socket
        self.port = port
        self.bind = bind
        self.writable = writable
        self.tlsCertificates = tlsCertificates
        self.tlsPSK = tlsPSK
        self.exportName = exportName
        self.pidFile = pidFile
    }

    /// The URI a client opens `export` at.
    public func uri(export: String) -> String {
        let secure = tlsCertificates != nil || tlsPSK != nil
        if let socket {
            return "nbd\(secure ? "s" : "")+unix:///\(export)?socket=\(System.absolutePath(socket))"
        }
        let address = bind ?? "127.0.0.1"
        return "nbd\(secure ? "s" : "")://\(address.contains(":") ? "[\(address)]" : address):\(port ?? 10809)/\(export)"
    }

    /// nbdkit's options for where and how it listens.
    func listenArguments(export: String) -> [String] {
        var arguments = ["-e", export]
        if let socket { arguments += ["-U", System.absolutePath(socket)] }
        if let port { arguments += ["-p", String(port), "-i", bind ?? "127.0.0.1"] }
        if let tlsCertificates { arguments += ["--tls=require", "--tls-certificates=\(System.absolutePath(tlsCertificates))"] }
        if let tlsPSK { arguments += ["--tls=require", "--tls-psk=\(System.absolutePath(tlsPSK))"] }
        return arguments
    }
}

/// An NBD server as a job: the lease (read-only with the pool's block
/// status, or read-write for this process alone) taken in one phase, nbdkit
/// run until it stops (a cancel signal stops it: that is how a server ends),
/// the lease released in a last phase.
public struct ServeJob: Sendable {
    public let context: JobContext

    public init(_ context: JobContext) { self.context = context }

    /// Serves until the server stops; `ready` gets the URI once it accepts connections.
    public func run(_ request: ServeRequest, ready: @escaping @Sendable (String) -> Void) async throws(ThinError) {
        let (lease, extents) = try await VolumeLease.acquire(request.volume, mode: request.writable ? .writing : .reading,
                                                            context: context) { sr throws(ThinError) -> ExportExtents? in
            request.writable ? nil : try await sr.exportExtents(of: request.volume)
        }
        try await lease.whileHeld { lease throws(ThinError) in
            defer { if let pidFile = request.pidFile { System.removeFile(pidFile) } }
            try await serve(request, lease: lease, extents: extents, ready: ready)
        }
    }

    private func serve(_ request: ServeRequest, lease: VolumeLease, extents: ExportExtents?,
                       ready: @escaping @Sendable (String) -> Void) async throws(ThinError) {
        let extentFile = lease.scratchFile("serve", "extents")
        let readyFile = lease.scratchFile("serve", "ready")
        System.removeFile(readyFile)
        let export = request.exportName ?? lease.volume.key
        var arguments = ["-f", "--exit-with-parent", "-P", readyFile] + request.listenArguments(export: export)
        if let extents {
            try System.writeFile(extentFile, extents.extentList)
            arguments += ["-r", "--filter=extentlist", "file", "file=\(lease.device)", "extentlist=\(extentFile)"]
        } else {
            arguments += ["--filter=limit", "file", "file=\(lease.device)", "limit=1"]
        }
        let address = request.uri(export: export)
        let announce = request.pidFile
        let status: Int32
        do {
            status = try await context.system.runServer(Program.nbdkit, arguments, readyFile: readyFile) {
                ready(address)
                if let announce { try? System.writeFile(announce, "\(getpid())\n") }
            }
        } catch {
            throw ThinError(.backendFailure, "cannot run nbdkit: \(error)")
        }
        if let socket = request.socket { System.removeFile(System.absolutePath(socket)) }
        guard context.cancelled || status == 0 else {
            throw ThinError(.backendFailure, "nbdkit exited with status \(status) serving \(lease.volume.key) (see its "
                            + "messages above)")
        }
    }
}

/// A server started in the background: this same tool without --detach,
/// in its own session, watched until it accepts connections.
public enum DetachedServer {
    /// Starts `executable` (`arguments[0]` is the tool's name) and waits
    /// until it writes `pidFile`; returns the URI it printed (or `fallbackURI`)
    /// and its pid. A child that exits first fails with the code its exit
    /// status stands for and its own message, without `tool`'s prefix.
    public static func start(_ arguments: [String], tool: String, pidFile: String,
                             fallbackURI: String) async throws(ThinError) -> (uri: String, pid: Int32) {
        let log = "\(Paths.runRoot)/serve-\(getpid()).log"
        let uriFile = "\(Paths.runRoot)/serve-\(getpid()).uri"
        try System.makeDirectories(Paths.runRoot)
        defer { System.removeFile(uriFile) }
        let child: Int32
        do {
            child = try ExternalCommand.spawnDetached("/proc/self/exe", arguments, standardOutput: uriFile, standardError: log)
        } catch {
            throw ThinError(.backendFailure, "cannot start the server: \(error)")
        }
        for _ in 0..<600 {
            if System.exists(pidFile) {
                // The server prints its URI (with the volume's key) before it writes the pid file.
                let address = System.readFile(uriFile)?.split(separator: "\n").first.map(String.init) ?? fallbackURI
                System.removeFile(log)
                return (address, child)
            }
            if let status = ExternalCommand.exitStatus(ofChild: child) {
                let message = System.readFile(log).map { messageLine($0, last: true) } ?? "no message"
                System.removeFile(log)
                // The child said why in the tools' own words ("thinvdi-serve: ..."): pass it on, with its code.
                throw ThinError(ErrorCode.allCases.first { $0.exitStatus == status } ?? .backendFailure,
                                message.hasPrefix("\(tool): ") ? String(message.dropFirst(tool.count + 2))
                                    : "the server exited with status \(status): \(message)")
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        kill(child, SIGTERM)
        throw ThinError(.backendFailure, "the server did not start within 30 s and was stopped; see \(log)")
    }
}
