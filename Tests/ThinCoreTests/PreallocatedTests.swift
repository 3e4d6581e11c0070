import FoundationEssentials
import Synchronization
import Testing
import ThinDeviceMapper
@testable import ThinLVM
@testable import ThinCore

/// Preallocated raw volumes against the doubles: what reaches LVM and the
/// catalog, in which order, and what a killed removal leaves for recovery.
@Suite("preallocated volumes")
struct PreallocatedTests {
    func withGroup(_ sr: TestSR, freeBytes: UInt64) {
        sr.lvm.state.withLock {
            $0.volumeGroups = [VolumeGroupReport(name: TestSR.group, sizeBytes: 4 << 30, freeBytes: freeBytes,
                                                 extentBytes: 4 << 20, tags: [])]
        }
    }

    /// A zeroed preallocated volume named db, released for use.
    func makeRaw(_ attached: AttachedSR, bytes: UInt64) throws -> VolumeRecord {
        try attached.preallocated.finishFilling(
            try attached.preallocated.beginPreallocatedVolume(name: "db", description: "", sizeBytes: bytes, sharable: false))
    }

    @Test("a create records the row first, then makes a tagged LV of whole extents; its device is linear over it")
    func create() throws {
        let sr = try TestSR()
        withGroup(sr, freeBytes: 1 << 30)
        let attached = try sr.open()
        defer { attached.close() }
        let volume = try attached.preallocated.beginPreallocatedVolume(name: "db", description: "", sizeBytes: 10 << 20 | 1,
                                                          sharable: false)
        let lv = sr.names.rawLV(volume.uuid)
        #expect(volume.rawLV == lv && volume.virtualSize == (10 << 20) + 512)
        #expect(sr.lvm.calls.contains("lvcreate \(TestSR.group)/\(lv)"))
        let report = try #require(sr.lvm.state.withLock { $0.logicalVolumes.first { $0.name == lv } })
        #expect(report.sizeBytes == 12 << 20 && report.tags.contains(SRNames.rawRoleTag) && report.tags.contains(sr.names.srTag))
        let stored = try #require(try attached.catalog.volume(matching: volume.key))
        #expect(stored.rawLV == lv && stored.importOwner != nil)
        // Its thin id is reserved but never expected in the pool.
        #expect(try attached.catalog.reservedThinIDs().contains(stored.thinID))
        #expect(try !attached.catalog.referencedThinIDs().contains(stored.thinID))
        let table = attached.devices.table(for: stored)
        #expect(table.targetType == .linear && table.parameters == "\(Paths.mapperPath(group: TestSR.group, volume: lv)) 0")
        #expect(table.lengthSectors == stored.virtualSize / 512)
        #expect(try attached.preallocated.finishFilling(stored).importOwner == nil)
    }

    @Test("more than the VG's free extents is refused before any row or LV is made")
    func tooLarge() throws {
        let sr = try TestSR()
        withGroup(sr, freeBytes: 8 << 20)
        let attached = try sr.open()
        defer { attached.close() }
        let error = #expect(throws: ThinError.self) {
            try attached.preallocated.beginPreallocatedVolume(name: "big", description: "", sizeBytes: 9 << 20, sharable: false)
        }
        #expect(error?.code == .noSpace)
        #expect(!sr.lvm.calls.contains { $0.hasPrefix("lvcreate") })
        #expect(try attached.catalog.volumes(includingUnfinished: true).isEmpty)
    }

    @Test("destroy removes the LV, then the row; snapshot, clone and changed-block tracking are refused")
    func destroy() throws {
        let sr = try TestSR()
        withGroup(sr, freeBytes: 1 << 30)
        let attached = try sr.open()
        defer { attached.close() }
        let volume = try makeRaw(attached, bytes: 4 << 20)
        let refusals = [
            #expect(throws: ThinError.self) { try attached.volumes.copyVolume(volume.key, kind: .snapshot, name: nil) },
            #expect(throws: ThinError.self) { try attached.volumes.copyVolume(volume.key, kind: .clone, name: nil) },
            #expect(throws: ThinError.self) {
                try attached.volumes.setMetadata(volume.key, name: nil, description: nil, set: [], unset: [], cbt: true)
            },
        ]
        for refusal in refusals {
            #expect(refusal?.code == .invalidArgument && refusal?.message.contains("preallocated raw volume") == true)
        }
        try attached.volumes.destroyVolume(volume.key)
        #expect(sr.lvm.calls.contains("lvremove [\"\(sr.names.rawLV(volume.uuid))\"]"))
        #expect(try attached.catalog.volumes(includingUnfinished: true).isEmpty)
    }

    @Test("a removal killed after marking the row is finished by the next writer; a rollback leaves it alone")
    func killedRemoval() throws {
        let sr = try TestSR()
        withGroup(sr, freeBytes: 1 << 30)
        var volume: VolumeRecord
        do {
            let attached = try sr.open()
            defer { attached.close() }
            volume = try makeRaw(attached, bytes: 4 << 20)
            try attached.catalog.setState(.removing, volume: volume.uuid)
            try attached.catalog.rollBack()   // a pool transaction's rollback must not bring it back
            #expect(try attached.catalog.removingRawVolumes().map(\.volume) == [volume.uuid])
        }
        let next = try sr.open()
        defer { next.close() }
        try next.recovered()
        #expect(sr.lvm.calls.filter { $0.hasPrefix("lvremove") } == ["lvremove [\"\(sr.names.rawLV(volume.uuid))\"]"])
        #expect(try next.catalog.volumes(includingUnfinished: true).isEmpty)
    }

    @Test("a grow extends the LV and marks the volume; the size is recorded only when the zeroing is done")
    func grow() throws {
        let sr = try TestSR()
        withGroup(sr, freeBytes: 1 << 30)
        let attached = try sr.open()
        defer { attached.close() }
        let volume = try makeRaw(attached, bytes: 6 << 20)
        let growth = try #require(try attached.volumes.beginResize(volume.key, to: 10 << 20))
        #expect(sr.lvm.calls.contains("lvextend \(TestSR.group)/\(sr.names.rawLV(volume.uuid))"))
        #expect(growth.from == 6 << 20 && growth.to == 12 << 20 && growth.size == 10 << 20)
        #expect(try attached.requireVolume(volume.key).virtualSize == 6 << 20)   // not until finishGrowth
        #expect(try attached.requireVolume(volume.key).growOwner != nil)
        try attached.preallocated.finishGrowth(growth)
        let grown = try attached.requireVolume(volume.key)
        #expect(grown.virtualSize == 10 << 20 && grown.growOwner == nil)
        // A mark whose process is gone is cleared by recovery.
        try attached.catalog.setOwner("\(System.bootID()) 999999999 1", of: .growing, volume: volume.uuid)
        try attached.preallocated.clearAbandonedGrowths()
        #expect(try attached.requireVolume(volume.key).growOwner == nil)
    }

    @Test("an own-the-world pool starts at half of what the VG has after catalog and metadata")
    func ownTheWorldHalf() async throws {
        let sr = try TestSR()
        let group = VolumeGroupReport(name: "vg", sizeBytes: 10 << 30, freeBytes: 10 << 30, extentBytes: 4 << 20, tags: [])
        let plan = try await StoragePlan.make(vg: group, poolBytes: nil, blockBytes: 64 << 10, metadataBytes: nil,
                                              programs: sr.programs)
        let left = (10 << 30) - 2 * plan.catalogBytes - 2 * plan.metadataBytes
        #expect(plan.dataBytes == left / (4 << 20) / 2 * (4 << 20))
    }
}
