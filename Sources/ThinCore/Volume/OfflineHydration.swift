import ThinDeviceMapper
import ThinTools

/// Hydration without dm-clone (XCP-ng 8.3's 4.19 kernel has none), for a
/// detached volume: the template's data is copied into every block the
/// volume has not written, through a device of the volume's own thin id
/// without the origin, chunk by chunk, each under the SR lock and only while
/// the volume stays detached (an attach takes the lock and wins: the next
/// chunk sees its device and stops). A copied block holds what the volume
/// read through the origin anyway, so a run killed anywhere leaves the
/// volume as it was, and the next run copies what is still unwritten; when
/// nothing is, the catalog drops the origin, as dm-clone's hydration does.
public struct OfflineHydration: Sendable {
    public let volume: VolumeRecord
    /// Byte ranges still to copy, within the template's image.
    public let pending: [Range<UInt64>]
    public var totalBytes: UInt64 { pending.reduce(0) { $0 + UInt64($1.count) } }
    let originPath: String
    let destination: VolumeDevice

    /// At most this many bytes are copied under one hold of the SR lock.
    public static let chunkBytes: UInt64 = 4 << 20

    /// The byte ranges of the image's blocks that `held` (sorted, merged block
    /// ranges the volume maps) leaves out: the gaps between them, and after them.
    static func unwritten(_ held: [Range<UInt64>], imageBlocks: UInt64, blockBytes: UInt64,
                          imageBytes: UInt64) -> [Range<UInt64>] {
        var gaps: [Range<UInt64>] = []
        var next: UInt64 = 0
        for run in held + [imageBlocks..<imageBlocks] {
            let upper = min(run.lowerBound, imageBlocks)
            if upper > next { gaps.append(next * blockBytes..<min(upper * blockBytes, imageBytes)) }
            next = max(next, run.upperBound)
        }
        return gaps
    }

    /// `pending` cut into chunks of at most `chunkBytes`.
    public var chunks: [Range<UInt64>] {
        pending.flatMap { range in
            stride(from: range.lowerBound, to: range.upperBound, by: Int(Self.chunkBytes)).map { start in
                start..<min(start + Self.chunkBytes, range.upperBound)
            }
        }
    }
}

extension AttachedSR {
    /// Whether hydrating `reference` must go the offline way: a detached
    /// volume on a kernel without dm-clone. An attached one is refused there
    /// (`Not_available`, naming dm-clone).
    public func hydratesOffline(_ reference: String, onRead: Bool) async throws(ThinError) -> Bool {
        let volume = try requireVolume(reference)
        guard volume.originTemplate != nil, !(await KernelTarget.clone.isAvailable(host)) else { return false }
        let what = onRead ? "copy-on-read of \(volume.key)" : "hydrating \(volume.key) while it is attached"
        let attached = try devices.info(volume.uuid) != nil
        if onRead || attached {
            try await KernelTarget.clone.require(host, for: what + (onRead ? "" : " (detach it to hydrate it offline)"))
        }
        return true
    }

