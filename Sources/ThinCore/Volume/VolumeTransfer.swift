import FoundationEssentials
import ThinDeviceMapper
import ThinTools
import ThinTrace
#if canImport(Glibc)
import Glibc
#endif

/// What an export reads of a volume, from the pool's metadata: every byte
/// range is data (read and written), zero (nothing provisioned: a hole), or,
/// for an export against a base, unchanged since the base (left to the
/// backing file).
public struct ExportExtents: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case data, zero, unchanged
    }

    public struct Run: Sendable, Equatable {
        public var offset: UInt64
        public var length: UInt64
        public var kind: Kind
    }

    public var runs: [Run]
    public var virtualSize: UInt64

    /// The bytes the export reads.
    public var dataBytes: UInt64 { runs.filter { $0.kind == .data }.reduce(0) { $0 + $1.length } }

    /// The runs as nbdkit's extentlist filter reads them ("offset length
    /// type"): NBD block status says "hole,zero" where nothing is
    /// provisioned, and "hole" alone (allocated below, in the base) where
    /// nothing changed, which qemu-img convert -B leaves to the backing file.
    public var extentList: String {
        runs.map { run in
            switch run.kind {
            case .data: return "\(run.offset) \(run.length)\n"
            case .zero: return "\(run.offset) \(run.length) hole,zero\n"
            case .unchanged: return "\(run.offset) \(run.length) hole\n"
            }
        }.joined()
    }

    /// Runs covering `[0, size)`: `marked` ranges (sorted, merged, in bytes)
    /// are `inside`, the rest `outside`.
    static func cover(_ size: UInt64, marked: [Range<UInt64>], inside: Kind, outside: Kind) -> [Run] {
        var runs: [Run] = []
        var position: UInt64 = 0
        for range in marked {
            let lower = min(range.lowerBound, size), upper = min(range.upperBound, size)
            guard lower < upper else { continue }
            if lower > position { runs.append(Run(offset: position, length: lower - position, kind: outside)) }
            runs.append(Run(offset: lower, length: upper - lower, kind: inside))
            position = upper
        }
        if position < size { runs.append(Run(offset: position, length: size - position, kind: outside)) }
        return runs
    }

    /// A whole volume: its mapped pool blocks are data.
    static func whole(size: UInt64, mapped: [Range<UInt64>], blockBytes: UInt64) -> ExportExtents {
        let bytes = ChangedBlocks.merged(mapped).map { $0.lowerBound * blockBytes..<$0.upperBound * blockBytes }
        return ExportExtents(runs: cover(size, marked: bytes, inside: .data, outside: .zero), virtualSize: size)
    }

    /// Against a base: inside the changed ranges, mapped bytes are data and
    /// the rest zero (discarded since the base); outside them, unchanged.
    static func incremental(size: UInt64, changed: [ChangedBlocks.Extent], whole: ExportExtents) -> ExportExtents {
        let changedRanges = changed.map { $0.offset..<$0.offset + $0.length }
        var runs: [Run] = []
        for run in whole.runs {
            let end = run.offset + run.length
            let pieces = changedRanges.compactMap { range -> Range<UInt64>? in
                let lower = max(range.lowerBound, run.offset), upper = min(range.upperBound, end)
                return lower < upper ? lower - run.offset..<upper - run.offset : nil
            }
            runs += cover(run.length, marked: pieces, inside: run.kind, outside: .unchanged)
                .map { Run(offset: $0.offset + run.offset, length: $0.length, kind: $0.kind) }
        }
        // Neighbours of one kind become one run.
        var merged: [Run] = []
        for run in runs {
            if let last = merged.last, last.kind == run.kind, last.offset + last.length == run.offset {
                merged[merged.count - 1].length += run.length
            } else {
                merged.append(run)
            }
        }
        return ExportExtents(runs: merged, virtualSize: size)
    }
}

