import FoundationEssentials
import ThinDeviceMapper
import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// Live mirrors of volumes to NBD exports (storage motion): the kernel's
/// `mirror` target over the volume's own table and the remote attached as
/// an NBD device, with a dirty-region log on which only the provisioned
/// regions start out of sync. The kernel copies those, holds a guest write
/// to a region only while it copies that region, and sends every write to
/// a copied region to both sides. See docs/design.md, "Storage motion".
public struct SRMirrors: SRConcern {
    let sr: AttachedSR
}

extension AttachedSR {
    public var mirrors: SRMirrors { SRMirrors(sr: self) }
}

/// What a caller asks a mirror for.
public struct MirrorRequest: Sendable {
    public var volume: String
    public var remote: NBDRemote
    /// The holder whose detach ends the mirror (xapi's domain).
    public var domain: String?
    /// Copy every region, not only the provisioned ones (a remote that does
    /// not read zeros where nothing was written).
    public var full: Bool
    /// How long to wait for the remote's socket to appear and answer.
    public var connectSeconds: UInt32
    /// How long the remote may leave a request unanswered before its leg
    /// fails (the guest's write then completes on the source alone).
    public var remoteTimeoutSeconds: UInt32

    /// 15 s: far more than a healthy remote takes for one region, and twice
    /// it (a send blocked on a stalled server is timed out apart from the
    /// request) stays under the 60 s a Windows guest gives a disk.
    public static let defaultRemoteTimeoutSeconds: UInt32 = 15

    public init(volume: String, remote: NBDRemote, domain: String?, full: Bool, connectSeconds: UInt32,
                remoteTimeoutSeconds: UInt32 = MirrorRequest.defaultRemoteTimeoutSeconds) {
        self.volume = volume
        self.remote = remote
        self.domain = domain
        self.full = full
        self.connectSeconds = connectSeconds
        self.remoteTimeoutSeconds = remoteTimeoutSeconds
    }
}

extension SRMirrors {
    var records: MirrorRecords { MirrorRecords(names: names) }

    /// Every mirror this host has a record of (running or ended).
    public func list() -> [MirrorRecord] { records.all() }

    public func progress(_ record: MirrorRecord) -> MirrorProgress {
        records.progress(of: record, deviceMapper: host.deviceMapper)
    }

    /// The record of the mirror `operation` names in this SR.
    public func require(operation: String) throws(ThinError) -> MirrorRecord {
        guard let (srUUID, volume) = MirrorRecord.parse(operation: operation), srUUID == names.uuid,
              let record = records.load(volume) else { throw MirrorRecords.unknown(operation) }
        return record
    }