    /// Begins an offline hydration of detached `reference`: nil when it reads no template.
    public func beginOfflineHydration(_ reference: String) async throws(ThinError) -> OfflineHydration? {
        try recovered()
        let volume = try requireVolume(reference)
        guard let templateUUID = volume.originTemplate else { return nil }
        try requireHydratable(volume)
        try requireDetached(volume, "hydrating it without dm-clone needs it detached: detach it, or use a kernel with "
                            + "dm-clone (Linux 5.4 or later)")
        if let pid = hydratingProcess(of: volume) {
            throw ThinError(.volumeInUse, "\(volume.key) is already being hydrated by process \(pid); wait for it or "
                            + "stop it (SIGINT)", parameters: [volume.key])
        }
        let template = try requireTemplate(templateUUID)
        let originPath = try await origins.bringUp(template, try devicesRecovered())
        let blockBytes = try record.blockSizeBytes
        let imageBytes = min(template.virtualSize, volume.virtualSize)
        let imageBlocks = (imageBytes + blockBytes - 1) / blockBytes
        let held = ChangedBlocks.merged(try await lineage.mappings(of: [volume.thinID.value]).devices.first?.runs.map(\.blocks) ?? [])
        let pending = OfflineHydration.unwritten(held, imageBlocks: imageBlocks, blockBytes: blockBytes,
                                                 imageBytes: imageBytes)
        try catalog.setOwner(ProcessClaim.current.ownerMark, of: .hydrating, volume: volume.uuid)
        let destination = names.hydrationDevice(volume.uuid, .destination)
        do {
            try? host.deviceMapper.remove(name: destination.name)   // a killed run's
            try devices.changing(try devicesRecovered()) { () throws(ThinError) in
                do {
                    try host.deviceMapper.create(name: destination.name, uuid: destination.dmUUID,
                                                 table: [devices.thinTable(for: volume, withOrigin: false)],
                                                 readOnly: false, udev: .standard)
                } catch { throw .backend("cannot set up the offline hydration of \(volume.key)", error) }
            }
        } catch {
            try? tearDownHydration(volume, dropOrigin: false)
            throw error
        }
        return OfflineHydration(volume: volume, pending: pending, originPath: originPath, destination: destination)
    }

    /// Copies one chunk of an offline hydration; nil when the hydration is not
    /// this process's any more (the volume was attached, or it was stopped).
    public func copyOffline(_ chunk: Range<UInt64>, of hydration: OfflineHydration) throws(ThinError) -> UInt64? {
        guard let volume = try catalog.volume(matching: hydration.volume.uuid.lowercased),
              volume.hydrateOwner == ProcessClaim.current.ownerMark, try devices.info(volume.uuid) == nil else { return nil }
        // A pool without room for the chunk would hold the write (and this SR lock) until it grows.
        let usage = try recovered()
        let blockBytes = try record.blockSizeBytes
        let needed = (UInt64(chunk.count) + blockBytes - 1) / blockBytes
        guard usage.mode == .readWrite, usage.totalDataBlocks - min(usage.usedDataBlocks, usage.totalDataBlocks) > needed else {
            throw ThinError(.noSpace, "the pool of SR \(names.uuidString) has no room to hydrate \(volume.key) further; "
                            + "extend it (thinsr-extend) and run thinvdi-hydrate again, which resumes")
        }
        FaultInjection.point("offline-hydration-chunk")
        return try DirectIO.copyNonZero(from: hydration.originPath, to: hydration.destination.path, range: chunk)
    }

    /// Ends an offline hydration: when every block within the image is the
    /// volume's own or reads zeros in the image, the origin is dropped
    /// (returns true); else the volume reads its template as before.
    @discardableResult
    public func finishOfflineHydration(_ hydration: OfflineHydration, copiedAll: Bool) async throws(ThinError) -> Bool {
        try recovered()
        guard let volume = try catalog.volume(matching: hydration.volume.uuid.lowercased),
              volume.hydrateOwner == ProcessClaim.current.ownerMark else {
            if let template = hydration.volume.originTemplate { origins.releaseIfUnused(template) }
            return false
        }
        let detached = try devices.info(volume.uuid) == nil
        let complete = copiedAll && detached
        try tearDownHydration(volume, dropOrigin: complete)
        if let template = volume.originTemplate { origins.releaseIfUnused(template) }
        return complete
    }

    /// What both hydrations refuse: no data, not thin, importing, a read-only snapshot.
    func requireHydratable(_ volume: VolumeRecord) throws(ThinError) {
        try volume.requireData(to: "be hydrated")
        try volume.requireThin(to: "be hydrated")
        try volume.requireNotImporting(to: "be hydrated")
        try mirrors.requireNotMirrored(volume, to: "be hydrated")
        guard volume.readWrite else {
            throw ThinError(.invalidArgument, "\(volume.key) is a read-only snapshot: hydrating it would change what "
                            + "it maps; clone it and hydrate the clone")
        }
    }
}
