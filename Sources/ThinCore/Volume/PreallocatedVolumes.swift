import FoundationEssentials
internal import CThinShims
import ThinDeviceMapper
import ThinLVM
import ThinTrace
#if canImport(Glibc)
import Glibc
#endif

/// Preallocated (thick) volumes: plain LVs beside the pool, their zeroing
/// and growth.
public struct PreallocatedVolumes: SRConcern {
    let sr: AttachedSR
}

/// Preallocated raw volumes: a linear LV beside the pool per volume, zeroed
/// before first use, shown through the same dm device and link as a thin
/// volume (a `linear` table over the LV). Its catalog row reserves a thin id
/// that is never created in the pool, so ids stay unique in the catalog.
extension PreallocatedVolumes {
    /// Records the volume, marked as being filled by this process, and makes
    /// its LV. Refused before anything is written when the VG lacks the space.
    /// The caller zeroes it (`BlockZeroing.zero`) without the SR lock and then
    /// calls `finishFilling`, or `abandonImport` on failure or cancel; a
    /// process killed in between leaves it to the next writer to remove.
    public func beginPreallocatedVolume(name: String, description: String, sizeBytes: UInt64,
                                        sharable: Bool) throws(ThinError) -> VolumeRecord {
        try Naming.validateLabel(name, what: "volume name")
        try Naming.validateLabel(description, what: "volume description")
        try VolumeRecord.requireSize(sizeBytes)
        guard sizeBytes > 0 else { throw .invalid("a preallocated volume needs a size above 0; give --size") }
        try sr.recovered()
        let virtualSize = ByteSize.roundUp(sizeBytes, to: 512)
        let group = try volumeGroupReport()
        let lvBytes = ByteSize.roundUp(virtualSize, to: max(group.extentBytes, 512))
        guard lvBytes <= group.freeBytes else {
            throw ThinError(.noSpace, "preallocating \(ByteSize.format(virtualSize)) needs \(ByteSize.format(lvBytes)) "
                            + "of free extents; volume group \(group.name) has \(ByteSize.format(group.freeBytes)) "
                            + "free: give a smaller --size, leave out --preallocate, or add a device (thinsr-extend)")
        }
        let thinID = try sr.allocateThinID()
        let uuid = UUID()
        var volume = VolumeRecord(
            uuid: uuid, key: Naming.deriveKey(fromName: name, existing: try catalog.allKeys()), name: name,
            description: description, thinID: thinID, virtualSize: virtualSize, kind: .volume, readWrite: true,
            sharable: sharable, createdAt: System.currentTime(), keys: [:], parentUUID: nil, snapshotOf: nil,
            state: .ready)
        volume.importOwner = ProcessClaim.current.ownerMark
        volume.rawLV = names.rawLV(uuid)
        // The row first: an LV is never left without the row that removes it.
        try catalog.transaction { () throws(ThinError) in
            try catalog.insert(volume)
            try catalog.setNextThinID(thinID.successor)
        }
        FaultInjection.point("raw-row-recorded")
        do {
            try host.lvm.createLinearVolume(group: volumeGroup, name: names.rawLV(uuid), sizeBytes: lvBytes,
                                            tags: [names.srTag, SRNames.rawRoleTag])
        } catch {
            // lvcreate may have committed the LV before failing (wiping, activating): remove it with its row,
            // or leave the row marked for the next writer's recovery to finish.
            do throws(ThinError) {
                try removeRawLV(names.rawLV(uuid), key: volume.key)
                try catalog.deleteVolume(uuid)
            } catch {
                try? catalog.setState(.removing, volume: uuid)
            }
            throw .backend("lvcreate of the raw volume \(volume.key) failed", error)
        }
        FaultInjection.point("raw-volume-created")
        return volume
    }

    /// The LV node of a preallocated volume (what zeroing writes).
    public func rawDevicePath(_ volume: VolumeRecord) -> String? {
        volume.rawLV.map { Paths.mapperPath(group: volumeGroup, volume: $0) }
    }

    /// Attaches a zeroed preallocated volume read-write for the import
    /// filling it (this process stays its owner until `finishImport`).
    public func attachForImport(_ volume: VolumeRecord) async throws(ThinError) -> (VolumeRecord, String) {
        try await sr.attachments.attach(volume, readOnly: false, holder: ProcessClaim.holderName())
    }

    /// The filling is whole: the volume is free for every operation.
    public func finishFilling(_ volume: VolumeRecord) throws(ThinError) -> VolumeRecord {
        try catalog.setOwner(nil, of: .filling, volume: volume.uuid)
        return try sr.requireVolume(volume.uuid.lowercased)
    }

    /// The live process (other than this one) filling `volume`: an import
    /// or a preallocated create still zeroing.
    public func fillingProcess(of volume: VolumeRecord) -> Int32? { ProcessClaim.liveOtherProcess(ofOwner: volume.importOwner) }

