public import FoundationEssentials
import ThinDeviceMapper
import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// Snapshots, clones, revert, resize and metadata: all metadata-only on dm-thin.
extension AttachedSR {
    /// Makes a read-only snapshot (`.snapshot`) or a writable clone (`.clone`) of
    /// any volume, snapshot or clone. An attached writable source is suspended
    /// around `create_snap` (flushing what was written before) and resumed.
    public func copyVolume(_ reference: String, kind: VolumeKind, name: String?) throws(ThinError) -> VolumeRecord {
        precondition(kind != .volume)
        if let name { try Naming.validateLabel(name, what: "name") }
        let usage = try recover()
        try requireSpaceForNewDevice(usage)
        let source = try requireVolume(reference)
        let record = try self.record
        let thinID = try allocateThinID(after: record.nextThinID)
        let label = name ?? source.name
        let copy = VolumeRecord(
            uuid: UUID(), key: Naming.deriveKey(fromName: label, existing: try catalog.allKeys()), name: label,
            description: source.description, thinID: thinID, virtualSize: source.virtualSize, kind: kind,
            readWrite: kind == .clone, sharable: false, createdAt: System.currentTime(), keys: [:],
            parentUUID: source.uuid, snapshotOf: kind == .snapshot ? source.uuid : nil, state: .creating)
        let device = names.volumeDevice(source.uuid)
        let info = try DeviceMapper.infoOrThrow(device)
        let suspend = info.map { !$0.readOnly && !$0.suspended } ?? false
        if suspend {
            do { try DeviceMapper.suspend(name: device) } catch {
                throw .backend("cannot suspend \(source.key) for a consistent snapshot", error)
            }
            FaultInjection.point("origin-suspended")
        }
        defer { if suspend { try? DeviceMapper.resume(name: device) } }
        try transact([.createSnapshot(thinID, origin: source.thinID)], recovered: usage) { catalog throws(ThinError) in
            try catalog.insert(copy)
            try catalog.setNextThinID(thinID + 1)
        }
        guard let created = try catalog.volume(matching: copy.key) else {
            throw ThinError(.catalogInconsistent, "volume \(copy.key) vanished after creation")
        }
        return created
    }

    /// Makes `reference`'s contents those of `snapshotReference`, in place and
    /// in O(1): a new thin id is snapshotted from the snapshot and the volume
    /// switches to it; its key, uuid, name, description and keys stay. An
    /// attached volume is refused with `Volume_in_use` (its device holds the
    /// old thin id open).
    public func revertVolume(_ reference: String, to snapshotReference: String) throws(ThinError) {
        let usage = try recover()
        try requireSpaceForNewDevice(usage)
        let volume = try requireVolume(reference)
        let snapshot = try requireVolume(snapshotReference)
        guard volume.readWrite else {
            throw .invalid("\(volume.key) is a read-only snapshot; revert a writable volume to one of its snapshots")
        }
        guard volume.uuid != snapshot.uuid else { throw .invalid("cannot revert \(volume.key) to itself") }
        if try DeviceMapper.infoOrThrow(names.volumeDevice(volume.uuid)) != nil {
            throw ThinError(.volumeInUse, "volume \(volume.key) is attached; detach it with thinvdi-detach before "
                            + "reverting it", parameters: [volume.key])
        }
        let thinID = try allocateThinID(after: try self.record.nextThinID)
        try transact([.createSnapshot(thinID, origin: snapshot.thinID), .delete(volume.thinID)], recovered: usage) { catalog throws(ThinError) in
            try catalog.setPendingSwitch(volume: volume.uuid, thinID: thinID, virtualSize: snapshot.virtualSize)
            try catalog.setNextThinID(thinID + 1)
        }
    }

    /// Grows a volume; an attached volume's device grows at once. Shrinking is refused.
    public func resizeVolume(_ reference: String, to newSize: UInt64) throws(ThinError) {
        try recover()
        let volume = try requireVolume(reference)
        let size = ByteSize.roundUp(newSize, to: 512)
        guard volume.readWrite else { throw .invalid("\(volume.key) is a read-only snapshot and cannot be resized") }
        guard size >= volume.virtualSize else {
            throw .invalid("\(volume.key) is \(ByteSize.format(volume.virtualSize)); shrinking to "
                           + "\(ByteSize.format(size)) is not supported (it would lose data)")
        }
        guard size <= maximumVolumeBytes else {
            throw .invalid("size \(ByteSize.format(size)) exceeds the largest volume, \(ByteSize.format(maximumVolumeBytes))")
        }
        guard size > volume.virtualSize else { return }
        // The catalog first: a crash before the reload leaves a device that grows on its next attach.
        try catalog.setVirtualSize(size, volume: volume.uuid)
        FaultInjection.point("size-recorded")
        let device = names.volumeDevice(volume.uuid)
        guard let info = try DeviceMapper.infoOrThrow(device) else { return }
        let table = ThinTable(poolDevice: "/dev/mapper/\(names.poolDevice)", deviceID: volume.thinID)
        do {
            try DeviceMapper.reload(name: device, table: [table.line(lengthSectors: size / 512)], readOnly: info.readOnly)
            FaultInjection.point("table-loaded")
            try DeviceMapper.resume(name: device)
        } catch {
            try? catalog.setVirtualSize(volume.virtualSize, volume: volume.uuid)
            throw .backend("cannot grow the attached device of \(volume.key)", error)
        }
    }

