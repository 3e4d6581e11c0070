import FoundationEssentials
internal import CThinShims
import ThinDeviceMapper
import ThinLVM
#if canImport(Glibc)
import Glibc
#endif

/// Preallocated raw volumes: a linear LV beside the pool per volume, zeroed
/// before first use, shown through the same dm device and link as a thin
/// volume (a `linear` table over the LV). Its catalog row reserves a thin id
/// that is never created in the pool, so ids stay unique in the catalog.
extension AttachedSR {
    /// Records the volume, marked as being filled by this process, and makes
    /// its LV. Refused before anything is written when the VG lacks the space.
    /// The caller zeroes it (`zeroPreallocated`) without the SR lock and then
    /// calls `finishFilling`, or `abandonImport` on failure or cancel; a
    /// process killed in between leaves it to the next writer to remove.
    public func beginPreallocatedVolume(name: String, description: String, sizeBytes: UInt64,
                                        sharable: Bool) throws(ThinError) -> VolumeRecord {
        try Naming.validateLabel(name, what: "volume name")
        try Naming.validateLabel(description, what: "volume description")
        try Self.requireVolumeSize(sizeBytes)
        guard sizeBytes > 0 else { throw .invalid("a preallocated volume needs a size above 0; give --size") }
        try recovered()
        let virtualSize = ByteSize.roundUp(sizeBytes, to: 512)
        let group = try volumeGroupReport()
        let lvBytes = ByteSize.roundUp(virtualSize, to: max(group.extentBytes, 512))
        guard lvBytes <= group.freeBytes else {
            throw ThinError(.noSpace, "preallocating \(ByteSize.format(virtualSize)) needs \(ByteSize.format(lvBytes)) "
                            + "of free extents; volume group \(group.name) has \(ByteSize.format(group.freeBytes)) "
                            + "free: give a smaller --size, leave out --preallocate, or add a device (thinsr-extend)")
        }
        let thinID = try allocateThinID()
        let uuid = UUID()
        var volume = VolumeRecord(
            uuid: uuid, key: Naming.deriveKey(fromName: name, existing: try catalog.allKeys()), name: name,
            description: description, thinID: thinID, virtualSize: virtualSize, kind: .volume, readWrite: true,
            sharable: sharable, createdAt: System.currentTime(), keys: [:], parentUUID: nil, snapshotOf: nil,
            state: .ready)
        volume.importOwner = Self.importOwner()
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
            try? catalog.deleteVolume(uuid)
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
    public func attachForImport(_ volume: VolumeRecord) throws(ThinError) -> (VolumeRecord, String) {
        try attachVolume(volume.uuid.lowercased, readOnly: false, holder: VolumeHolders.process())
    }

    /// The filling is whole: the volume is free for every operation.
    public func finishFilling(_ volume: VolumeRecord) throws(ThinError) -> VolumeRecord {
        try catalog.setImportOwner(nil, volume: volume.uuid)
        return try requireVolume(volume.uuid.lowercased)
    }

    /// The live process (other than this one) filling `volume`: an import
    /// or a preallocated create still zeroing.
    public func fillingProcess(of volume: VolumeRecord) -> Int32? {
        guard let owner = volume.importOwner, owner != Self.importOwner() else { return nil }
        let fields = owner.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 3, fields[0] == System.bootID(), let pid = Int32(fields[1]),
              let started = System.processStartTime(pid), String(started) == fields[2] else { return nil }
        return pid
    }

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

    /// Finishes removals a killed process left (runs in recovery).
    func finishRemovingPreallocated() throws(ThinError) {
        for (uuid, lv) in try catalog.removingRawVolumes() {
            try devices.deactivate(uuid, key: nil)
            try removeRawLV(lv, key: uuid.lowercased)
            try catalog.deleteVolume(uuid)
        }
    }

    private func removeRawLV(_ lv: String, key: String) throws(ThinError) {
        let present: Bool
        do { present = try host.lvm.logicalVolumes().contains { $0.volumeGroup == volumeGroup && $0.name == lv } } catch {
            throw .backend("cannot list logical volumes", error)
        }
        guard present else { return }
        do { try host.lvm.removeLogicalVolumes(group: volumeGroup, names: [lv]) } catch {
            throw .backend("lvremove of the raw volume \(key) failed", error)
        }
    }

    /// Grows a preallocated volume's LV to hold `size` and zeroes what the
    /// volume did not cover before (its old end to the LV's new end), before
    /// the volume is given the new size. A grow killed half way leaves a
    /// larger LV under the old size: the next grow zeroes from the old end again.
    func growPreallocated(_ volume: VolumeRecord, to size: UInt64) throws(ThinError) {
        guard let lv = volume.rawLV, let path = rawDevicePath(volume) else { return }
        let group = try volumeGroupReport()
        let extent = max(group.extentBytes, 512)
        let lvBytes = ByteSize.roundUp(size, to: extent)
        let currentBytes: UInt64
        do {
            currentBytes = try host.lvm.logicalVolumes().first { $0.volumeGroup == volumeGroup && $0.name == lv }?.sizeBytes ?? 0
        } catch {
            throw .backend("cannot list logical volumes", error)
        }
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
        try BlockZeroing.zero(path, from: volume.virtualSize, to: max(lvBytes, currentBytes))
    }

    /// Refuses what a preallocated volume cannot do: it has no thin blocks to share.
    func requireThin(_ volume: VolumeRecord, to action: String) throws(ThinError) {
        guard volume.isPreallocated else { return }
        throw .invalid("\(volume.key) is a preallocated raw volume: it cannot \(action) (it shares no blocks); copy it "
                       + "into a thin volume with thinvdi-export and thinvdi-import first")
    }

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
