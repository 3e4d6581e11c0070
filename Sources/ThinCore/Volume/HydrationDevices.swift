import FoundationEssentials
import ThinDeviceMapper
import CThinShims
#if canImport(Glibc)
import Glibc
#endif

/// A hydration's devices (see `beginHydration`): the dm-clone device over
/// the volume's own thin devices, set up, put under the volume, and taken
/// away again; and the stopping of hydrations that gave way or were abandoned.
extension AttachedSR {
    /// Regions of the pool's block size where that is a power of two (a
    /// region then never straddles blocks), else the largest power of two
    /// dividing it; within dm-clone's 8 sectors .. 1 GiB.
    static func regionSectors(blockBytes: UInt64) -> UInt64 {
        let sectors = max(blockBytes / 512, 8)
        let power = sectors & (~sectors &+ 1)
        return min(max(power, 8), 1 << 21)
    }

    /// dm-clone's metadata for `regions`: superblock, space maps and a
    /// bitset, generously (thin: only what it writes takes pool space).
    static func hydrationMetadataBytes(regions: UInt64, blockBytes: UInt64) -> UInt64 {
        let bytes = (4 << 20) + regions
        return (bytes + blockBytes - 1) / blockBytes * blockBytes
    }

    func makeHydrationDevices(_ volume: VolumeRecord, metaID: ThinDeviceID, regionSectors: UInt64,
                                      threshold: UInt32) throws(ThinError) -> String {
        let deviceMapper = host.deviceMapper
        let sectors = volume.virtualSize / 512
        let blockBytes = try record.blockSizeBytes
        let metaBytes = Self.hydrationMetadataBytes(regions: (sectors + regionSectors - 1) / regionSectors,
                                                    blockBytes: blockBytes)
        let part = { (part: SRNames.HydrationPart) in self.names.hydrationDevice(volume.uuid, part) }
        // Leftovers of a killed run go first.
        for piece in SRNames.HydrationPart.allCases { try? deviceMapper.remove(name: part(piece).name) }
        do {
            try deviceMapper.create(name: part(.metadata).name, uuid: part(.metadata).dmUUID,
                                    table: [ThinTable(poolDevice: pool.path, deviceID: metaID).line(lengthSectors: metaBytes / 512)],
                                    readOnly: false, udev: .standard)
            // A zeroed superblock makes dm-clone format a fresh bitmap: the volume's mapping rebuilds the rest.
            try host.system.zeroStart(of: part(.metadata).path)
            try deviceMapper.create(name: part(.destination).name, uuid: part(.destination).dmUUID,
                                    table: [devices.thinTable(for: volume)], readOnly: false, udev: .standard)
            try deviceMapper.create(name: part(.source).name, uuid: part(.source).dmUUID,
                                    table: [devices.thinTable(for: volume)], readOnly: true, udev: .standard)
            let table = CloneTable(metadataDevice: part(.metadata).path, destinationDevice: part(.destination).path,
                                   sourceDevice: part(.source).path, regionSectors: regionSectors,
                                   features: [.noHydration, .noDiscardPassdown], hydrationThreshold: max(threshold, 1))
            try deviceMapper.create(name: part(.clone).name, uuid: part(.clone).dmUUID,
                                    table: [table.line(lengthSectors: sectors)], readOnly: false, udev: .standard)
        } catch {
            throw .backend("cannot set up the hydration of \(volume.key) (is the dm_clone module available?)", error)
        }
        // Discards through it must only set bits, never reach the volume: check before sending any.
        guard let status = ((try? deviceMapper.status(name: part(.clone).name)) ?? nil)?.first?.parameters,
              case .active(let usage)? = CloneStatus(parameters: status),
              usage.features.contains(.noDiscardPassdown) else {
            throw ThinError(.backendFailure, "the kernel's dm-clone did not take no_discard_passdown for \(volume.key); "
                            + "hydration stopped before touching the volume")
        }
        return part(.clone).name
    }

    /// Marks `ranges` (bytes) as needing no copy: whole regions inside them
    /// get their bit set by a discard that dm-clone does not pass down.
    static func markDone(_ device: String, ranges: [Range<UInt64>], limit: UInt64) throws(ThinError) {
        let path = DmName(device).path
        let descriptor = Glibc.open(path, O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ThinError(.backendFailure, "cannot open \(path): \(System.errnoText())") }
        defer { Glibc.close(descriptor) }
        for range in ranges {
            let lower = (range.lowerBound + 511) / 512 * 512, upper = min(range.upperBound, limit) / 512 * 512
            guard upper > lower else { continue }
            let result = CThinShims_discard_range(descriptor, lower, upper - lower)
            guard result == 0 else {
                throw ThinError(.backendFailure, "marking the volume's own blocks on \(path) failed: "
                                + System.errnoText(-result))
            }
        }
    }

    /// Points an active volume device at the dm-clone device, so every
    /// guest write goes through it (a device made by Datapath.attach's
    /// first half gets that table when it is loaded: see `table(for:)`).
    func switchTop(of volume: VolumeRecord) throws(ThinError) {
        guard let info = try devices.info(volume.uuid), try !devices.isInactive(volume.uuid, info: info) else { return }
        let name = names.volumeDevice(volume.uuid).name
        try devices.changing(try devicesRecovered()) { () throws(ThinError) in
            do {
                try host.deviceMapper.reload(name: name, table: [devices.table(for: volume)], readOnly: info.readOnly)
                try host.deviceMapper.resume(name: name, udev: .standard)
            } catch {
                throw .backend("cannot put \(volume.key) over its hydration", error)
            }
        }
    }

