import FoundationEssentials
/// How a `thinvdi-mirror` run ended.
public enum MirrorOutcome: Sendable, Equatable {
    /// Started; the kernel copies on (asked not to wait).
    case started(MirrorRecord)
    /// An attached volume's mirror is in sync: every write now reaches
    /// both sides until the volume's detach (or thinvdi-mirror-stop) ends it.
    case synchronized(MirrorProgress)
    /// A detached volume was copied whole to the remote and flushed; the
    /// mirror ended with the run.
    case copied(MirrorRecord)
}

/// A mirror as a job. An attached volume's mirror is set up in one phase
/// and lives in the kernel, not in this process; the job only watches it
/// (without the SR lock) until it is in sync. A detached volume is attached
/// for this process, mirrored until in sync, and let go: a copy.
public struct MirrorJob: Sendable {
    public let context: JobContext

    public init(_ context: JobContext) { self.context = context }

    /// How often the mirror's status is read.
    static let pollMilliseconds: UInt32 = 200

    public func run(_ request: MirrorRequest, wait: Bool) async throws(ThinError) -> MirrorOutcome {
        let attached = try await context.phase { sr throws(ThinError) in
            try await sr.mirrors.isAttached(request.volume)
        }
        if attached {
            let record = try await context.phase { sr throws(ThinError) in try await sr.mirrors.start(request) }
            guard wait else { return .started(record) }
            return .synchronized(try await watch(record, stopping: true))
        }
        guard request.domain == nil else {
            throw ThinError(.volumeInUse, "volume \(request.volume) is not attached for \(request.domain ?? ""); "
                            + "attach and activate it for that domain first", parameters: [request.volume])
        }
        guard wait else {
            throw ThinError(.invalidArgument, "\(request.volume) is detached: its copy runs in the foreground (without "
                            + "--background), or attach it first to mirror it live")
        }
        let (lease, _) = try await VolumeLease.acquire(request.volume, mode: .writing, context: context) { _ throws(ThinError) in }
        return try await lease.whileHeld { _ throws(ThinError) in
            let record = try await context.phase { sr throws(ThinError) in
                try await sr.mirrors.start(request, owner: ProcessClaim.current.ownerMark)
            }
            do throws(ThinError) {
                _ = try await watch(record, stopping: false)
            } catch {
                _ = try? await context.phase { sr throws(ThinError) in
                    try sr.mirrors.end(record, state: error.code == .cancelled ? .cancelled : .failed, failure: error.message)
                }
                throw error
            }
            let ended = try await context.phase { sr throws(ThinError) in try sr.mirrors.end(record, state: .complete) }
            guard ended.state == .complete else {
                throw ThinError(.backendFailure, "the copy of \(record.key) to \(record.remote) failed at the end: "
                                + (ended.failure ?? "the remote did not take the last writes"))
            }
            return .copied(ended)
        }
    }

    /// Watches the mirror until it is in sync; a cancel stops it (with
    /// `stopping`, here; else the caller ends it) and a failure ends it.
    private func watch(_ record: MirrorRecord, stopping: Bool) async throws(ThinError) -> MirrorProgress {
        guard let (srUUID, _) = MirrorRecord.parse(operation: record.operation) else {
            throw ThinError(.backendFailure, "the mirror of \(record.key) has a malformed operation id")
        }
        let records = MirrorRecords(names: SRNames(uuid: srUUID))
        let total = (record.regions - min(record.inSyncAtStart, record.regions)) * record.regionBytes
        context.progress.begin("mirror", total: max(total, 1))
        while true {
            let now = records.progress(of: records.load(record.volume) ?? record, deviceMapper: context.host.deviceMapper)
            context.progress.update(done: UInt64(now.progress * Double(total)))
            if now.complete {
                context.progress.finish()
                return now
            }
            if now.failed {
                let ended = try? await context.phase { sr throws(ThinError) in
                    try sr.mirrors.end(now.record, state: .failed, failure: "the remote failed during the copy")
                }
                throw ThinError(.backendFailure, "the mirror of \(record.key) to \(record.remote) failed"
                                + (ended?.failure.map { ": \($0)" } ?? "") + "; the volume is unchanged and runs on here")
            }
            if context.cancelled {
                if stopping {
                    _ = try? await context.phase { sr throws(ThinError) in try sr.mirrors.end(now.record, state: .cancelled) }
                }
                throw cancelled("mirror of \(record.key)")
            }
            context.system.pause(milliseconds: Self.pollMilliseconds)
        }
    }
}

extension SRMirrors {
    /// Whether the volume is attached (its device exists), however loaded.
    public func isAttached(_ reference: String) async throws(ThinError) -> Bool {
        try sr.recovered()
        return try devices.info(try sr.requireVolume(reference).uuid) != nil
    }
}

/// Mirror status without the SR lock: xapi polls `Data.stat` in a tight
/// loop, each poll a process; it costs one file and one dm status.
public enum MirrorQueries {
    public static func progress(operation: String, host: Host) throws(ThinError) -> MirrorProgress {
        guard let (sr, volume) = MirrorRecord.parse(operation: operation) else { throw MirrorRecords.unknown(operation) }
        let records = MirrorRecords(names: SRNames(uuid: sr))
        guard let record = records.load(volume) else { throw MirrorRecords.unknown(operation) }
        return records.progress(of: record, deviceMapper: host.deviceMapper)
    }

    /// Every mirror of every SR attached on this host.
    public static func all(host: Host) -> [MirrorProgress] {
        System.directoryEntries(Paths.runRoot).compactMap(UUID.init(uuidString:)).sorted { $0.lowercased < $1.lowercased }
            .flatMap { sr in
                let records = MirrorRecords(names: SRNames(uuid: sr))
                return records.all().map { records.progress(of: $0, deviceMapper: host.deviceMapper) }
            }
    }
}
