import FoundationEssentials
import ThinDeviceMapper

/// An NBD server of a volume's device as attached for one holder (xapi's
/// domain): `thinvdi-serve --holder`. Its record, a file under
/// `/run/thinsr/<sr>/servers/<volume>/`, names the `thinvdi-serve` process
/// (pid and start time), the socket and the address clients are given; the
/// holder's detach (and any detach that removes the device) stops it, and
/// the server flushes the device before it ends.
public struct HolderServer: Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// NBD on a unix socket, for xapi's `Nbd` implementation.
        case nbd
        /// A unix socket that takes NBD client connections passed by
        /// SCM_RIGHTS (xapi's `Datapath.import_activate`).
        case receiver = "fd"
    }

    public let holder: String
    public let kind: Kind
    public var pid: Int32
    public var startTime: UInt64?
    public var socket: String
    /// What clients are given: `nbd:unix:<socket>:exportname=<name>` (xapi's
    /// form), or the socket itself for a receiver.
    public var address: String

    var content: String { "\(pid) \(startTime ?? 0)\n\(socket)\n\(address)\n" }

    public init(holder: String, kind: Kind, pid: Int32, startTime: UInt64?, socket: String, address: String) {
        self.holder = holder
        self.kind = kind
        self.pid = pid
        self.startTime = startTime
        self.socket = socket
        self.address = address
    }

    init?(holder: String, kind: Kind, content: String) {
        let lines = content.split(separator: "\n").map(String.init)
        guard lines.count >= 3 else { return nil }
        let first = lines[0].split(separator: " ")
        guard first.count == 2, let pid = Int32(first[0]), let started = UInt64(first[1]) else { return nil }
        self.init(holder: holder, kind: kind, pid: pid, startTime: started == 0 ? nil : started, socket: lines[1],
                  address: lines[2])
    }

    var isLive: Bool { ProcessClaim(pid: pid, startTime: startTime, bootID: nil).isLive() }

    /// xapi's form of an NBD address (`Datapath.attach`'s `Nbd` uri): it is
    /// split on `:` into exactly four fields, so neither part may hold one.
    static func xapiURI(socket: String, export: String) -> String { "nbd:unix:\(socket):exportname=\(export)" }

    /// A short stable tag of a holder's name for its socket's name (FNV-1a,
    /// 32 bits): holder names may be 128 characters and hold `:`.
    static func tag(_ holder: String) -> String {
        var hash: UInt32 = 2_166_136_261
        for byte in holder.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// The socket of `kind` for `holder` of `volume`: short (a unix socket's
    /// path holds at most 107 bytes) and free of `:`.
    static func socketPath(volume: UUID, holder: String, kind: Kind) -> String {
        "\(Paths.runRoot)/nbd/\(SRNames.hex(volume)).\(tag(holder)).\(kind.rawValue)"
    }
}

extension SRNames {
    func serversDirectory(_ volume: UUID) -> String { "\(runDirectory)/servers/\(volume.lowercased)" }
    func serverRecord(_ volume: UUID, holder: String, kind: HolderServer.Kind) -> String {
        "\(serversDirectory(volume))/\(kind.rawValue).\(holder)"
    }
}

/// What `thinvdi-serve --holder` is to do: give the address of a server
/// already running, or start one.
public enum HolderServerPlan: Sendable {
    case running(HolderServer)
    case start(HolderServerSetup)
}

/// A server to start for a holder's attachment.
public struct HolderServerSetup: Sendable {
    public let volume: VolumeRecord
    public let holder: String
    public let kind: HolderServer.Kind
    public let device: String
    public let socket: String
    public let export: String
    public let readOnly: Bool
    public let record: String
    public var address: String { kind == .nbd ? HolderServer.xapiURI(socket: socket, export: export) : socket }
}

extension SRAttachments {
    /// The live server of `kind` for `holder` of `volume`; a dead one's record and socket are removed.
    func liveServer(of volume: VolumeRecord, holder: String, kind: HolderServer.Kind) -> HolderServer? {
        let path = names.serverRecord(volume.uuid, holder: holder, kind: kind)
        guard let content = System.readFile(path) else { return nil }
        if let server = HolderServer(holder: holder, kind: kind, content: content), server.isLive { return server }
        System.removeFile(HolderServer.socketPath(volume: volume.uuid, holder: holder, kind: kind))
        System.removeFile(path)
        return nil
    }

    /// What serving `reference` for `holder` takes: refused unless the volume
    /// is attached for that holder (an NBD server) or active for it (a
    /// receiver, which is what xapi's import_activate needs); a live server
    /// of the same kind is given again (xapi attaches twice).
    public func holderServerPlan(_ reference: String, holder: String,
                                 kind: HolderServer.Kind) throws(ThinError) -> HolderServerPlan {
        try VolumeHolders.validate(holder)
        let volume = try sr.requireVolume(reference)
        try volume.requireData(to: "be served")
        let what = kind == .nbd ? "attached" : "active"
        let advice = kind == .nbd ? "attach it first (thinvdi-attach --holder \(holder) --inactive)"
            : "activate it first (thinvdi-attach --holder \(holder))"
        guard holders(of: volume).live().contains(holder), let info = try devices.info(volume.uuid) else {
            throw ThinError(.volumeNotActive, "volume \(volume.key) is not \(what) for \(holder); \(advice)",
                            parameters: [volume.key])
        }
        if kind == .receiver, try devices.isInactive(volume.uuid, info: info) {
            throw ThinError(.volumeNotActive, "volume \(volume.key) is not active for \(holder); \(advice)",
                            parameters: [volume.key])
        }
        guard volume.virtualSize > 0 else {
            throw .invalid("volume \(volume.key) is empty (0 bytes): there is nothing to serve")
        }
        if let server = liveServer(of: volume, holder: holder, kind: kind) { return .running(server) }
        let socket = HolderServer.socketPath(volume: volume.uuid, holder: holder, kind: kind)
        guard socket.utf8.count < 108, !socket.contains(":") else {
            throw .invalid("the server's socket \(socket) would be longer than a unix socket's 107 bytes or hold ':'; "
                           + "set THINSR_RUN_DIR to a shorter directory without ':'")
        }
        return .start(HolderServerSetup(volume: volume, holder: holder, kind: kind,
                                        device: names.volumeDevice(volume.uuid).path, socket: socket,
                                        export: volume.uuid.lowercased, readOnly: !volume.readWrite || info.readOnly,
                                        record: names.serverRecord(volume.uuid, holder: holder, kind: kind)))
    }

    /// Stops the servers of `volume` (one holder's, or every holder's when
    /// `holder` is nil) and waits for each to end: a server flushes the
    /// device before it ends, so nothing written through it is left unflushed.
    func stopServers(of volume: VolumeRecord, holder: String? = nil) {
        let directory = names.serversDirectory(volume.uuid)
        for entry in System.directoryEntries(directory) {
            guard let dot = entry.firstIndex(of: "."), let kind = HolderServer.Kind(rawValue: String(entry[..<dot])) else {
                continue
            }
            let name = String(entry[entry.index(after: dot)...])
            guard holder == nil || holder == name else { continue }
            if let content = System.readFile("\(directory)/\(entry)"),
               let server = HolderServer(holder: name, kind: kind, content: content) {
                System.stopProcess(server.pid, startTime: server.startTime)
            }
            System.removeFile(HolderServer.socketPath(volume: volume.uuid, holder: name, kind: kind))
            System.removeFile("\(directory)/\(entry)")
        }
        System.removeDirectory(directory)
    }
}
