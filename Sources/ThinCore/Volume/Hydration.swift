import FoundationEssentials
import ThinDeviceMapper
import ThinTools
import CThinShims
#if canImport(Glibc)
import Glibc
#endif

/// A hydration in progress: dm-clone copying a volume's template data into
/// its own thin device. `thinvdi-hydrate` begins it under the SR lock,
/// watches it without the lock, and finishes or stops it under the lock.
public struct Hydration: Sendable {
    public let volume: VolumeRecord
    public let regionBytes: UInt64
    public let totalRegions: UInt64
    let cloneDevice: String
    /// The second thin device of the volume's id that dm-clone reads
    /// regions it has not copied from: a read of it is a read of template data.
    let sourceDevice: String
    /// The dm-clone device as the kernel numbered it: a device of the same
    /// name made later (the volume detached and activated again, or another
    /// run taking over) is another hydration's, even where it gets the same
    /// minor back, because its disk sequence number is new.
    let cloneIdentity: DeviceIdentity?
    /// The template's origin device and the image's size: what a region's
    /// template data is read from, to see that it answers.
    let originDevice: String
    let imageBytes: UInt64
    /// Byte ranges of the image that read as zeros: never copied (the
    /// volume reads zeros there without the image too).
    let imageZeros: [Range<UInt64>]
    /// Byte ranges marked done without a copy when it began (the volume's
    /// own blocks, the image's zeros, past the image's end).
    let skipped: [Range<UInt64>]

    /// Lets dm-clone copy (`beginHydration` leaves it set up but idle).
    public func start(host: Host) throws(ThinError) {
        do { try host.deviceMapper.send(.enableHydration, to: cloneDevice) } catch {
            throw .backend("cannot start the hydration of \(volume.key)", error)
        }
    }

    /// How far it is (dm-clone's status; no SR lock needed); nil once its
    /// device is gone (an SR detach, a recovery).
    public func progress(host: Host) -> HydrationProgress? {
        guard let line = ((try? host.deviceMapper.status(name: cloneDevice)) ?? nil)?.first else { return nil }
        return HydrationProgress(status: line.parameters)
    }
}

/// The kernel's statistics on dm-clone's source: one area over all of it,
/// printed first so that an idle poll costs one line, and at most
/// `maxAreas` areas of a power of two of regions each (dm-stats keeps
/// counters per area in kernel memory).
public struct ReadWatch: Sendable {
    let whole: UInt64
    let areas: UInt64
    let areaBytes: UInt64
    static let maxAreas: UInt64 = 16384
}

/// Copy-on-read: dm-clone serves a read of a region it has not copied from
/// its source without copying it, so the kernel's statistics (dm-stats) on
/// the source device tell which parts the guest read from the template;
/// `copyRegions` then has dm-clone copy the regions there.
extension Hydration {
    /// Starts counting the reads of template data.
    public func watchReads(host: Host) throws(ThinError) -> ReadWatch {
        var areaBytes = regionBytes
        while (volume.virtualSize + areaBytes - 1) / areaBytes > ReadWatch.maxAreas { areaBytes *= 2 }
        let whole = try createStatistics(areaSectors: (volume.virtualSize + 511) / 512, host: host)
        let areas = try createStatistics(areaSectors: areaBytes / 512, host: host)
        return ReadWatch(whole: whole, areas: areas, areaBytes: areaBytes)
    }

    private func createStatistics(areaSectors: UInt64, host: Host) throws(ThinError) -> UInt64 {
        let response: String?
        let message = StatsMessage.create(areaSectors: areaSectors)
        do { response = try host.deviceMapper.send(message, to: sourceDevice) } catch {
            throw .backend("cannot count the reads of \(volume.key)'s template data (dm-stats)", error)
        }
        guard let id = response.flatMap({ UInt64($0.split(whereSeparator: \.isWhitespace).first ?? "") }) else {
            throw ThinError(.backendFailure, "dm-stats answered \"\(response ?? "")\" for a new statistics region on "
                            + sourceDevice)
        }
        return id
    }

    /// Whether this hydration's dm-clone device is still there (not taken
    /// down, nor replaced by another hydration's).
    public func isCurrent(host: Host) -> Bool {
        guard let info = (try? host.deviceMapper.info(name: cloneDevice)) ?? nil else { return false }
        return cloneIdentity == nil || DeviceIdentity(info) == cloneIdentity
    }