    /// Starts mirroring an attached read-write volume (for `owner`, a copy
    /// of a detached volume this process attached). Returns once the
    /// volume's device is the mirror; the kernel copies from then on.
    public func start(_ request: MirrorRequest, owner: String? = nil) async throws(ThinError) -> MirrorRecord {
        try sr.recovered()
        let volume = try sr.requireVolume(request.volume)
        let previous = try requireMirrorable(volume, domain: request.domain)
        try await KernelTarget.mirror.require(host, for: "mirroring \(volume.key)")
        let blockBytes = try record.blockSizeBytes
        let regionBytes = Self.regionBytes(blockBytes: blockBytes, volumeBytes: volume.virtualSize)
        let regions = (volume.virtualSize + regionBytes - 1) / regionBytes
        var record = MirrorRecord(operation: MirrorRecord.operation(sr: names, volume: volume.uuid), volume: volume.uuid,
                                  key: volume.key, remote: request.remote.uri, domain: request.domain, owner: owner,
                                  regionBytes: regionBytes, regions: regions, inSyncAtStart: 0, state: .starting)
        System.removeFile(records.progressFile(volume.uuid))   // a last mirror's: this one starts from 0
        System.removeFile(records.failedFile(volume.uuid))
        try records.save(record)
        do throws(ThinError) {
            // The provisioned regions, read before the switch; `patch` adds what the guest provisioned meanwhile.
            let first = try await provisionedRegions(volume, regionBytes: regionBytes, full: request.full)
            var log = MirrorDiskLog(regions: regions)
            for region in 0..<regions where !first.contains(region) { log.setInSync(region, true) }
            try System.writeBytes(records.logFile(volume.uuid), log.bytes)
            record.logDevice = try await TemplateOrigins.attachLoop(records.logFile(volume.uuid), writable: true,
                                                                   what: "the mirror's region log")
            try records.save(record)
            let remote = try await connect(request.remote, seconds: request.connectSeconds,
                                           timeoutSeconds: request.remoteTimeoutSeconds, volume: volume)
            record.nbdDevice = remote.device
            record.nbdServerPid = remote.serverPid
            record.nbdServerStartTime = remote.serverStartTime
            record.remoteTimeoutSeconds = request.remoteTimeoutSeconds
            try records.save(record)
            FaultInjection.point("mirror-remote-connected")
            try switchToMirror(volume, record: record)
            FaultInjection.point("mirror-switched")
            // Until the patch is in, a mirror may lack regions: only then is it running (a kill before undoes it).
            record.inSyncAtStart = try await patch(volume, record: record, log: log, full: request.full, before: first)
            record.state = .running
            try records.save(record)
            return record
        } catch {
            _ = try? end(record, state: .failed, failure: error.message)
            records.remove(volume.uuid)
            // A refused start leaves what was there: the record of the volume's last, ended mirror.
            if let previous { try? records.save(previous) }
            throw error
        }
    }

    /// What a mirror needs of its volume: attached read-write and loaded
    /// (for `domain` when one is named), not mirrored already, no hydration.
    /// Returns the record of the volume's last mirror, which ended.
    private func requireMirrorable(_ volume: VolumeRecord, domain: String?) throws(ThinError) -> MirrorRecord? {
        guard volume.readWrite, volume.kind != .snapshot else {
            throw ThinError(.invalidArgument, "\(volume.key) is a \(volume.kind.rawValue) and read-only; copy it with "
                            + "thinvdi-export, or clone it and mirror the clone", parameters: [volume.key])
        }
        guard let info = try devices.info(volume.uuid), try !devices.isInactive(volume.uuid, info: info) else {
            throw ThinError(.volumeInUse, "volume \(volume.key) is not active; a mirror copies an active volume (attach "
                            + "it read-write first)", parameters: [volume.key])
        }
        guard !info.readOnly else {
            throw ThinError(.volumeInUse, "volume \(volume.key) is attached read-only; a mirror needs it read-write",
                            parameters: [volume.key])
        }
        if let domain {
            try VolumeHolders.validate(domain)
            guard sr.attachments.volumeHolders(volume).contains(domain) else {
                throw ThinError(.volumeInUse, "volume \(volume.key) is not attached for \(domain); attach and activate "
                                + "it for that domain first", parameters: [volume.key])
            }
        }
        let existing = records.load(volume.uuid)
        if let existing, !existing.state.hasEnded {
            throw ThinError(.volumeInUse, "volume \(volume.key) is already being mirrored (operation "
                            + "\(existing.operation)); stop it with thinvdi-mirror-stop first", parameters: [volume.key])
        }
        try sr.requireNotHydrating(volume, to: "be mirrored")
        return existing
    }

    /// The pool's block where it is a power of two (a region then never
    /// straddles blocks), else the largest power of two dividing it; no
    /// smaller than 64 KiB (the kernel copies one region at a time) and no
    /// larger than the volume.
    static func regionBytes(blockBytes: UInt64, volumeBytes: UInt64) -> UInt64 {
        var region = max(AttachedSR.regionSectors(blockBytes: blockBytes), 128)
        while region > 2, region * 512 > volumeBytes { region /= 2 }
        return region * 512
    }