    /// Removes a preallocated volume's LV and row: the row is marked first,
    /// so a removal killed half way is finished by the next writer.
    func removePreallocated(_ volume: VolumeRecord) throws(ThinError) {
        guard let lv = volume.rawLV else { return }
        try catalog.setState(.removing, volume: volume.uuid)
        FaultInjection.point("raw-removal-recorded")
        try removeRawLV(lv, key: volume.key)
        FaultInjection.point("raw-volume-removed")
        try catalog.deleteVolume(volume.uuid)
    }

    /// Finishes removals a killed process left (runs in recovery). One that
    /// fails (its LV held open for a moment) is left for a later writer,
    /// and `thinsr-check` reports it, rather than stopping this one.
    func finishRemovingPreallocated() throws(ThinError) {
        for (uuid, lv) in try catalog.removingRawVolumes() {
            do throws(ThinError) {
                try devices.deactivate(uuid, key: nil)
                try removeRawLV(lv, key: uuid.lowercased)
                try catalog.deleteVolume(uuid)
            } catch {
                Trace.step("raw", "finish removing \(lv)", outcome: "left: \(error)", since: .now)
            }
        }
    }

    /// Refuses while a live process fills one of the SR's volumes (an import
    /// or a preallocated create's zeroing, which holds no device a detach
    /// would see): that process needs the SR attached to finish or undo.
    func refuseWhileFilling() throws(ThinError) {
        for volume in try catalog.volumes() {
            if let pid = growingProcess(of: volume) {
                throw ThinError(.srInUse, "volume \(volume.key) is being grown by process \(pid); wait for it",
                                parameters: [volume.key])
            }
            if let pid = sr.hydratingProcess(of: volume) {
                // A copy-on-read gives way (it stops; what it copied stays).
                if sr.isCopyingOnRead(volume) { try sr.stopHydration(volume); continue }
                throw ThinError(.srInUse, "volume \(volume.key) is being hydrated by process \(pid); stop it (SIGINT) "
                                + "or wait for it", parameters: [volume.key])
            }
            if let pid = fillingProcess(of: volume) {
                throw ThinError(.srInUse, "volume \(volume.key) is being filled (imported or zeroed) by process \(pid); "
                                + "wait for it, or cancel it with thinvdi-destroy \(names.uuidString) \(volume.key)",
                                parameters: [volume.key])
            }
        }
    }

    private func removeRawLV(_ lv: String, key: String) throws(ThinError) {
        guard try rawLogicalVolumes().contains(where: { $0.name == lv }) else { return }
        do { try host.lvm.removeLogicalVolumes(group: volumeGroup, names: [lv]) } catch {
            throw .backend("lvremove of the raw volume \(key) failed", error)
        }
    }

    /// Extends a preallocated volume's LV to hold `size` and marks the
    /// volume as being grown by this process. What is to be zeroed runs
    /// from the volume's current end to the LV's end: a grow killed half way
    /// leaves a larger LV under the old size, and the next grow zeroes from
    /// the old end again.
    func beginGrowPreallocated(_ volume: VolumeRecord, to size: UInt64) throws(ThinError) -> RawGrowth {
        guard let lv = volume.rawLV, let path = rawDevicePath(volume) else {
            throw ThinError(.catalogInconsistent, "\(volume.key) has no raw LV")
        }
        if let pid = growingProcess(of: volume) {
            throw ThinError(.volumeInUse, "\(volume.key) is being grown by process \(pid); wait for it",
                            parameters: [volume.key])
        }
        let group = try volumeGroupReport()
        let lvBytes = ByteSize.roundUp(size, to: max(group.extentBytes, 512))
        let currentBytes = try rawLogicalVolumes().first { $0.name == lv }?.sizeBytes ?? 0
        if lvBytes > currentBytes {
            guard lvBytes - currentBytes <= group.freeBytes else {
                throw ThinError(.noSpace, "growing \(volume.key) to \(ByteSize.format(size)) needs "
                                + "\(ByteSize.format(lvBytes - currentBytes)) of free extents; volume group "
                                + "\(group.name) has \(ByteSize.format(group.freeBytes)) free")
            }
            do { try host.lvm.extendLogicalVolume(group: volumeGroup, name: lv, sizeBytes: lvBytes) } catch {
                throw .backend("lvextend of the raw volume \(volume.key) failed", error)
            }
            FaultInjection.point("raw-volume-extended")
        }
        try catalog.setOwner(ProcessClaim.current.ownerMark, of: .growing, volume: volume.uuid)
        return RawGrowth(volume: volume, size: size, path: path, from: volume.virtualSize, to: max(lvBytes, currentBytes))
    }

