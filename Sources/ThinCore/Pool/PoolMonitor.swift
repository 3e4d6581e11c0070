import ThinDeviceMapper
import ThinLVM
#if canImport(Glibc)
import Glibc
#endif

/// What one look at an SR's pool found and did (`thinsr-monitor`).
public struct PoolWatchReport: Sendable {
    public enum Level: String, Sendable, Comparable {
        case normal, warning, grown, stuck

        private var rank: Int { [.normal: 0, .warning: 1, .grown: 2, .stuck: 3][self] ?? 0 }
        public static func < (a: Level, b: Level) -> Bool { a.rank < b.rank }
    }

    public var uuid: String
    public var name: String
    public var dataPercent: Int
    public var metadataPercent: Int
    public var level: Level
    /// Data bytes added to the pool by this look.
    public var grownBytes: UInt64
    /// One line for the journal, or nil when nothing is worth saying (a level
    /// already reported is not repeated at every look).
    public var message: String?
    /// A look without the SR lock found the threshold crossed: growing needs
    /// a look with it (`watchPool(grow: true)`).
    public var needsGrowth = false
}

extension SRAdministration {
    /// Looks at the pool once and applies the SR's autoextend policy: at the
    /// threshold, grows data (by the step, or by what the volume group has
    /// when that is less) and metadata (`extend` doubles it past half used),
    /// by the same LVM commands and table reload as `thinsr-extend`, so a
    /// growth killed half way is finished by the next one. A level is
    /// reported once per crossing: the monitor warns, it does not nag.
    ///
    /// Without `grow` (an SR opened to read, no lock: a look must never wait
    /// behind a writer, such as a snapshot suspending a device while the pool
    /// fills) it only reports; crossing the threshold then says `needsGrowth`
    /// and records nothing, and the caller takes the lock if it is free.
    public func watchPool(grow: Bool) async throws(ThinError) -> PoolWatchReport {
        let record = try self.record
        let policy = record.autoextend
        let usage = grow ? try sr.recovered() : try pool.usage()
        let block = record.blockSizeBytes
        let dataPercent = Self.percent(usage.usedDataBlocks, of: usage.totalDataBlocks)
        let metadataPercent = Self.percent(usage.usedMetadataBlocks, of: usage.totalMetadataBlocks)
        let dataBytes = usage.totalDataBlocks * block
        let label = "SR \(record.name.isEmpty ? names.uuidString : record.name) (\(names.uuidString)), pool \(pool.name)"
        let figures = "data \(dataPercent)% used (\(ByteSize.format(usage.usedDataBlocks * block)) of "
            + "\(ByteSize.format(dataBytes))), metadata \(metadataPercent)%"
        var level: PoolWatchReport.Level = max(dataPercent, metadataPercent) >= policy.warningPercent ? .warning : .normal
        var grown: UInt64 = 0
        var action = ""
        let crossed = policy.growsPool && max(dataPercent, metadataPercent) >= policy.thresholdPercent
        if crossed && !grow {
            return PoolWatchReport(uuid: names.uuidString, name: record.name, dataPercent: dataPercent,
                                   metadataPercent: metadataPercent, level: level, grownBytes: 0, message: nil,
                                   needsGrowth: true)
        }
        if crossed { (level, grown, action) = try await growPool(record: record, from: usage, dataPercent: dataPercent) }
        let last = System.readFile(names.monitorLevelFile).flatMap {
            PoolWatchReport.Level(rawValue: String($0.split(whereSeparator: \.isNewline).first ?? ""))
        } ?? .normal
        try? System.writeFile(names.monitorLevelFile, level.rawValue + "\n")
        // Growth is always said; a warning or a stuck pool once per crossing; a return to normal once.
        let say = level == .grown || level != last
        let message = say ? "\(label): \(figures)\(action.isEmpty ? (level == .normal ? ", below the warning level again" : ", at or above the warning level (\(policy.warningPercent)%)") : action)" : nil
        return PoolWatchReport(uuid: names.uuidString, name: record.name, dataPercent: dataPercent,
                               metadataPercent: metadataPercent, level: level, grownBytes: grown, message: message)
    }

