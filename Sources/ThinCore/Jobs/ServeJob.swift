import ThinTools
import ThinTrace
import Synchronization
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
/// (or qemu-nbd where nbdkit or its filter is missing) run until it stops (a
/// cancel signal stops it: that is how a server ends), the lease released in
/// a last phase.
public struct ServeJob: Sendable {
    public let context: JobContext

    public init(_ context: JobContext) { self.context = context }

    /// Serves until the server stops; `ready` gets the URI once it accepts connections.
    public func run(_ request: ServeRequest, ready: @escaping @Sendable (String) -> Void) async throws(ThinError) {
        // Chosen before the lease: a mode no engine here can serve changes nothing.
        let engine = try await Self.plainEngine(for: request, system: context.system)
        let (lease, extents) = try await VolumeLease.acquire(request.volume, mode: request.writable ? .writing : .reading,
                                                            context: context) { sr throws(ThinError) -> ExportExtents? in
            // Only nbdkit's extentlist filter reads the pool's mappings; qemu-nbd reports every block as data.
            request.writable || engine != Program.nbdkit ? nil : try await sr.exportExtents(of: request.volume)
        }
        try await lease.whileHeld { lease throws(ThinError) in
            defer { if let pidFile = request.pidFile { System.removeFile(pidFile) } }
            try await serve(request, engine: engine, lease: lease, extents: extents, ready: ready)
        }
    }

    /// The engine of a plain server, chosen before anything is held: nbdkit's
    /// file plugin under the filter the mode needs (extentlist for the pool's
    /// block status, limit for one writer at a time), else qemu-nbd with the
    /// same rules (it reports every block as data). XCP-ng's nbdkit has no
    /// filters and may be missing; qemu-nbd is always in qemu-dp's directory.
    /// TLS is served by nbdkit only. `THINSR_NBD_SERVER=qemu-nbd` picks qemu-nbd.
    static func plainEngine(for request: ServeRequest, system: any JobSystem) async throws(ThinError) -> Program {
        let filter = request.writable ? "limit" : "extentlist"
        let forced = Paths.environment("THINSR_NBD_SERVER") == "qemu-nbd"
        let hasNBDKit = !forced && system.path(of: Program.nbdkit) != nil
        if hasNBDKit, await system.nbdkitFilters().contains(filter) { return Program.nbdkit }
        let lacking = forced ? "THINSR_NBD_SERVER=qemu-nbd asks for qemu-nbd"
            : hasNBDKit ? "this host's nbdkit has no \(filter) filter" : "this host has no nbdkit"
        if request.tlsCertificates != nil || request.tlsPSK != nil {
            throw ThinError(.notAvailable, "serving with TLS needs nbdkit with its \(filter) filter, and \(lacking); "
                            + "install \(Program.nbdkit.package) with its filters, or serve without TLS")
        }
        guard system.path(of: Program.qemuNBD) != nil else {
            throw ThinError(.notAvailable, "serving NBD needs nbdkit with its \(filter) filter or qemu-nbd, and "
                            + "\(lacking) and no qemu-nbd; install \(Program.nbdkit.package) with its filters, or "
                            + Program.qemuNBD.package)
        }
        return Program.qemuNBD
    }

    /// qemu-nbd's options for the same server: persistent (-t) like nbdkit,
    /// any number of readers, one client at a time when writable (its default
    /// --shared=1, as nbdkit's limit=1), discards passed down as nbdkit's file
    /// plugin passes trims; the pid file is written once it listens.
    static func qemuNBDArguments(_ request: ServeRequest, export: String, device: String, readyFile: String) -> [String] {
        var arguments = ["-f", "raw", "-x", export, "-t", "--pid-file", readyFile]
        if let socket = request.socket { arguments += ["-k", System.absolutePath(socket)] }
        if let port = request.port { arguments += ["-b", request.bind ?? "127.0.0.1", "-p", String(port)] }
        arguments += request.writable ? ["--discard=unmap"] : ["-r", "--shared=0"]
        return arguments + [device]
    }

    private func serve(_ request: ServeRequest, engine: Program, lease: VolumeLease, extents: ExportExtents?,
                       ready: @escaping @Sendable (String) -> Void) async throws(ThinError) {
        let extentFile = lease.scratchFile("serve", "extents")
        let readyFile = lease.scratchFile("serve", "ready")
        System.removeFile(readyFile)
        let export = request.exportName ?? lease.volume.key
        let arguments: [String]
        if engine != Program.nbdkit {
            arguments = Self.qemuNBDArguments(request, export: export, device: lease.device, readyFile: readyFile)
        } else if let extents {
            try System.writeFile(extentFile, extents.extentList)
            arguments = ["-f", "--exit-with-parent", "-P", readyFile] + request.listenArguments(export: export)
                + ["-r", "--filter=extentlist", "file", "file=\(lease.device)", "extentlist=\(extentFile)"]
        } else {
            arguments = ["-f", "--exit-with-parent", "-P", readyFile] + request.listenArguments(export: export)
                + ["--filter=limit", "file", "file=\(lease.device)", "limit=1"]
        }
        let address = request.uri(export: export)
        let announce = request.pidFile
        let status: Int32
        do {
            status = try await context.system.runServer(engine, arguments, readyFile: readyFile) {
                ready(address)
                if let announce { try? System.writeFile(announce, "\(getpid())\n") }
            }
        } catch {
            throw ThinError(.backendFailure, "cannot run \(engine.name): \(error)")
        }
        System.removeFile(readyFile)
        if let socket = request.socket { System.removeFile(System.absolutePath(socket)) }
        // What a client wrote reaches the pool before the lease lets the device go.
        if request.writable { try context.host.system.flushDevice(lease.device) }
        guard context.cancelled || status == 0 else {
            throw ThinError(.backendFailure, "\(engine.name) exited with status \(status) serving \(lease.volume.key) "
                            + "(see its messages above)")
        }
    }
}