    /// The regions holding anything the volume reads as data: its
    /// provisioned blocks (everything, for a preallocated volume or one over
    /// a template, or with `full`).
    private func provisionedRegions(_ volume: VolumeRecord, regionBytes: UInt64,
                                    full: Bool) async throws(ThinError) -> Set<UInt64> {
        let regions = (volume.virtualSize + regionBytes - 1) / regionBytes
        if full { return Set(0..<regions) }
        let extents = try await sr.exportExtents(of: volume.uuid.lowercased)
        var found = Set<UInt64>()
        for run in extents.runs where run.kind == .data && run.length > 0 {
            let last = min((run.offset + run.length - 1) / regionBytes, regions - 1)
            for region in run.offset / regionBytes...last { found.insert(region) }
        }
        return found
    }

    /// The remote as /dev/nbdN, once its socket answers (xapi makes it a
    /// moment after it asks): at least as large as the volume, and failing
    /// a request it leaves unanswered for `timeoutSeconds`.
    private func connect(_ remote: NBDRemote, seconds: UInt32, timeoutSeconds: UInt32,
                         volume: VolumeRecord) async throws(ThinError) -> NBDConnection {
        let deadline = System.currentTime() + Int64(seconds)
        var connection: NBDConnection?
        var lastError: ThinError?
        while connection == nil {
            if remote.isListening {
                do {
                    connection = try await NBDDevices.connect(["--image-opts", remote.imageOptions, "--cache=none"],
                                                              for: "connect to the remote \(remote.uri)",
                                                              timeoutSeconds: timeoutSeconds)
                } catch { lastError = error }
            }
            if connection == nil {
                guard System.currentTime() < deadline else {
                    throw ThinError(.backendFailure, "the remote \(remote.uri) did not answer within \(seconds) s"
                                    + (lastError.map { " (\($0.message))" } ?? "") + "; check that its server runs, then try again")
                }
                usleep(100_000)
            }
        }
        guard let connection else { throw ThinError(.backendFailure, "no nbd device for \(remote.uri)") }
        let size = System.blockDeviceSize(connection.device) ?? 0
        guard size >= volume.virtualSize else {
            NBDDevices.disconnect(connection)
            throw ThinError(.invalidArgument, "the remote \(remote.uri) holds \(ByteSize.format(size)), less than "
                            + "\(volume.key)'s \(ByteSize.format(volume.virtualSize)); give a remote volume at least as large")
        }
        do { try NBDDevices.refuseDiscards(connection.device) } catch {
            NBDDevices.disconnect(connection)
            throw error
        }
        return connection
    }

    /// Moves the volume's table to the mirror's source device and makes the
    /// volume's device the mirror over it and the remote (the guest's I/O
    /// waits only for the suspend and resume).
    private func switchToMirror(_ volume: VolumeRecord, record: MirrorRecord) throws(ThinError) {
        guard let logDevice = record.logDevice, let nbdDevice = record.nbdDevice else {
            throw ThinError(.backendFailure, "the mirror of \(volume.key) lost its devices while starting")
        }
        let deviceMapper = host.deviceMapper
        let top = names.volumeDevice(volume.uuid).name
        let source = names.mirrorSourceDevice(volume.uuid)
        let sectors = volume.virtualSize / 512
        do {
            guard let live = try deviceMapper.table(name: top), !live.isEmpty else {
                throw ThinError(.volumeInUse, "volume \(volume.key) has no table; activate it first", parameters: [volume.key])
            }
            try deviceMapper.create(name: source.name, uuid: source.dmUUID, table: live, readOnly: false, udev: .standard)
        } catch let error as ThinError { throw error } catch {
            throw .backend("cannot set up the mirror's source device for \(volume.key)", error)
        }
        let table = MirrorTable(logDevice: logDevice, regionSectors: record.regionBytes / 512,
                                legs: [MirrorLeg(device: source.path), MirrorLeg(device: nbdDevice)])
        try devices.changing(try sr.devicesRecovered()) { () throws(ThinError) in
            do {
                try deviceMapper.reload(name: top, table: [table.line(lengthSectors: sectors)], readOnly: false)
                try deviceMapper.resume(name: top, udev: .standard)
            } catch {
                throw .backend("cannot make \(volume.key)'s device a mirror (is the dm_mirror module available?)", error)
            }
        }
    }

