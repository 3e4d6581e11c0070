import FoundationEssentials
import ThinDeviceMapper
import ThinTools

/// Which blocks of a volume changed since an earlier snapshot of its
/// lineage, from the pool's metadata alone (never by reading data).
///
/// dm-thin stamps every mapping with the pool's time when it is provisioned
/// and advances that time at every snapshot, and a write to a block a
/// snapshot shares always provisions a new mapping. So between a snapshot F
/// and a later state T of the same data: a block T maps with a time at least
/// F's creation time was written after F; a block F maps that T does not was
/// discarded since; every other block T maps is F's. Comparing data block
/// numbers instead (thin_delta) is unsound once a deletion lets the pool
/// reuse blocks.
public struct ChangedBlocks: Sendable, Equatable {
    /// A changed byte range.
    public struct Extent: Sendable, Equatable {
        public var offset: UInt64
        public var length: UInt64
    }

    /// xapi's changed-block granularity: one bit per 64 KiB.
    public static let granularity: UInt64 = 64 << 10

    public var extents: [Extent]
    /// The later volume's size: what the bitmap covers.
    public var virtualSize: UInt64

    /// XenServer's CBT bitmap for `[offset, offset + length)` (the whole
    /// volume by default): one bit per 64 KiB, the first block in the most
    /// significant bit of the first byte, padded with zero bits to whole
    /// 4-byte words (Xen Orchestra reads one big-endian word per 2 MiB).
    public func bitmap(offset: UInt64 = 0, length: UInt64? = nil) -> [UInt8] {
        let granularity = Self.granularity
        let start = offset / granularity
        let end = min(virtualSize, length.map { $0 > UInt64.max - offset ? UInt64.max : offset + $0 } ?? virtualSize)
        let blocks = end > offset ? (end + granularity - 1) / granularity - start : 0
        var bytes = [UInt8](repeating: 0, count: Int((blocks + 31) / 32 * 4))
        for extent in extents {
            let first = max(extent.offset / granularity, start)
            let last = min((extent.offset + extent.length + granularity - 1) / granularity, start + blocks)
            guard first < last else { continue }
            for block in first..<last {
                let bit = block - start
                bytes[Int(bit / 8)] |= 0x80 >> UInt8(bit % 8)
            }
        }
        return bytes
    }

    /// The changed pool blocks (virtual block numbers) between an earlier
    /// state (`fromCreationTime`, the blocks it maps) and a later one (`to`'s
    /// mappings): written since, or discarded since.
    static func poolBlocks(fromCreationTime: UInt32, fromMapped: [Range<UInt64>],
                           to: [ThinDeviceMappings.Run]) -> [Range<UInt64>] {
        let written = to.filter { $0.time >= fromCreationTime }.map(\.blocks)
        let toMapped = merged(to.map(\.blocks))
        return merged(written + subtract(merged(fromMapped), toMapped))
    }

    /// Sorted, non-overlapping ranges covering the same blocks.
    static func merged(_ ranges: [Range<UInt64>]) -> [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !range.isEmpty {
            if let last = result.last, range.lowerBound <= last.upperBound {
                result[result.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                result.append(range)
            }
        }
        return result
    }

    /// `ranges` minus `removed` (both merged).
    static func subtract(_ ranges: [Range<UInt64>], _ removed: [Range<UInt64>]) -> [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        var index = 0
        for range in ranges {
            var start = range.lowerBound
            while index < removed.count, removed[index].upperBound <= start { index += 1 }
            var probe = index
            while probe < removed.count, removed[probe].lowerBound < range.upperBound {
                if removed[probe].lowerBound > start { result.append(start..<removed[probe].lowerBound) }
                start = max(start, removed[probe].upperBound)
                probe += 1
            }
            if start < range.upperBound { result.append(start..<range.upperBound) }
        }
        return result
    }
}

extension ChangeBase {
    /// A live snapshot's creation time and mapped blocks, from thin_dump.
    init(device: ThinDeviceMappings) {
        self.init(creationTime: device.creationTime,
                  mapped: ChangedBlocks.merged(device.runs.map(\.blocks)))
    }
}

extension SRLineage {
    /// The blocks of `toReference` that changed since `fromReference`, an
    /// earlier snapshot of its lineage. Refused, never guessed, when that
    /// cannot be proven from the catalog (see `derives`).
    public func changedBlocks(from fromReference: String, to toReference: String) async throws(ThinError) -> ChangedBlocks {
        let from = try sr.requireVolume(fromReference)
        return try await changedBlocks(from: from, to: try sr.requireVolume(toReference))
    }