    /// Takes the hydration's devices away: the volume's device goes back to
    /// its thin table (without the origin when `dropOrigin`), the hidden
    /// devices and the metadata's thin device are removed, the mark cleared.
    func tearDownHydration(_ volume: VolumeRecord, dropOrigin: Bool) throws(ThinError) {
        let deviceMapper = host.deviceMapper
        let top = names.volumeDevice(volume.uuid).name
        let clone = names.hydrationDevice(volume.uuid, .clone).name
        let cloneExists = (try? deviceMapper.info(name: clone)) != nil
        // No copy may land after the guest's writes go straight to the thin
        // device: stop copying, hold the guest's I/O, and suspend dm-clone,
        // which waits for the copies in flight; only then switch the table.
        if cloneExists { try? deviceMapper.send(.disableHydration, to: clone) }
        if let info = try devices.info(volume.uuid), try !devices.isInactive(volume.uuid, info: info) {
            try devices.changing(try devicesRecovered()) { () throws(ThinError) in
                do {
                    try deviceMapper.suspend(name: top, flush: true)
                    if cloneExists { try deviceMapper.suspend(name: clone, flush: true) }
                    FaultInjection.point("hydration-stop-suspended")
                    try deviceMapper.reload(name: top, table: [devices.thinTable(for: volume, withOrigin: !dropOrigin)],
                                            readOnly: info.readOnly)
                    try deviceMapper.resume(name: top, udev: .standard)
                } catch {
                    throw .backend("cannot take \(volume.key) off its hydration", error)
                }
            }
        } else if cloneExists {
            do { try deviceMapper.suspend(name: clone, flush: true) } catch {
                throw .backend("cannot stop the hydration of \(volume.key)", error)
            }
        }
        for part in SRNames.HydrationPart.allCases {
            let name = names.hydrationDevice(volume.uuid, part).name
            guard (try? deviceMapper.info(name: name)) != nil else { continue }
            do { try deviceMapper.remove(name: name) } catch {
                throw .backend("cannot remove the hydration device \(name)", error)
            }
        }
        FaultInjection.point("hydration-devices-removed")
        System.removeFile(copyOnReadMark(volume))
        let messages: [PoolMessage] = volume.hydrateMetaID.map { [.delete($0)] } ?? []
        try transact(messages) { catalog throws(ThinError) in
            try catalog.setHydrateMetaID(nil, volume: volume.uuid)
            try catalog.setOwner(nil, of: .hydrating, volume: volume.uuid)
            if dropOrigin { try catalog.setOriginTemplate(nil, volume: volume.uuid) }
        }
    }

    func copyOnReadMark(_ volume: VolumeRecord) -> String {
        "\(names.copyOnReadDirectory)/\(volume.uuid.lowercased)"
    }

    /// Whether `volume`'s hydration is a copy-on-read (`thinvdi-hydrate --on-read`).
    func isCopyingOnRead(_ volume: VolumeRecord) -> Bool { System.exists(copyOnReadMark(volume)) }

    /// The live process hydrating `volume`, other than this one.
    func hydratingProcess(of volume: VolumeRecord) -> Int32? { ProcessClaim.liveOtherProcess(ofOwner: volume.hydrateOwner) }

    /// Refuses what would change a volume under its hydration.
    /// A copy-on-read gives way: it is stopped (what it copied stays).
    func requireNotHydrating(_ volume: VolumeRecord, to action: String) throws(ThinError) {
        guard let pid = hydratingProcess(of: volume) else { return }
        if isCopyingOnRead(volume) { return try stopHydration(volume) }
        throw ThinError(.volumeInUse, "\(volume.key) is being hydrated by process \(pid); it cannot \(action) until "
                        + "that ends (stop it with SIGINT; a later thinvdi-hydrate resumes)", parameters: [volume.key])
    }

    /// Stops `volume`'s hydration (what it copied stays), and releases the
    /// template's image if nothing reads it any more (the volume may have
    /// no device).
    func stopHydration(_ volume: VolumeRecord) throws(ThinError) {
        try tearDownHydration(volume, dropOrigin: false)
        if let template = volume.originTemplate { origins.releaseIfUnused(template) }
    }

    /// A hydration whose process died is stopped: the volume reads the
    /// template again as before, and a later run resumes from what it holds.
    func stopAbandonedHydrations() throws(ThinError) {
        for volume in try catalog.volumes(includingUnfinished: true)
        where volume.hydrateMetaID != nil || volume.hydrateOwner != nil {
            if let owner = volume.hydrateOwner, owner == ProcessClaim.current.ownerMark || ProcessClaim.liveProcess(ofOwner: owner) != nil {
                continue
            }
            try stopHydration(volume)
        }
    }
}

/// A device-mapper device as the kernel numbered it: its minor, and the
/// disk sequence number the kernel gives every new disk (Linux 5.15 and
/// later; 0 where there is none), which a later device never shares.
struct DeviceIdentity: Sendable, Equatable {
    let minor: UInt32
    let diskSequence: UInt64

    init(_ info: DeviceInfo) {
        minor = info.minor
        diskSequence = System.readFile("/sys/dev/block/\(info.major):\(info.minor)/diskseq")
            .flatMap { UInt64($0.split(whereSeparator: \.isWhitespace).first ?? "") } ?? 0
    }
}