    /// Grows the pool past the threshold (see `watchPool`): what it became,
    /// the data bytes added, and the words that say what was done.
    private func growPool(record: SRRecord, from usage: ThinPoolUsage,
                      dataPercent: Int) async throws(ThinError) -> (PoolWatchReport.Level, UInt64, String) {
        let policy = record.autoextend
        let block = record.blockSizeBytes
        let dataBytes = usage.totalDataBlocks * block
        let level: PoolWatchReport.Level
        let grown: UInt64
        let action: String
        let step = dataPercent >= policy.thresholdPercent ? policy.step.bytes(of: dataBytes) : 0
        // The step, or what the volume group has when that is less (metadata,
        // the spare and the catalog may take some of it: halve until it fits).
        let (group, _, _, _, _) = try storage(record.volumeGroup)
        let extent = max(group.extentBytes, 512)
        var request = min(step, group.freeBytes / extent * extent)
        var refusal: ThinError?
        while true {
            do {
                _ = try await extend(SRExtendRequest(size: .by(request), devices: []))
                refusal = nil
                break
            } catch where error.code == .noSpace {
                refusal = error
                guard request >= extent else { break }
                request = request / 2 / extent * extent
            }
        }
        let partial = request < step
        let after = try pool.usage()
        grown = after.totalDataBlocks > usage.totalDataBlocks ? (after.totalDataBlocks - usage.totalDataBlocks) * block : 0
        let metadataGrown = after.totalMetadataBlocks > usage.totalMetadataBlocks
        if grown > 0 || metadataGrown {
            level = .grown
            action = ": grew " + [grown > 0 ? "data by \(ByteSize.format(grown)) to "
                                      + "\(ByteSize.format(after.totalDataBlocks * block))" : nil,
                                  metadataGrown ? "metadata to \(ByteSize.format(after.totalMetadataBlocks * ThinPoolUsage.metadataBlockBytes))" : nil]
                .compactMap { $0 }.joined(separator: " and ")
                + " from volume group \(record.volumeGroup)"
                + (partial ? " (less than the step \(policy.step.text): all the volume group had)" : "")
        } else if group.freeBytes < extent {
            level = .stuck
            action = ": the threshold is \(policy.thresholdPercent)% but volume group \(record.volumeGroup) has no "
                + "free space to grow into; add a device (thinsr-extend --device, or vgextend); when data is full, "
                + "writes \(record.onFull == .queue ? "queue" : "fail")"
        } else {
            // Room in the VG, yet nothing to grow: metadata below half used (extend doubles it past
            // that) or at its maximum, with data below the threshold.
            level = .warning
            action = ": at the threshold (\(policy.thresholdPercent)%) but nothing could grow"
                + (refusal.map { " (\($0.message))" } ?? "")
        }
        return (level, grown, action)
    }

    static func percent(_ used: UInt64, of total: UInt64) -> Int {
        total == 0 ? 0 : Int((used * 100 + total - 1) / total)
    }
}

/// The one pool monitor of this host: a lock under /run/thinsr/locks that a
/// second monitor cannot take, held until the process ends (even killed).
public final class MonitorInstance {
    private let lock: FileLock

    public init() throws(ThinError) {
        guard let lock = try FileLock.attempt(path: Paths.monitorLock, mode: .exclusive) else {
            let pid = System.readFile(Paths.monitorPidFile).map { String($0.split(whereSeparator: \.isNewline).first ?? "") } ?? "?"
            throw ThinError(.deviceInUse, "another thinsr-monitor is running (pid \(pid)); one watches every SR of "
                            + "this host, so stop it before starting another")
        }
        self.lock = lock
        try System.writeFile(Paths.monitorPidFile, "\(getpid())\n")
    }

    deinit {
        System.removeFile(Paths.monitorPidFile)
        lock.release()
    }
}