extension AttachedSR {
    /// What an export of `reference` reads: the whole volume, or with
    /// `base` only what changed since that earlier snapshot (the same proof
    /// as `changedBlocks`, refused where it cannot be given).
    public func exportExtents(of reference: String, since base: String? = nil) async throws(ThinError) -> ExportExtents {
        let volume = try requireVolume(reference)
        try volume.requireData(to: "be exported")
        if volume.isPreallocated {
            // Every byte of a raw LV is data (zeroed ones too): nothing records which were written.
            if base != nil { try volume.requireThin(to: "be exported incrementally (--base)") }
            return ExportExtents.whole(size: volume.virtualSize, mapped: [0..<(volume.virtualSize + 511) / 512],
                                       blockBytes: 512)
        }
        if volume.originTemplate != nil {
            // A block the volume lacks is the template's, not a hole: every byte is data, and what changed
            // since a base is data too (a discarded block shows the template again, not zeros).
            let every = ExportExtents.whole(size: volume.virtualSize, mapped: [0..<(volume.virtualSize + 511) / 512],
                                            blockBytes: 512)
            guard let base else { return every }
            let changes = try await lineage.changedBlocks(from: try requireVolume(base), to: volume)
            return ExportExtents.incremental(size: volume.virtualSize, changed: changes.extents, whole: every)
        }
        guard let device = try await lineage.mappings(of: [volume.thinID.value]).devices.first else {
            throw ThinError(.catalogInconsistent, "the pool lacks the thin device of \(volume.key); run thinsr-check")
        }
        let whole = ExportExtents.whole(size: volume.virtualSize, mapped: device.runs.map(\.blocks),
                                        blockBytes: try record.blockSizeBytes)
        guard let base else { return whole }
        let changes = try await lineage.changedBlocks(from: try requireVolume(base), to: volume)
        return ExportExtents.incremental(size: volume.virtualSize, changed: changes.extents, whole: whole)
    }

    /// Attaches a volume for this process to read while the SR lock is not
    /// held (an export, an NBD server): read-only, shared with other readers,
    /// and refused while it is attached read-write, because then a guest
    /// may write it under the copy (snapshot it and read the snapshot).
    public func attachForReading(_ reference: String) async throws(ThinError) -> (VolumeRecord, path: String) {
        try recovered()
        let volume = try requireVolume(reference)
        try volume.requireData(to: "be read")
        if let info = try devices.info(volume.uuid), !info.readOnly {
            throw ThinError(.volumeInUse, "volume \(volume.key) is attached read-write, so a guest may be writing it; "
                            + "snapshot it (thinvdi-snapshot) and read the snapshot", parameters: [volume.key])
        }
        return try await attachments.attach(volume, readOnly: true, holder: ProcessClaim.holderName())
    }

    /// Attaches a volume read-write for this process alone (a writable NBD
    /// export): refused for snapshots and while anyone else has it attached.
    public func attachForWriting(_ reference: String) async throws(ThinError) -> (VolumeRecord, path: String) {
        try recovered()
        let volume = try requireVolume(reference)
        try volume.requireData(to: "be written")
        guard volume.readWrite, volume.kind != .snapshot else {
            throw ThinError(.invalidArgument, "\(volume.key) is a \(volume.kind.rawValue) and read-only; serve it "
                            + "without --writable, or clone it (thinvdi-clone) and serve the clone")
        }
        try requireDetached(volume, "detach it first: a writable export must be its only user")
        return try await attachments.attach(volume, readOnly: false, holder: ProcessClaim.holderName())
    }

    /// Lets this process's hold on a volume go (see `attachForReading`).
    public func releaseHold(_ volume: VolumeRecord) throws(ThinError) {
        try attachments.detach(volume, holder: ProcessClaim.holderName())
    }

    // MARK: imports