    /// The bytes read (and written back) at `offset` of a region: 4 KiB,
    /// or whole sectors up to `size` where less is left.
    static func probeLength(at offset: UInt64, within size: UInt64) -> Int {
        Int(min(4096, size - offset) / 512 * 512)
    }

    /// The regions whose template data answers now: 4 KiB of each read from
    /// the template's origin device, without the SR lock, so that a template
    /// that stalls stalls only the copier. (Not from dm-clone's source: its
    /// reads are the ones the copier counts.) A region that fails (EIO)
    /// waits for a later read; one past the image's end needs no template.
    public func answering(_ regions: [UInt64]) -> [UInt64] {
        let origin = DmName(originDevice).path
        return regions.filter { region in
            let offset = region * regionBytes
            guard offset < imageBytes else { return true }
            let length = Self.probeLength(at: offset, within: imageBytes)
            return length == 0 || DirectIO.canRead(origin, offset: offset, length: length)
        }
    }

    /// The regions read from the template since the last call, in order,
    /// less those marked done when it began; nil once the hydration ended.
    public func regionsRead(host: Host, watch: ReadWatch) throws(ThinError) -> [UInt64]? {
        guard isCurrent(host: host) else { return nil }
        func print(_ message: StatsMessage) throws(ThinError) -> String? {
            do { return try host.deviceMapper.send(message, to: sourceDevice) } catch {
                guard isCurrent(host: host) else { return nil }
                throw .backend("cannot read the statistics of \(volume.key)'s reads of template data", error)
            }
        }
        guard let total = try print(.printClear(region: watch.whole, first: 0, count: 1)) else { return nil }
        guard !Self.areasRead(total, areaBytes: regionBytes).isEmpty else { return [] }
        let page: UInt64 = 4096
        let areaCount = (volume.virtualSize + watch.areaBytes - 1) / watch.areaBytes
        let perArea = watch.areaBytes / regionBytes
        var regions: [UInt64] = []
        var first: UInt64 = 0
        while first < areaCount {
            guard let response = try print(.printClear(region: watch.areas, first: first, count: page)) else {
                return nil
            }
            for area in Self.areasRead(response, areaBytes: watch.areaBytes) {
                for region in area * perArea..<(area + 1) * perArea where !isSkipped(region) { regions.append(region) }
            }
            first += page
        }
        return regions
    }

    private func isSkipped(_ region: UInt64) -> Bool {
        let lower = region * regionBytes, upper = lower + regionBytes
        return skipped.contains { $0.lowerBound <= lower && upper <= $0.upperBound }
    }

    /// Parses `@stats_print` lines, `<start sector>+<length> <reads> ...`:
    /// the indices of the areas with any read.
    static func areasRead(_ response: String, areaBytes: UInt64) -> [UInt64] {
        response.split(separator: "\n").compactMap { line -> UInt64? in
            let words = line.split(separator: " ", maxSplits: 2)
            guard words.count >= 2, let reads = UInt64(words[1]), reads > 0,
                  let start = words[0].split(separator: "+").first.flatMap({ UInt64($0) }) else { return nil }
            return start * 512 / areaBytes
        }
    }
}

/// How far a hydration is: regions copied (or skipped as the volume's own) of all.
public struct HydrationProgress: Sendable, Equatable {
    public var hydratedRegions: UInt64
    public var totalRegions: UInt64
    public var isComplete: Bool { hydratedRegions >= totalRegions }

    /// From dm-clone's status line (`CloneStatus`); nil for a failed clone.
    init?(status: String) {
        guard case .active(let usage)? = CloneStatus(parameters: status) else { return nil }
        hydratedRegions = usage.hydratedRegions
        totalRegions = usage.totalRegions
    }
}