    /// The same for states the caller resolved already.
    func changedBlocks(from: VolumeRecord, to: VolumeRecord) async throws(ThinError) -> ChangedBlocks {
        guard from.uuid != to.uuid else {
            throw .invalid("\(from.key) compared with itself has no changes; give an earlier snapshot and a later volume")
        }
        guard from.kind == .snapshot else {
            throw .invalid("\(from.key) is a \(from.kind.rawValue): changes are counted from a snapshot (the earlier "
                           + "state); give a snapshot of \(to.key)'s lineage first")
        }
        let all = Dictionary(try catalog.volumes().map { ($0.uuid, $0) }, uniquingKeysWith: { first, _ in first })
        try Self.requireDerives(to, from: from, volumes: all)
        try to.requireData(to: "be compared (give a later volume or snapshot as TO)")
        if from.dataDestroyed && from.changeBase == nil {
            throw ThinError(.catalogInconsistent, "\(from.key)'s data was destroyed but its change record is missing; "
                            + "copy \(to.key) in full instead")
        }
        // Across a hydration the same unmapped block read the template then and reads zeros now (after a
        // discard): the mappings cannot tell, so everything counts as changed.
        if from.originTemplate != to.originTemplate {
            return ChangedBlocks(extents: to.virtualSize > 0 ? [ChangedBlocks.Extent(offset: 0, length: to.virtualSize)] : [],
                                 virtualSize: to.virtualSize)
        }
        let ids = (from.dataDestroyed ? [] : [from.thinID.value]) + [to.thinID.value]
        let dump = try await mappings(of: ids)
        let devices = dump.devices
        let fromBase: ChangeBase
        if let kept = from.changeBase, from.dataDestroyed {
            fromBase = kept
        } else {
            guard let fromDevice = devices.first(where: { $0.deviceID == from.thinID.value }) else {
                throw ThinError(.catalogInconsistent, "the pool lacks the thin device of \(from.key); run thinsr-check")
            }
            fromBase = ChangeBase(device: fromDevice)
        }
        guard let toDevice = devices.first(where: { $0.deviceID == to.thinID.value }) else {
            throw ThinError(.catalogInconsistent, "the pool lacks the thin device of \(to.key); run thinsr-check")
        }
        // Mapping times are 24 bits and only move forward while the metadata is
        // the kernel's own: a pool time behind FROM's (metadata rebuilt from
        // older roots) or near the wrap cannot be trusted.
        guard dump.poolTime >= fromBase.creationTime, dump.poolTime < (1 << 24) - 1 else {
            throw ThinError(.invalidArgument, "the pool's time (\(dump.poolTime)) cannot order writes against \(from.key)'s "
                            + "creation (\(fromBase.creationTime)); copy \(to.key) in full instead")
        }
        let blockBytes = try record.blockSizeBytes
        let blocks = ChangedBlocks.poolBlocks(fromCreationTime: fromBase.creationTime, fromMapped: fromBase.mapped,
                                              to: toDevice.runs)
        let extents = blocks.compactMap { range -> ChangedBlocks.Extent? in
            let offset = range.lowerBound * blockBytes
            guard offset < to.virtualSize else { return nil }
            return ChangedBlocks.Extent(offset: offset, length: min(range.upperBound * blockBytes, to.virtualSize) - offset)
        }
        return ChangedBlocks(extents: extents, virtualSize: to.virtualSize)
    }