    /// Makes the volume an import fills: marked with this process as its
    /// owner (so a killed import is found and removed by the next writer)
    /// and attached read-write for it. `allocatedBytes` must fit in the
    /// pool's free data space now: an import never starts what it cannot end.
    public func beginImport(name: String, description: String, sizeBytes: UInt64,
                            allocatedBytes: UInt64) async throws(ThinError) -> (VolumeRecord, path: String) {
        let usage = try recovered()
        let blockBytes = try record.blockSizeBytes
        let freeBytes = (usage.totalDataBlocks - min(usage.usedDataBlocks, usage.totalDataBlocks)) * blockBytes
        guard allocatedBytes <= freeBytes else {
            throw ThinError(.noSpace, "the image holds \(ByteSize.format(allocatedBytes)) of data but the pool has "
                            + "\(ByteSize.format(freeBytes)) free; grow it with thinsr-extend first")
        }
        let volume = try volumes.createVolume(name: name, description: description, sizeBytes: sizeBytes, sharable: false,
                                      importOwner: ProcessClaim.current.ownerMark)
        do {
            return try await attachments.attach(volume, readOnly: false, holder: ProcessClaim.holderName())
        } catch {
            try? abandonImport(volume)
            throw error
        }
    }

    /// The import is whole (its data flushed): the mark is cleared first, so
    /// nothing can take the volume for a killed import from here on, then it
    /// is detached; a detach that fails (a reader such as udev holding the
    /// device for a moment) keeps the volume and is reported.
    public func finishImport(_ volume: VolumeRecord) throws(ThinError) -> (VolumeRecord, detachFailure: ThinError?) {
        try catalog.setOwner(nil, of: .filling, volume: volume.uuid)
        var failure: ThinError?
        do { try attachments.detach(volume) } catch { failure = error }
        return (try requireVolume(volume.uuid.lowercased), failure)
    }

    /// Removes what an import made: its device and its volume.
    public func abandonImport(_ volume: VolumeRecord) throws(ThinError) {
        try devices.deactivate(volume.uuid, key: volume.key)
        attachments.holders(of: volume).clear()
        try volumes.destroyVolume(volume.uuid.lowercased)
    }

    /// Imports whose process is gone (killed, or from before a reboot) are
    /// removed, so no half-filled volume outlives them. Runs in recovery.
    func removeAbandonedImports() throws(ThinError) {
        for (uuid, owner) in try catalog.owners(of: .filling) where ProcessClaim.liveProcess(ofOwner: owner) == nil {
            guard let volume = try catalog.volume(matching: uuid.lowercased) else {
                try catalog.setOwner(nil, of: .filling, volume: uuid)
                continue
            }
            // An engine the killed import started may still hold the device (it
            // ends when its copy does), or removing it may fail: leave it for a
            // later writer rather than stop this one.
            do { try abandonImport(volume) } catch {
                Trace.step("import", "remove abandoned import \(volume.key)", outcome: "left: \(error)", since: .now)
            }
        }
    }
}

extension AttachedSR {
    /// Scratch files of this SR's running imports, exports and NBD servers
    /// (extent lists, pid files), on tmpfs.
    public func transferDirectory() throws(ThinError) -> String {
        let directory = names.transfersDirectory
        try System.makeDirectories(directory)
        return directory
    }
}

/// Where this host last exported each volume, so `thinvdi-export --base
/// SNAPSHOT` can name the base's image as the new image's backing file
/// without being told. Host knowledge, not SR state: kept under
/// /var/lib/thinsr/exports/<sr>/<volume>, one absolute path per file.
public enum ExportRecords {
    static func path(sr: SRNames, volume: VolumeRecord) -> String {
        Paths.exportRecord(sr: sr.uuid, volume: volume.uuid)
    }

    /// Records where `volume` was exported. When that fails, an older
    /// record is removed too: --base must never find a stale image.
    public static func remember(sr: SRNames, volume: VolumeRecord, image: String) throws(ThinError) {
        let file = path(sr: sr, volume: volume)
        do {
            try System.makeDirectories(PathText.directory(of: file))
            try System.writeFile(file, image + "\n")
        } catch {
            System.removeFile(file)
            throw error
        }
    }

    public static func lastExport(sr: SRNames, volume: VolumeRecord) -> String? {
        guard let text = System.readFile(path(sr: sr, volume: volume)) else { return nil }
        let image = text.split(separator: "\n").first.map(String.init) ?? ""
        return image.isEmpty ? nil : image
    }
}
