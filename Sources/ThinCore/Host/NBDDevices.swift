import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// An NBD export another host (or xapi's relay) serves, named by a URI that
/// may come from anyone: `nbd+unix:///<export>?socket=<path>` or
/// `nbd://<host>[:<port>]/<export>`. Only what qemu's options can carry
/// unescaped is accepted, and it reaches qemu-nbd as typed fields, never as
/// a filename qemu would parse itself.
public struct NBDRemote: Sendable, Equatable, Codable {
    public enum Server: Sendable, Equatable, Codable {
        case unix(path: String)
        case tcp(host: String, port: Int)
    }

    public let server: Server
    public let export: String

    public init(uri: String) throws(ThinError) {
        let invalid = { (why: String) in
            ThinError(.invalidArgument, "remote \"\(uri.prefix(200))\" \(why); give nbd+unix:///EXPORT?socket=PATH or "
                      + "nbd://HOST[:PORT]/EXPORT")
        }
        if uri.hasPrefix("nbd+unix:///") {
            let rest = uri.dropFirst("nbd+unix:///".count)
            let parts = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[1].hasPrefix("socket=") else { throw invalid("names no socket") }
            let path = String(parts[1].dropFirst("socket=".count))
            guard path.hasPrefix("/"), Self.isPlain(path, extra: "/"), !path.contains("/../"), !path.hasSuffix("/..") else {
                throw invalid("has a socket path that is not a plain absolute path")
            }
            server = .unix(path: path)
            export = String(parts[0])
        } else if uri.hasPrefix("nbd://") {
            let rest = uri.dropFirst("nbd://".count)
            let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            let authority = String(parts[0])
            var host = authority, port = 10809
            if let colon = authority.lastIndex(of: ":") {
                guard let number = Int(authority[authority.index(after: colon)...]), (1...65535).contains(number) else {
                    throw invalid("has a port that is not a number from 1 to 65535")
                }
                host = String(authority[..<colon])
                port = number
            }
            guard !host.isEmpty, Self.isPlain(host, extra: "") else { throw invalid("has an invalid host name") }
            server = .tcp(host: host, port: port)
            export = parts.count == 2 ? String(parts[1]) : ""
        } else {
            throw invalid("is not an NBD URI")
        }
        guard export.utf8.count <= 4096, Self.isPlain(export, extra: "/:") else {
            throw invalid("has an export name with characters other than letters, digits and ._-+@/:")
        }
    }

    /// Letters, digits, `._-+@` and `extra`: nothing qemu's option syntax
    /// (`,` `=`) or a URI (`?` `#` `%`) would read as structure.
    static func isPlain(_ text: String, extra: String) -> Bool {
        text.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "._-+@\(extra)".unicodeScalars.contains($0)
        }
    }

    public var uri: String {
        switch server {
        case .unix(let path): return "nbd+unix:///\(export)?socket=\(path)"
        case .tcp(let host, let port): return "nbd://\(host):\(port)/\(export)"
        }
    }

    /// qemu's `--image-opts` for the export as a raw disk.
    var imageOptions: String {
        var options = ["driver=raw", "file.driver=nbd"]
        switch server {
        case .unix(let path): options += ["file.server.type=unix", "file.server.path=\(path)"]
        case .tcp(let host, let port): options += ["file.server.type=inet", "file.server.host=\(host)", "file.server.port=\(port)"]
        }
        if !export.isEmpty { options.append("file.export=\(export)") }
        return options.joined(separator: ",")
    }

    /// Whether the server can be reached now (a unix socket that exists; a
    /// TCP server is tried by qemu-nbd itself).
    var isListening: Bool {
        switch server {
        case .unix(let path): return System.isSocket(path)
        case .tcp: return true
        }
    }
}

/// A kernel NBD client device and the qemu-nbd process serving it.
struct NBDConnection: Sendable, Equatable {
    var device: String
    /// qemu-nbd's process (its thread group: the kernel names the thread
    /// that runs NBD_DO_IT) and its start time, which tells it from a later
    /// process with the same id; nil where the kernel did not say.
    var serverPid: Int32?
    var serverStartTime: UInt64?
}

/// The kernel's NBD client devices (`/dev/nbdN`), each bound by qemu-nbd
/// `--connect` to what it serves: a template's image, or a remote export.
enum NBDDevices {
    /// Loads the nbd module if need be; the numbers of the devices there are.
    static func all(for what: String) async throws(ThinError) -> [Int] {
        if !System.exists("/sys/block/nbd0") { _ = try? await ExternalCommand.run(Program.loadModule, ["nbd"]) }
        let devices = System.directoryEntries("/sys/block").filter { $0.hasPrefix("nbd") }
            .compactMap { Int($0.dropFirst(3)) }.sorted()
        guard !devices.isEmpty else {
            throw ThinError(.notAvailable, "no /dev/nbd devices: load the kernel's nbd module (modprobe nbd) to \(what)")
        }
        return devices
    }