    /// Marks out of sync the regions the guest provisioned between the first
    /// read of the pool's mappings and the switch (its writes since then
    /// reach both sides): the log is written while the mirror is suspended,
    /// and the kernel reads it back at resume. Returns the regions in sync.
    private func patch(_ volume: VolumeRecord, record: MirrorRecord, log: MirrorDiskLog, full: Bool,
                       before: Set<UInt64>) async throws(ThinError) -> UInt64 {
        let after = try await provisionedRegions(volume, regionBytes: record.regionBytes, full: full)
        let fresh = after.subtracting(before)
        guard !fresh.isEmpty else { return log.inSyncCount }
        let top = names.volumeDevice(volume.uuid).name
        let file = records.logFile(volume.uuid)
        return try devices.changing(try sr.devicesRecovered()) { () throws(ThinError) -> UInt64 in
            do { try host.deviceMapper.suspend(name: top, flush: true) } catch {
                throw .backend("cannot suspend \(volume.key)'s mirror to mark newly written regions", error)
            }
            defer { try? host.deviceMapper.resume(name: top, udev: .standard) }
            // The kernel wrote its bits at suspend: start from those.
            guard var current = System.readBytes(file).flatMap(MirrorDiskLog.init(bytes:)) else {
                throw ThinError(.backendFailure, "cannot read back the region log of \(volume.key)'s mirror")
            }
            for region in fresh where region < current.regions { current.setInSync(region, false) }
            try System.writeBytes(file, current.bytes)
            do { try host.deviceMapper.resume(name: top, udev: .standard) } catch {
                throw .backend("cannot resume \(volume.key)'s mirror", error)
            }
            return current.inSyncCount
        }
    }
}

/// Ending mirrors: on request, at the detach of the domain it was for, and
/// when the process it lived for is gone.
extension SRMirrors {
    /// Ends the mirror: flushes both sides, puts the volume's own table back,
    /// and takes the source device, the remote's nbd device and the log away.
    /// `state` is what it ends as unless the copy was whole (then `complete`,
    /// or `cancelled` when asked so). Safe to run again after a kill.
    @discardableResult
    func end(_ record: MirrorRecord, state requested: MirrorRecord.State,
             failure: String? = nil) throws(ThinError) -> MirrorRecord {
        var record = record
        let deviceMapper = host.deviceMapper
        let top = names.volumeDevice(record.volume).name
        let source = names.mirrorSourceDevice(record.volume)
        let live = ((try? deviceMapper.table(name: top)) ?? nil)?.first
        var final = requested
        // (The highest progress reported: an end run again after a kill must not report less.)
        var progress = System.raiseRecordedMaximum(records.progressFile(record.volume), to: record.endedProgress ?? 0)
        if live?.targetType == .mirror {
            try devices.changing(try sr.devicesRecovered()) { () throws(ThinError) in
                do { try deviceMapper.suspend(name: top, flush: true) } catch {
                    throw .backend("cannot suspend \(record.key)'s mirror to end it", error)
                }
                let now = records.progress(of: record, deviceMapper: deviceMapper)
                let flushed = record.nbdDevice.map(NBDDevices.flush) ?? false
                progress = now.progress
                if now.complete && flushed && requested != .cancelled { final = .complete }
                else if requested == .complete { final = .failed }
                do {
                    guard let own = try deviceMapper.table(name: source.name), !own.isEmpty else {
                        throw ThinError(.backendFailure, "the mirror of \(record.key) lost its source device")
                    }
                    try deviceMapper.reload(name: top, table: own, readOnly: false)
                    FaultInjection.point("mirror-table-restored")
                    try deviceMapper.resume(name: top, udev: .standard)
                } catch let error as ThinError {
                    try? deviceMapper.resume(name: top, udev: .standard)
                    throw error
                } catch {
                    try? deviceMapper.resume(name: top, udev: .standard)
                    throw .backend("cannot put \(record.key)'s own table back", error)
                }
            }
        } else if requested == .complete {
            final = .failed
        }
        if (try? deviceMapper.info(name: source.name)) != nil {
            do { try deviceMapper.remove(name: source.name) } catch {
                throw .backend("cannot remove the mirror's source device \(source.name)", error)
            }
        }
        FaultInjection.point("mirror-source-removed")
        // An end killed after these steps runs them again: each device is let go only while it is still the
        // mirror's (another process may have taken the number since).
        if let nbd = record.nbdDevice {
            let connection = NBDConnection(device: nbd, serverPid: record.nbdServerPid,
                                           serverStartTime: record.nbdServerStartTime)
            NBDDevices.disconnect(connection)
        }
        FaultInjection.point("mirror-remote-disconnected")
        if let loop = record.logDevice, System.loopReads(loop, file: records.logFile(record.volume)) {
            ExternalCommand.runToEnd(Program.loopSetup, ["--detach", loop])
        }
        System.removeFile(records.logFile(record.volume))
        record.nbdDevice = nil
        record.nbdServerPid = nil
        record.nbdServerStartTime = nil
        record.logDevice = nil
        record.state = final
        record.endedProgress = final == .complete ? 1 : progress
        record.failure = final == .failed ? (failure ?? record.failure ?? "the remote failed or the mirror ended early") : nil
        try records.save(record)
        System.removeFile(records.progressFile(record.volume))   // the record holds it now
        System.removeFile(records.failedFile(record.volume))
        return record
    }