/// Hydration is built so that no state of dm-clone's bitmap can be wrong:
/// its source is not the image but a second thin device of the volume's own
/// thin id with the same origin, i.e. the volume's current contents. Copying
/// a region copies the volume onto itself, which provisions the region's
/// blocks with what they already read; dm-clone holds the guest's writes to
/// a region while it copies it. Regions the volume already holds (and those
/// past the image's end, which read zeros) are marked done with a discard
/// through dm-clone with `no_discard_passdown`, which only sets their bit.
/// So a fresh bitmap is always right, resuming is beginning again, and once
/// every block within the image is the volume's own, the origin is dropped.
extension AttachedSR {
    /// Begins (or resumes) hydrating `reference`: nil when it reads no template.
    /// With `onRead`, it marks the run as copy-on-read, which gives way to
    /// anything that needs the volume alone (see `requireNotHydrating`).
    public func beginHydration(_ reference: String, threshold: UInt32,
                               onRead: Bool = false) async throws(ThinError) -> Hydration? {
        try recovered()
        var volume = try requireVolume(reference)
        guard let templateUUID = volume.originTemplate else { return nil }
        try requireHydratable(volume)
        try await KernelTarget.clone.require(host, for: onRead ? "copy-on-read of \(volume.key)" : "hydrating \(volume.key)")
        if let pid = hydratingProcess(of: volume) {
            guard isCopyingOnRead(volume), !onRead else {
                throw ThinError(.volumeInUse, "\(volume.key) is already being hydrated by process \(pid); wait for it "
                                + "or stop it (SIGINT)", parameters: [volume.key])
            }
            // A full hydration takes over from a copy-on-read.
            try tearDownHydration(volume, dropOrigin: false)
            volume = try requireVolume(reference)
        }
        let template = try requireTemplate(templateUUID)
        _ = try await origins.bringUp(template, try devicesRecovered())
        let blockBytes = try record.blockSizeBytes
        let regionSectors = Self.regionSectors(blockBytes: blockBytes)
        let regionBytes = regionSectors * 512
        let sectors = volume.virtualSize / 512
        let totalRegions = (sectors + regionSectors - 1) / regionSectors
        var metaID = volume.hydrateMetaID
        if metaID == nil {
            let id = try allocateThinID()
            try transact([.createThin(id)]) { catalog throws(ThinError) in
                try catalog.setHydrateMetaID(id, volume: volume.uuid)
                try catalog.setNextThinID(id.successor)
            }
            metaID = id
        }
        try catalog.setOwner(ProcessClaim.current.ownerMark, of: .hydrating, volume: volume.uuid)
        if onRead {
            try? System.makeDirectories(names.copyOnReadDirectory)
            try System.writeFile(copyOnReadMark(volume), "")
        }
        var hydrating = volume
        hydrating.hydrateMetaID = metaID
        hydrating.hydrateOwner = ProcessClaim.current.ownerMark
        do {
            let clone = try makeHydrationDevices(hydrating, metaID: metaID!, regionSectors: regionSectors,
                                                 threshold: threshold)
            // What the volume holds, and what lies past the image's end, needs no copy.
            let mapped = try await lineage.mappings(of: [volume.thinID.value]).devices.first?.runs.map(\.blocks) ?? []
            let ownBytes = ChangedBlocks.merged(mapped).map { $0.lowerBound * blockBytes..<$0.upperBound * blockBytes }
            let imageEnd = (template.virtualSize + regionBytes - 1) / regionBytes * regionBytes
            let zeros = await imageZeros(of: template)
            let skip = ownBytes + zeros + (imageEnd < volume.virtualSize ? [imageEnd..<volume.virtualSize] : [])
            try Self.markDone(clone, ranges: skip, limit: volume.virtualSize)
            try switchTop(of: hydrating)
            FaultInjection.point("hydration-started")
            return Hydration(volume: hydrating, regionBytes: regionBytes, totalRegions: totalRegions,
                             cloneDevice: clone, sourceDevice: names.hydrationDevice(volume.uuid, .source).name,
                             cloneIdentity: ((try? host.deviceMapper.info(name: clone)) ?? nil).map(DeviceIdentity.init),
                             originDevice: names.originDevice(templateUUID).name, imageBytes: template.virtualSize,
                             imageZeros: zeros, skipped: ChangedBlocks.merged(skip))
        } catch {
            try? tearDownHydration(hydrating, dropOrigin: false)
            origins.releaseIfUnused(templateUUID)
            throw error
        }
    }

