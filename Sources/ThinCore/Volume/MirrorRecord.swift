public import FoundationEssentials
import ThinDeviceMapper

/// What this host knows of one volume's mirror, kept in the SR's run
/// directory (tmpfs: a mirror does not outlive the boot, nor does its
/// record). Written before any device is made, so a killed start or stop is
/// undone from it by the next command.
public struct MirrorRecord: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// Devices are being set up; the volume is not mirrored yet.
        case starting
        /// The volume's device is the mirror.
        case running
        /// Ended with every region copied and flushed to the remote.
        case complete
        /// Ended, or the remote failed, before the copy was whole.
        case failed
        /// Stopped on request before the copy was whole.
        case cancelled

        public var hasEnded: Bool { self == .complete || self == .failed || self == .cancelled }
    }

    /// The operation's id as xapi's `Data.*` calls carry it: `<sr uuid>/<volume uuid>`.
    public var operation: String
    public var volume: UUID
    public var key: String
    public var remote: String
    /// The holder (xapi's domain) whose detach ends the mirror; nil: the
    /// volume's own detach ends it.
    public var domain: String?
    /// The owner mark of the process the mirror lives for (a copy of a
    /// detached volume); nil when it lives until the volume is detached.
    public var owner: String?
    public var nbdDevice: String?
    /// The qemu-nbd process bound to `nbdDevice` (and its start time): one
    /// whose remote stopped answering never ends by itself.
    public var nbdServerPid: Int32?
    public var nbdServerStartTime: UInt64?
    /// How long the remote may leave a request unanswered before its leg fails.
    public var remoteTimeoutSeconds: UInt32?
    public var logDevice: String?
    public var regionBytes: UInt64
    public var regions: UInt64
    /// Regions marked in sync when it began: nothing to copy there.
    public var inSyncAtStart: UInt64
    public var state: State
    /// Where the copy was when it ended (0...1).
    public var endedProgress: Double?
    /// Why it failed, once it did.
    public var failure: String?

    static func operation(sr: SRNames, volume: UUID) -> String { "\(sr.uuidString)/\(volume.lowercased)" }

    /// The SR and volume an operation id names; nil for anything else.
    public static func parse(operation: String) -> (sr: UUID, volume: UUID)? {
        let parts = operation.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let sr = UUID(uuidString: String(parts[0])), let volume = UUID(uuidString: String(parts[1]))
        else { return nil }
        return (sr, volume)
    }
}

/// How far a mirror is, as `Data.stat` reports it.
public struct MirrorProgress: Sendable, Equatable {
    public var record: MirrorRecord
    public var failed: Bool
    /// Every region is copied and each write now reaches both sides.
    public var complete: Bool
    public var progress: Double
    /// Regions copied (or needing no copy) of all.
    public var inSyncRegions: UInt64
}

/// The records of one SR's mirrors, read without the SR lock (a status
/// poll is one file and one device-mapper status).
struct MirrorRecords {
    let names: SRNames

    /// The refusal of an operation id this host has no mirror for.
    static func unknown(_ operation: String) -> ThinError {
        ThinError(.invalidArgument, "no mirror operation \"\(operation.prefix(200))\" on this host; list them "
                  + "with thinvdi-mirror-stat")
    }

    func path(_ volume: UUID) -> String { "\(names.mirrorsDirectory)/\(volume.lowercased).json" }
    func logFile(_ volume: UUID) -> String { "\(names.mirrorsDirectory)/\(volume.lowercased).log" }
    /// The highest progress reported for the running mirror (see `progress`).
    func progressFile(_ volume: UUID) -> String { "\(names.mirrorsDirectory)/\(volume.lowercased).progress" }
    /// Made the first time a status read sees a leg or the log fail: the
    /// kernel forgets the failure once its (failed) recovery ends.
    func failedFile(_ volume: UUID) -> String { "\(names.mirrorsDirectory)/\(volume.lowercased).failed" }

    func load(_ volume: UUID) -> MirrorRecord? {
        guard let text = System.readFile(path(volume)) else { return nil }
        return try? JSONDecoder().decode(MirrorRecord.self, from: Data(text.utf8))
    }

    func save(_ record: MirrorRecord) throws(ThinError) {
        try System.makeDirectories(names.mirrorsDirectory)
        let data: Data
        do { data = try JSONEncoder().encode(record) } catch {
            throw ThinError(.backendFailure, "cannot encode the record of \(record.key)'s mirror")
        }
        let temporary = path(record.volume) + ".new"
        try System.writeFile(temporary, String(decoding: data, as: UTF8.self))
        try System.rename(temporary, to: path(record.volume))
    }

    func remove(_ volume: UUID) {
        System.removeFile(path(volume))
        System.removeFile(logFile(volume))
        System.removeFile(progressFile(volume))
        System.removeFile(failedFile(volume))
    }

    func all() -> [MirrorRecord] {
        System.directoryEntries(names.mirrorsDirectory).filter { $0.hasSuffix(".json") }
            .compactMap { UUID(uuidString: String($0.dropLast(5))) }.compactMap(load).sorted { $0.key < $1.key }
    }

    /// The mirror's state now: from the kernel's status while it runs, from
    /// the record once it ended.
    func progress(of record: MirrorRecord, deviceMapper: any DeviceMapperControl) -> MirrorProgress {
        if record.state.hasEnded {
            return MirrorProgress(record: record, failed: record.state != .complete, complete: record.state == .complete,
                                  progress: record.endedProgress ?? 0, inSyncRegions: record.inSyncAtStart)
        }
        let line = ((try? deviceMapper.status(name: names.volumeDevice(record.volume).name)) ?? nil)?.first
        guard record.state == .running else {
            return MirrorProgress(record: record, failed: false, complete: false, progress: 0,
                                  inSyncRegions: record.inSyncAtStart)
        }
        guard let line, line.targetType == .mirror, let status = MirrorStatus(parameters: line.parameters) else {
            // The volume's device is no longer the mirror, and no stop recorded why.
            return MirrorProgress(record: record, failed: true, complete: false,
                                  progress: highest(record, now: 0), inSyncRegions: record.inSyncAtStart)
        }
        let now = Self.fraction(inSync: status.inSyncRegions, of: status.totalRegions, atStart: record.inSyncAtStart)
        // dm-raid1 without handle_errors counts a failed region's recovery as done and, when the count is whole,
        // clears every leg's errors (reset_ms_flags): a failure seen once stays.
        if !status.isHealthy { try? System.touch(failedFile(record.volume)) }
        let failed = !status.isHealthy || System.exists(failedFile(record.volume))
        return MirrorProgress(record: record, failed: failed, complete: !failed && status.isInSync,
                              progress: highest(record, now: now), inSyncRegions: status.inSyncRegions)
    }

    /// The kernel's count of regions in sync drops when a write to a copied
    /// region fails on the remote (the region is then out of sync): the
    /// progress reported is the highest seen, so it never goes back.
    private func highest(_ record: MirrorRecord, now: Double) -> Double {
        System.raiseRecordedMaximum(progressFile(record.volume), to: now)
    }

    /// The share of the regions to copy that are copied: regions in sync at
    /// the start count for nothing, so it starts at 0 and only grows.
    static func fraction(inSync: UInt64, of total: UInt64, atStart: UInt64) -> Double {
        guard total > atStart else { return 1 }
        let done = inSync > atStart ? inSync - atStart : 0
        return min(1, Double(done) / Double(total - atStart))
    }
}