    /// The grown part is zeroed: the volume takes its new size (its device too, if attached).
    public func finishGrowth(_ growth: RawGrowth) throws(ThinError) {
        let volume = try sr.requireVolume(growth.volume.uuid.lowercased)
        guard volume.growOwner == ProcessClaim.current.ownerMark else {
            throw ThinError(.volumeInUse, "\(volume.key) is no longer marked as grown by this process; grow it again",
                            parameters: [volume.key])
        }
        try catalog.setOwner(nil, of: .growing, volume: volume.uuid)
        try sr.volumes.applySize(growth.size, to: volume)
    }

    /// A grow that failed or was cancelled: the volume keeps its size (its LV stays larger).
    public func abandonGrowth(_ growth: RawGrowth) throws(ThinError) {
        try catalog.setOwner(nil, of: .growing, volume: growth.volume.uuid)
    }

    /// Grow marks whose process is gone are cleared (runs in recovery).
    func clearAbandonedGrowths() throws(ThinError) {
        for volume in try catalog.volumes() where volume.growOwner != nil {
            if ProcessClaim.liveProcess(ofOwner: volume.growOwner) == nil {
                try catalog.setOwner(nil, of: .growing, volume: volume.uuid)
            }
        }
    }

    /// The live process (other than this one) growing `volume`.
    func growingProcess(of volume: VolumeRecord) -> Int32? { ProcessClaim.liveOtherProcess(ofOwner: volume.growOwner) }

    /// Refuses what a preallocated volume cannot do: it has no thin blocks to share.
    private func volumeGroupReport() throws(ThinError) -> VolumeGroupReport {
        let groups: [VolumeGroupReport]
        do { groups = try host.lvm.volumeGroups() } catch { throw .backend("cannot read volume groups", error) }
        guard let group = groups.first(where: { $0.name == volumeGroup }) else {
            throw ThinError(.catalogInconsistent, "the SR's volume group \(volumeGroup) is missing")
        }
        return group
    }

    /// The bytes of the SR's preallocated volumes' LVs and its VG's free
    /// extents, as `lvs` and `vgs` report them (SR.stat's free and total).
    public func rawSpace() throws(ThinError) -> (rawBytes: UInt64, groupFreeBytes: UInt64) {
        (try rawLogicalVolumes().reduce(0) { $0 + $1.sizeBytes }, try volumeGroupReport().freeBytes)
    }

    /// The LVs in the SR's VG tagged as its preallocated volumes' (`lvs`).
    func rawLogicalVolumes() throws(ThinError) -> [LogicalVolumeReport] {
        let lvs: [LogicalVolumeReport]
        do { lvs = try host.lvm.logicalVolumes() } catch { throw .backend("cannot list logical volumes", error) }
        return lvs.filter { $0.volumeGroup == volumeGroup && $0.tags.contains(names.srTag)
            && $0.tags.contains(SRNames.rawRoleTag) }
    }
}

/// A preallocated volume's grow in flight (see `beginResize`).
public struct RawGrowth: Sendable {
    public let volume: VolumeRecord
    public let size: UInt64
    /// The LV's node, and the range of it to zero.
    public let path: String
    public let from: UInt64
    public let to: UInt64
}

/// Zeroes block devices in pieces with BLKZEROOUT, reporting progress and
/// stopping between pieces when asked.
public enum BlockZeroing {
    /// Small enough that a cancel is prompt and progress moves, large enough
    /// that the per-call cost vanishes.
    static let piece: UInt64 = 64 << 20

    /// Zeroes `[from, to)` of the device at `path` (512-byte aligned);
    /// `progress` gets the bytes done so far, `stop` is asked before each
    /// piece and ends the zeroing with `.cancelled` when it says so. The
    /// zeroes have reached the device when it returns.
    public static func zero(_ path: String, from start: UInt64, to end: UInt64,
                            progress: (UInt64) -> Void = { _ in },
                            stop: () -> Bool = { false }) throws(ThinError) {
        guard end > start else { return }
        let descriptor = open(path, O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ThinError(.backendFailure, "cannot open \(path) to zero it: \(System.errnoText())")
        }
        defer { close(descriptor) }
        var offset = start
        while offset < end {
            if stop() { throw ThinError(.cancelled, "zeroing cancelled") }
            let length = min(piece, end - offset)
            let result = CThinShims_zero_range(descriptor, offset, length)
            guard result == 0 else {
                throw ThinError(.backendFailure, "zeroing \(path) at byte \(offset) failed: \(System.errnoText(-result))")
            }
            offset += length
            FaultInjection.point("zeroed-piece")
            progress(offset - start)
        }
        guard fsync(descriptor) == 0 else {
            throw ThinError(.backendFailure, "fsync of \(path) failed: \(System.errnoText())")
        }
    }
}