/// A server started in the background: this same tool without --detach,
/// in its own session, watched until it accepts connections.
public enum DetachedServer {
    /// The child said why in the tools' own words ("thinvdi-serve: ..."): pass it on, with its code.
    static func failure(tool: String, status: Int32, message: String) -> ThinError {
        ThinError(ErrorCode.allCases.first { $0.exitStatus == status } ?? .backendFailure,
                  message.hasPrefix("\(tool): ") ? String(message.dropFirst(tool.count + 2))
                      : "the server exited with status \(status): \(message)")
    }

    /// Under systemd, the server runs as a transient unit of its own
    /// (`systemd-run --collect`), so a restart of the service that asked for
    /// it (xapi-storage-script, whose cgroup a restart empties) does not stop
    /// it. Nil where there is no systemd or `systemd-run` cannot start one
    /// (systemd before 236 has no --collect, as on CentOS 7 based dom0s):
    /// the caller then starts a process in its own session.
    static func startAsUnit(_ arguments: [String], tool: String, pidFile: String, fallbackURI: String, uriFile: String,
                            log: String) async throws(ThinError) -> (uri: String, pid: Int32)? {
        guard System.exists("/run/systemd/system"), Program.systemdRun.path != nil,
              let executable = System.executablePath() else { return nil }
        let unit = "thinsr-serve-\(getpid())-\(System.currentTime())"
        let started = try? await ExternalCommand.run(Program.systemdRun, [
            "--quiet", "--collect", "--unit=\(unit)", "--description=thinsr \(tool)",
            "--property=StandardOutput=file:\(uriFile)", "--property=StandardError=file:\(log)", "--", executable,
        ] + arguments)
        guard started?.exitStatus == 0 else { return nil }
        for _ in 0..<600 {
            if let pid = System.readFile(pidFile).flatMap({ Int32($0.split(whereSeparator: \.isWhitespace).first ?? "") }) {
                let address = System.readFile(uriFile)?.split(separator: "\n").first.map(String.init) ?? fallbackURI
                System.removeFile(log)
                return (address, pid)
            }
            // The tool's own error line: the server ended without serving.
            if let message = System.readFile(log), message.hasPrefix("\(tool): ") {
                System.removeFile(log)
                throw failure(tool: tool, status: 1, message: messageLine(message, last: true))
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        _ = try? await ExternalCommand.run(Program.systemctl, ["stop", unit])
        throw ThinError(.backendFailure, "the server did not start within 30 s and was stopped; see \(log) and "
                        + "journalctl -u \(unit)")
    }

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
        if let started = try await startAsUnit(arguments, tool: tool, pidFile: pidFile, fallbackURI: fallbackURI,
                                                uriFile: uriFile, log: log) {
            return started
        }
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
                throw failure(tool: tool, status: status, message: message)
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        kill(child, SIGTERM)
        throw ThinError(.backendFailure, "the server did not start within 30 s and was stopped; see \(log)")
    }
}

/// The NBD servers of a volume's device as attached for a holder (xapi's
/// datapath: `thinvdi-serve --holder`). Unlike a lease's server they attach
/// nothing themselves: they serve the device the holder's attach made (the
/// table activate loads comes and goes under them) and end when that holder
/// detaches, which stops them and waits; each flushes the device before it
/// ends. The engine is nbdkit's file plugin, or qemu-nbd where nbdkit is
/// missing (`THINSR_NBD_SERVER=qemu-nbd` picks it too); a receiver hands
/// each connection passed to it to its own `nbdkit -s`.
extension ServeJob {
    /// Serves until stopped; `ready` gets the address once clients can
    /// connect. A server already running for the holder is not started again:
    /// `ready` gets its address and this returns at once.
    public func runForHolder(_ volume: String, holder: String, kind: HolderServer.Kind, pidFile: String?,
                             ready: @escaping @Sendable (HolderServer) -> Void) async throws(ThinError) {
        let plan = try await context.phase(.read) { sr throws(ThinError) in
            try sr.attachments.holderServerPlan(volume, holder: holder, kind: kind)
        }
        guard case .start(let setup) = plan else {
            if case .running(let server) = plan { ready(server) }
            return
        }
        let started = HolderServer(holder: holder, kind: kind, pid: getpid(), startTime: System.processStartTime(getpid()),
                                   socket: setup.socket, address: setup.address)
        let announce: @Sendable () throws(ThinError) -> Void = {
            try System.writeFile(setup.record, started.content)
            ready(started)
            if let pidFile { try? System.writeFile(pidFile, "\(getpid())\n") }
        }
        try System.makeDirectories("\(Paths.runRoot)/nbd")
        try System.makeDirectories(setup.record.split(separator: "/").dropLast().joined(separator: "/").withRoot)
        System.removeFile(setup.socket)   // a dead server's (the plan found none alive)
        defer {
            System.removeFile(setup.socket)
            if let pidFile { System.removeFile(pidFile) }
            // Only this server's record: a later server's for the same holder is left alone.
            if System.readFile(setup.record) == started.content { System.removeFile(setup.record) }
        }
        let outcome: Result<Void, ThinError>
        do throws(ThinError) {
            switch kind {
            case .nbd: try await serveSocket(setup, announce: announce)
            case .receiver: try await receive(setup, announce: announce)
            }
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        // Whatever the engine wrote reaches the pool before the holder's detach goes on.
        do { try context.host.system.flushDevice(setup.device) } catch {
            if case .success = outcome { throw error }
        }
        try outcome.get()
    }

    /// The engine for an NBD socket: nbdkit's file plugin, else qemu-nbd.
    static func socketEngine(_ system: any JobSystem) -> Program? {
        let wanted = Paths.environment("THINSR_NBD_SERVER")
        if wanted != "qemu-nbd", system.path(of: Program.nbdkit) != nil { return Program.nbdkit }
        return system.path(of: Program.qemuNBD) != nil ? Program.qemuNBD : nil
    }

    private func serveSocket(_ setup: HolderServerSetup,
                             announce: @escaping @Sendable () throws(ThinError) -> Void) async throws(ThinError) {
        guard let engine = Self.socketEngine(context.system) else {
            throw ThinError(.notAvailable, "serving NBD needs nbdkit or qemu-nbd; install nbdkit, or "
                            + "\(Program.qemuNBD.package)")
        }
        let readyFile = "\(setup.socket).ready"
        System.removeFile(readyFile)
        defer { System.removeFile(readyFile) }
        let arguments: [String]
        if engine == Program.nbdkit {
            arguments = ["-f", "--exit-with-parent", "-P", readyFile, "-U", setup.socket, "-e", setup.export]
                + (setup.readOnly ? ["-r"] : []) + ["file", "file=\(setup.device)"]
        } else {
            arguments = ["-f", "raw", "-k", setup.socket, "-x", setup.export, "-t", "--pid-file", readyFile]
                + (setup.readOnly ? ["-r"] : []) + [setup.device]
        }
        let failure = Mutex<ThinError?>(nil)
        let status: Int32
        do {
            status = try await context.system.runServer(engine, arguments, readyFile: readyFile) {
                do throws(ThinError) { try announce() } catch { failure.withLock { $0 = error } }
            }
        } catch {
            throw ThinError.backend("cannot run \(engine.name)", error)
        }
        if let error = failure.withLock({ $0 }) { throw error }
        guard context.cancelled || status == 0 else {
            throw ThinError(.backendFailure, "\(engine.name) exited with status \(status) serving \(setup.volume.key) "
                            + "for \(setup.holder) (see its messages above)")
        }
    }

    /// A receiver: each connection on the socket passes one NBD client
    /// connection (SCM_RIGHTS, with the datapath id as its text), served by
    /// `nbdkit -s` on that descriptor, writes and flush included, until the
    /// client disconnects; the receiver runs until it is stopped.
    private func receive(_ setup: HolderServerSetup,
                         announce: @escaping @Sendable () throws(ThinError) -> Void) async throws(ThinError) {
        guard context.system.path(of: Program.nbdkit) != nil else {
            throw ThinError(.notAvailable, "serving passed NBD connections needs nbdkit (its -s mode); install "
                            + Program.nbdkit.package)
        }
        let listening = try context.system.listen(at: setup.socket)
        defer { context.system.closeDescriptor(listening) }
        try announce()
        let arguments = ["-s", "--exit-with-parent"] + (setup.readOnly ? ["-r"] : []) + ["file", "file=\(setup.device)"]
        var children: [Int32] = []
        defer { context.system.stopChildren(children) }
        while !context.cancelled {
            children.removeAll { context.system.hasEnded($0) }
            let passed: (message: String, descriptor: Int32)?
            do { passed = try context.system.receiveDescriptor(on: listening, timeout: 1000) } catch {
                Trace.step("serve", "receive a descriptor on \(setup.socket)", outcome: "\(error.message) (the receiver goes on)",
                           since: .now)
                continue
            }
            guard let passed else { continue }
            defer { context.system.closeDescriptor(passed.descriptor) }
            do {
                children.append(try context.system.serveConnection(Program.nbdkit, arguments, descriptor: passed.descriptor))
            } catch {
                throw ThinError.backend("cannot serve the connection passed for \(passed.message)", error)
            }
        }
    }
}

private extension String {
    /// A path that `split` and `joined` lost the leading `/` of.
    var withRoot: String { hasPrefix("/") ? self : "/" + self }
}