    /// Ends a hydration. When every region is copied and every block within
    /// the image is the volume's own, the volume's table drops the origin
    /// and the catalog forgets it (returns true); otherwise the volume goes
    /// back to reading the template, ready for a later run (false).
    @discardableResult
    public func finishHydration(_ hydration: Hydration) async throws(ThinError) -> Bool {
        try recovered()
        guard let volume = try catalog.volume(matching: hydration.volume.uuid.lowercased),
              volume.hydrateOwner == ProcessClaim.current.ownerMark else {
            // A recovery or a change that needed the volume alone stopped it; the image may now be unused.
            if let template = hydration.volume.originTemplate { origins.releaseIfUnused(template) }
            return false
        }
        var complete = hydration.progress(host: host)?.isComplete ?? false
        if complete, let template = volume.originTemplate {
            let blockBytes = try record.blockSizeBytes
            let imageBlocks = (try requireTemplate(template).virtualSize + blockBytes - 1) / blockBytes
            // Every block within the image is the volume's own, or reads zeros in the image.
            let zeroBlocks = hydration.imageZeros.compactMap { range -> Range<UInt64>? in
                let lower = (range.lowerBound + blockBytes - 1) / blockBytes, upper = range.upperBound / blockBytes
                return lower < upper ? lower..<upper : nil
            }
            let covered = ChangedBlocks.merged((try await lineage.mappings(of: [volume.thinID.value]).devices.first?.runs
                .map(\.blocks) ?? []) + zeroBlocks)
            let held = covered.reduce(UInt64(0)) { $0 + (min($1.upperBound, imageBlocks) - min($1.lowerBound, imageBlocks)) }
            complete = held == imageBlocks
        }
        try tearDownHydration(volume, dropOrigin: complete)
        // Nothing may read the image now (the volume dropped it, or was detached meanwhile).
        if let template = volume.originTemplate { origins.releaseIfUnused(template) }
        return complete
    }

    /// Has dm-clone copy `regions` of a hydrating volume now (copy-on-read):
    /// with the guest's I/O held (the volume's device suspended), 4 KiB of
    /// each region is read through dm-clone and written back unchanged, and
    /// dm-clone copies a region it has not copied before it takes a write to
    /// it. Holding the guest makes the write-back carry what the volume
    /// reads; the SR lock keeps a detach from releasing the guest meanwhile.
    /// The caller first keeps only the regions whose template data answers
    /// (`Hydration.answering`, without the lock). Returns the regions
    /// copied; nil when the hydration is not this process's any more.
    public func copyRegions(_ regions: [UInt64], of hydration: Hydration) throws(ThinError) -> [UInt64]? {
        guard let volume = try catalog.volume(matching: hydration.volume.uuid.lowercased),
              volume.hydrateOwner == ProcessClaim.current.ownerMark, hydration.isCurrent(host: host) else { return nil }
        let regionBytes = hydration.regionBytes
        let span = { (region: UInt64) -> Int in Hydration.probeLength(at: region * regionBytes, within: volume.virtualSize) }
        let inVolume = regions.filter { $0 * regionBytes < volume.virtualSize }
        guard !inVolume.isEmpty else { return [] }
        // Holding the guest or copying into a pool without room for the batch would wait on the pool
        // with the SR lock held, and the monitor grows a pool only under that lock: copy nothing now.
        let usage = try recovered()
        guard usage.mode == .readWrite,
              usage.totalDataBlocks - min(usage.usedDataBlocks, usage.totalDataBlocks) > UInt64(inVolume.count) else {
            return []
        }
        let top = names.volumeDevice(volume.uuid).name
        let holdsGuest: Bool
        if let info = try devices.info(volume.uuid) { holdsGuest = !info.suspended && info.hasLiveTable } else { holdsGuest = false }
        let path = DmName(hydration.cloneDevice).path
        // The devices-changing marker covers the window: if this process dies
        // with the guest held, the next command of any kind resumes it.
        return try devices.changing(try devicesRecovered()) { () throws(ThinError) -> [UInt64] in
            if holdsGuest {
                do { try host.deviceMapper.suspend(name: top, flush: true) } catch {
                    throw .backend("cannot hold \(volume.key)'s I/O to copy what it read", error)
                }
            }
            FaultInjection.point("copy-on-read-holding")
            var copied: [UInt64] = []
            var failure: ThinError?
            for region in inVolume {
                do throws(ThinError) {
                    if try DirectIO.rewrite(path, offset: region * regionBytes, length: span(region)) { copied.append(region) }
                } catch {
                    failure = error
                    break
                }
            }
            if holdsGuest {
                // A resume that fails leaves the marker: the next command resumes the guest.
                do { try host.deviceMapper.resume(name: top, udev: .standard) } catch {
                    throw .backend("cannot release \(volume.key)'s I/O after copying what it read", error)
                }
            }
            if let failure { throw failure }
            return copied
        }
    }

    /// Where the template's image reads zeros (qemu-img map); none when
    /// that cannot be told (a block device reports everything as data).
    private func imageZeros(of template: VolumeRecord) async -> [Range<UInt64>] {
        guard let image = origins.record(template.uuid)?.image,
              let format = ImageFormat(rawValue: template.templateFormat ?? "raw"),
              let inspected = try? ImageInspector.inspect(image, declared: format) else { return [] }
        return (try? await DiskImages.zeroRanges(inspected)) ?? []
    }
}