    /// Changes name, description and keys; the volume's key never changes.
    public func setMetadata(_ reference: String, name: String?, description: String?,
                            set: [(String, String)], unset: [String]) throws(ThinError) {
        if let name { try Naming.validateLabel(name, what: "name") }
        if let description { try Naming.validateLabel(description, what: "description") }
        for (key, value) in set {
            try Naming.validateLabel(key, what: "key", maximumBytes: 4096)
            try Naming.validateLabel(value, what: "value of \(key)")
            guard !key.isEmpty else { throw .invalid("an empty key is not allowed (expected KEY=VALUE)") }
        }
        let volume = try requireVolume(reference)
        try catalog.database.transaction { () throws(ThinError) in
            try catalog.setLabel(name: name, description: description, volume: volume.uuid)
            for (key, value) in set { try catalog.setKey(key, value: value, volume: volume.uuid) }
            for key in unset { try catalog.unsetKey(key, volume: volume.uuid) }
            FaultInjection.point("metadata-written")  // before the commit: nothing is kept
        }
    }
}

/// One node of the lineage tree, with space figures from `thin_ls`.
public struct LineageNode: Sendable {
    public var volume: VolumeRecord
    public var mappedBytes: UInt64
    public var exclusiveBytes: UInt64
    public var sharedBytes: UInt64
    public var children: [LineageNode]
}

extension AttachedSR {
    /// The lineage forest of the SR, or the subtree rooted at `reference`.
    public func lineage(_ reference: String? = nil) async throws(ThinError) -> [LineageNode] {
        let volumes = try catalog.volumes()
        let usage = try await thinUsage()
        let known = Set(volumes.map(\.uuid))
        var children: [UUID: [VolumeRecord]] = [:]
        for volume in volumes {
            if let parent = volume.parentUUID, known.contains(parent) { children[parent, default: []].append(volume) }
        }
        func node(_ volume: VolumeRecord) -> LineageNode {
            let use = usage[volume.thinID]
            return LineageNode(volume: volume, mappedBytes: use?.mappedBytes ?? 0,
                               exclusiveBytes: use?.exclusiveBytes ?? 0, sharedBytes: use?.sharedBytes ?? 0,
                               children: (children[volume.uuid] ?? []).sorted { $0.createdAt < $1.createdAt }
                                   .map(node))
        }
        if let reference { return [node(try requireVolume(reference))] }
        return volumes.filter { $0.parentUUID.map { !known.contains($0) } ?? true }
            .sorted { ($0.createdAt, $0.key) < ($1.createdAt, $1.key) }.map(node)
    }

    /// Per thin id usage from `thin_ls` on a metadata snapshot of the live pool.
    func thinUsage() async throws(ThinError) -> [UInt32: ThinTools.DeviceUsage] {
        let rows = try await withMetadataSnapshot { metadataPath throws(ThinError) in
            do { return try await ThinTools.list(metadataDevice: metadataPath, metadataSnapshot: true) } catch {
                throw .backend("thin_ls failed", error)
            }
        }
        return Dictionary(rows.map { ($0.deviceID, $0) }, uniquingKeysWith: { $1 })
    }
}

extension AttachedSR {
    /// Runs `body` with a metadata snapshot of the live pool reserved, passing
    /// the metadata device's path; the thin tools read it with `-m`.
    func withMetadataSnapshot<T>(_ body: (String) async throws(ThinError) -> T) async throws(ThinError) -> T {
        let lock = try FileLock(path: names.metadataSnapshotLockFile)
        defer { lock.release() }
        do {
            try pool.send("reserve_metadata_snap")
        } catch where error.errno == EBUSY {
            // Left held by a process that died between reserve and release; we
            // hold the lock that serializes thinsr's use of it, so release and retry.
            do {
                try pool.send("release_metadata_snap")
                try pool.send("reserve_metadata_snap")
            } catch {
                throw .backend("cannot reserve a metadata snapshot", error)
            }
        } catch {
            throw .backend("cannot reserve a metadata snapshot", error)
        }
        defer { try? pool.send("release_metadata_snap") }
        return try await body(SRLifecycle.mapperPath(try record.volumeGroup, names.metadataLV))
    }
}