    /// Frees a snapshot's data and keeps what changed-block queries from it
    /// need (xapi's `Volume.data_destroy`): its thin device's creation time
    /// and the blocks it mapped go into its row, then the device is deleted
    /// in one pool transaction. The row stays (a `cbt_metadata` volume) until
    /// `thinvdi-destroy`. Destroying the data of a data-destroyed snapshot
    /// succeeds and changes nothing.
    public func destroyData(_ reference: String) async throws(ThinError) -> VolumeRecord {
        try sr.recovered()
        let volume = try sr.requireVolume(reference)
        guard !volume.dataDestroyed else { return volume }
        guard volume.kind == .snapshot else {
            throw .invalid("\(volume.key) is a \(volume.kind.rawValue); only a snapshot's data can be destroyed "
                           + "(it then stays as the base of thinvdi-changed)")
        }
        try sr.requireNotHydrating(volume, to: "have its data destroyed")
        try sr.requireDetached(volume, "detach it with thinvdi-detach first")
        guard let device = try await mappings(of: [volume.thinID.value]).devices.first else {
            throw ThinError(.catalogInconsistent, "the pool lacks the thin device of \(volume.key); run thinsr-check")
        }
        let base = ChangeBase(device: device)
        try sr.transact([.delete(volume.thinID)]) { catalog throws(ThinError) in
            try catalog.setPendingDataDestroy(volume: volume.uuid, base: base)
        }
        return try sr.requireVolume(volume.uuid.lowercased)
    }

    /// `thin_dump` of these thin devices through the pool's metadata snapshot.
    func mappings(of ids: [UInt32]) async throws(ThinError) -> ThinMappingsDump {
        let programs = host.programs
        return try await sr.withMetadataSnapshot { path throws(ThinError) in
            do {
                return try await programs.dumpMappings(metadataDevice: path, metadataSnapshot: true, deviceIDs: ids)
            } catch {
                throw ThinError.backend("thin_dump of the volumes' mappings failed", error)
            }
        }
    }

    /// Refuses unless `later`'s data provably descends from snapshot
    /// `earlier`'s: walking back from `later` through the volumes its thin
    /// devices were made from (each with the transaction that made it), some
    /// volume must be `earlier` itself or the volume `earlier` was taken of,
    /// in a window where that volume held the data `later` goes back to. A
    /// revert in between, a snapshot of another disk, or rows from before
    /// these records existed cannot be proven, so they are refused.
    static func requireDerives(_ later: VolumeRecord, from earlier: VolumeRecord,
                               volumes: [UUID: VolumeRecord]) throws(ThinError) {
        let unproven = ThinError(.invalidArgument, "\(earlier.key) is not an earlier state of \(later.key) that "
                                 + "thinsr can prove (another disk's lineage, a revert in between, or volumes made "
                                 + "before thinsr recorded where data comes from); copy \(later.key) in full instead")
        guard let taken = earlier.dataSince, let takenOf = earlier.dataSource else { throw unproven }
        var node = later
        var until = UInt64.max  // the last moment of `node`'s history that `later` holds
        for _ in 0...volumes.count {
            if node.uuid == earlier.uuid { return }
            // The data followed is what `node` held at `until`: a device it made later
            // (a revert since) is another history, whatever it came from.
            guard node.dataSince ?? 0 < until else { throw unproven }
            // No record (a row from before these columns): its current thin
            // device predates every recorded snapshot, but where it came from is unknown.
            if node.uuid == takenOf, node.dataSince ?? 0 < taken, taken <= until { return }
            guard let since = node.dataSince, let source = node.dataSource, let next = volumes[source] else {
                throw unproven
            }
            until = since
            node = next
        }
        throw unproven
    }
}