    /// Runs qemu-nbd `--connect` with `arguments` on the first free
    /// /dev/nbdN (qemu-nbd forks a server bound to it and returns once it is
    /// up); returns the device and its server. `what` says what it was for
    /// in errors. With `timeoutSeconds`, a request the server leaves
    /// unanswered that long fails, and the connection with it (without, the
    /// kernel waits for ever on 5.x and 6.x, 30 s on 4.19).
    static func connect(_ arguments: [String], for what: String,
                        timeoutSeconds: UInt32? = nil) async throws(ThinError) -> NBDConnection {
        let devices = try await all(for: what)
        // The same lock as the nbd scheme script's: two finders never pick one device.
        guard let lock = try FileLock.waiting(path: Paths.nbdLock, seconds: 60) else {
            throw ThinError(.deviceInUse, "another process has held \(Paths.nbdLock) for 60 s while choosing an nbd "
                            + "device; try again when it ends (fuser \(Paths.nbdLock) names it)")
        }
        defer { lock.release() }
        var lastError = "every nbd device is in use"
        for number in devices where !System.exists("/sys/block/nbd\(number)/pid") {
            let device = "/dev/nbd\(number)"
            // The timeout goes in before qemu-nbd's NBD_DO_IT: only then does the kernel also give the socket a
            // send timeout (a send blocked on a stalled server holds the lock the timeout handler needs). The
            // kernel forgets it when the device's last opener closes, so it is held open until qemu-nbd has it.
            var timeoutHolder: Int32?
            if let timeoutSeconds { timeoutHolder = try System.openNBD(device, timeoutSeconds: timeoutSeconds) }
            defer { if let timeoutHolder { close(timeoutHolder) } }
            let result: ExternalCommandResult
            do { result = try await ExternalCommand.run(Program.qemuNBD, ["--connect=\(device)"] + arguments) } catch {
                throw .backend("cannot run qemu-nbd", error)
            }
            if result.exitStatus == 0 {
                // The size is set by the forked server; wait briefly for it.
                for _ in 0..<50 where (System.blockDeviceSize(device) ?? 0) == 0 { usleep(20_000) }
                let connection = NBDConnection(device: device, serverPid: serverProcess(number),
                                               serverStartTime: serverProcess(number).flatMap(System.processStartTime))
                if let timeoutSeconds, let shown = timeoutMilliseconds(number), shown != UInt64(timeoutSeconds) * 1000 {
                    disconnect(connection)
                    throw ThinError(.backendFailure, "the kernel did not keep the \(timeoutSeconds) s I/O timeout on "
                                    + "\(device) (its queue shows \(shown) ms); a stalled remote would hold the guest's writes")
                }
                return connection
            }
            lastError = messageLine(result.standardError)
            // Only a device someone else took is worth trying the next one for.
            guard result.standardError.contains("busy") || result.standardError.contains("NBD socket") else { break }
        }
        throw ThinError(.backendFailure, "cannot \(what) through qemu-nbd: \(lastError)")
    }

    /// The process serving nbd device `number`: the thread group of the
    /// thread the kernel shows in `pid`.
    private static func serverProcess(_ number: Int) -> Int32? {
        guard let thread = System.readFile("/sys/block/nbd\(number)/pid").flatMap({ firstNumber($0) as Int32? }),
              let status = System.readFile("/proc/\(thread)/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Tgid:") {
            return firstNumber(line.dropFirst("Tgid:".count))
        }
        return nil
    }

    /// The request timeout the kernel shows for nbd device `number`
    /// (`queue/io_timeout`, in milliseconds; 4.19 has no such file: nil).
    static func timeoutMilliseconds(_ number: Int) -> UInt64? {
        System.readFile("/sys/block/nbd\(number)/queue/io_timeout").flatMap { firstNumber($0) }
    }

    private static func firstNumber<Number: FixedWidthInteger>(_ text: some StringProtocol) -> Number? {
        text.split(whereSeparator: \.isWhitespace).first.flatMap { Number(String($0)) }
    }

    /// Whether `connection`'s qemu-nbd still serves its device (when its
    /// process was not recorded: whether any does).
    static func isServed(_ connection: NBDConnection) -> Bool {
        guard let number = Int(connection.device.dropFirst("/dev/nbd".count)),
              System.exists("/sys/block/nbd\(number)/pid") else { return false }
        guard let recorded = connection.serverPid else { return true }
        return serverProcess(number) == recorded
            && (connection.serverStartTime == nil || System.processStartTime(recorded) == connection.serverStartTime)
    }

    /// Ends the qemu-nbd server bound to `device` (its client goes with it).
    static func disconnect(_ device: String) {
        ExternalCommand.runToEnd(Program.qemuNBD, ["--disconnect", device])
        // The device is free once its server has gone (the kernel removes `pid` then): wait for it, briefly.
        let pid = "/sys/block/\(device.split(separator: "/").last ?? "")/pid"
        for _ in 0..<100 where System.exists(pid) { usleep(50_000) }
    }

    /// Ends the connection (if its qemu-nbd still serves the device: run
    /// again, it leaves a device another process took since alone) and waits
    /// for its qemu-nbd to be gone. A qemu-nbd whose remote stopped answering
    /// never finishes exiting (it waits for the requests it relayed): it is
    /// killed after 2 s. The device no longer carries anything by then, and
    /// what the remote acknowledged was flushed before.
    static func disconnect(_ connection: NBDConnection) {
        if isServed(connection) { disconnect(connection.device) }
        if let pid = connection.serverPid {
            System.stopProcess(pid, startTime: connection.serverStartTime, seconds: 2)
        }
    }

    /// Makes the kernel refuse discards on `device`: a remote may not read
    /// zeros where one landed, so a mirror must not send them there.
    static func refuseDiscards(_ device: String) throws(ThinError) {
        let limit = "/sys/block/\(device.split(separator: "/").last ?? "")/queue/discard_max_bytes"
        guard System.exists(limit) else { return }
        try System.writeFile(limit, "0")
        guard System.readFile(limit)?.split(whereSeparator: \.isWhitespace).first == "0" else {
            throw ThinError(.backendFailure, "the kernel kept discards on \(device) (\(limit)); the mirror would lose "
                            + "them on one side")
        }
    }

    /// Sends a flush down `device` (fsync of a block device asks the server
    /// to make what it acknowledged durable); false when it failed.
    static func flush(_ device: String) -> Bool {
        let descriptor = open(device, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        return fsync(descriptor) == 0
    }
}