    /// Stops a running mirror (`Data.cancel`): what was copied stays on the remote.
    public func stop(operation: String) throws(ThinError) -> MirrorRecord {
        try sr.recovered()
        let record = try require(operation: operation)
        guard !record.state.hasEnded else { return record }
        return try end(record, state: .cancelled)
    }

    /// Stops it if it runs and forgets it (`Data.destroy`).
    public func forget(operation: String) throws(ThinError) {
        let record = try stop(operation: operation)
        records.remove(record.volume)
    }

    /// Ends the mirror of `volume` if `holder` is what it lived for (or any,
    /// when the volume's device goes): at `Datapath.deactivate`, xapi's
    /// signal that the guest is paused, the mirror flushes and ends.
    func endForDetach(of volume: VolumeRecord, holder: String?) throws(ThinError) {
        guard let record = records.load(volume.uuid), !record.state.hasEnded else { return }
        if let holder, let domain = record.domain, domain != holder { return }
        try end(record, state: .complete)
    }

    /// Refuses what would change the table of a mirrored volume's device.
    func requireNotMirrored(_ volume: VolumeRecord, to action: String) throws(ThinError) {
        guard let record = records.load(volume.uuid), !record.state.hasEnded else { return }
        throw ThinError(.volumeInUse, "\(volume.key) is being mirrored to \(record.remote) (operation \(record.operation)); "
                        + "it cannot \(action) until the mirror ends (thinvdi-mirror-stop)", parameters: [volume.key])
    }

    /// Ends mirrors whose start was killed, copies whose process is gone,
    /// and mirrors whose end was killed after the volume's own table went
    /// back (device recovery resumed it: the volume's device is no mirror).
    func endAbandoned() throws(ThinError) {
        for entry in System.directoryEntries(names.mirrorsDirectory) where entry.hasSuffix(".json") {
            guard let uuid = UUID(uuidString: String(entry.dropLast(5))), let record = records.load(uuid),
                  !record.state.hasEnded else { continue }
            let owner = record.owner.map { ProcessClaim.liveProcess(ofOwner: $0) != nil } ?? true
            if record.state == .starting || !owner {
                try end(record, state: .failed, failure: "the process that ran it ended")
            } else if !isLoaded(record) {
                try end(record, state: .failed, failure: "the process ending it was killed; the volume runs on its own table")
            }
        }
    }

    /// Whether the volume's device is the mirror now.
    private func isLoaded(_ record: MirrorRecord) -> Bool {
        let live = (try? host.deviceMapper.table(name: names.volumeDevice(record.volume).name)) ?? nil
        return live?.first?.targetType == .mirror
    }
}
