import FoundationEssentials
import Synchronization
import Testing
import ThinDeviceMapper
import ThinTools
@testable import ThinLVM
@testable import ThinCore

@Suite("changed blocks")
struct ChangedBlocksTests {
    typealias Run = ThinDeviceMappings.Run

    @Test("written since (time at or after the snapshot's creation) and discarded since both count; shared blocks do not")
    func poolBlocks() {
        // The snapshot (created at time 3) maps 0..<4 and 10..<12; the later state keeps 0..<2 shared (time 1),
        // rewrote 2 (time 3) and wrote 20 (time 5), and no longer maps 3 or 10..<12 (discarded).
        let changed = ChangedBlocks.poolBlocks(fromCreationTime: 3, fromMapped: [0..<4, 10..<12],
                                               to: [Run(begin: 0, length: 2, time: 1), Run(begin: 2, length: 1, time: 3),
                                                    Run(begin: 20, length: 1, time: 5)])
        #expect(changed == [2..<4, 10..<12, 20..<21])
        #expect(ChangedBlocks.poolBlocks(fromCreationTime: 3, fromMapped: [0..<4],
                                         to: [Run(begin: 0, length: 4, time: 2)]).isEmpty, "nothing written since")
    }

    @Test("range arithmetic: merge and subtract")
    func ranges() {
        #expect(ChangedBlocks.merged([5..<7, 0..<2, 1..<3, 7..<8, 9..<9]) == [0..<3, 5..<8])
        #expect(ChangedBlocks.subtract([0..<10, 20..<30], [2..<4, 8..<22, 25..<26]) == [0..<2, 4..<8, 22..<25, 26..<30])
        #expect(ChangedBlocks.subtract([0..<4], []) == [0..<4])
    }

    @Test("the bitmap: 64 KiB per bit, first block in the top bit, padded to 4-byte words, limited to a range")
    func bitmap() {
        let k64: UInt64 = 64 << 10
        let changes = ChangedBlocks(extents: [.init(offset: 0, length: k64), .init(offset: 9 * k64, length: 2 * k64)],
                                    virtualSize: 40 * k64)
        #expect(changes.bitmap() == [0b1000_0000, 0b0110_0000, 0, 0, 0, 0, 0, 0])  // 40 bits -> two words
        // A pool block of 256 KiB marks its four 64 KiB blocks.
        let wide = ChangedBlocks(extents: [.init(offset: 4 * k64, length: 4 * k64)], virtualSize: 8 * k64)
        #expect(wide.bitmap() == [0b0000_1111, 0, 0, 0])
        // From offset 8 x 64 KiB for 4 blocks: bits 1 and 2 (blocks 9, 10).
        #expect(changes.bitmap(offset: 8 * k64, length: 4 * k64) == [0b0110_0000, 0, 0, 0])
        #expect(ChangedBlocks(extents: [], virtualSize: 0).bitmap().isEmpty)
    }

    func record(_ key: String, kind: VolumeKind = .snapshot, source: VolumeRecord? = nil, since: UInt64?) -> VolumeRecord {
        VolumeRecord(uuid: UUID(), key: key, name: key, description: "", thinID: 1, virtualSize: 1 << 30, kind: kind,
                     readWrite: kind != .snapshot, sharable: false, createdAt: 1, keys: [:], parentUUID: source?.uuid,
                     snapshotOf: kind == .snapshot ? source?.uuid : nil, state: .ready, dataSource: source?.uuid,
                     dataSince: since)
    }

    @Test("lineage: a snapshot is an earlier state of its volume, of later snapshots and of their clones; never across a revert or disks")
    func lineage() throws {
        var volume = record("v", kind: .volume, since: 1)
        let s1 = record("s1", source: volume, since: 2)
        let s2 = record("s2", source: volume, since: 3)
        let clone = record("c", kind: .clone, source: s2, since: 4)
        let other = record("o", kind: .volume, since: 5)
        let foreign = record("f", source: other, since: 6)
        let legacy = record("l", source: volume, since: nil)
        var all = Dictionary(uniqueKeysWithValues: [volume, s1, s2, clone, other, foreign, legacy].map { ($0.uuid, $0) })
        let derives = { (later: VolumeRecord, earlier: VolumeRecord) in
            (try? SRLineage.requireDerives(later, from: earlier, volumes: all)) != nil
        }
        #expect(derives(volume, s1) && derives(s2, s1) && derives(clone, s1) && derives(clone, s2))
        #expect(!derives(s1, s2), "a later snapshot is not an earlier state of an older one")
        #expect(!derives(volume, foreign) && !derives(other, s1), "another disk's lineage")
        #expect(!derives(volume, legacy), "a row from before the records cannot be proven")
        let old = record("old", kind: .volume, since: nil)
        let fresh = record("fresh", source: old, since: 9)
        all[old.uuid] = old
        all[fresh.uuid] = fresh
        #expect(derives(old, fresh), "a volume from before the records, from its first recorded snapshot on")
        // Reverted to s1 at transaction 7: s2 (taken before the revert) no longer precedes it; s1 does.
        volume.dataSource = s1.uuid
        volume.dataSince = 7
        all[volume.uuid] = volume
        #expect(!derives(volume, s2))
        #expect(derives(volume, s1))
        let s3 = record("s3", source: volume, since: 8)
        all[s3.uuid] = s3
        #expect(derives(volume, s3) && !derives(s3, s2))
        // Reverted again, to s2 at 9: s3 holds s1's data plus writes, not s2's, though the volume now comes from s2.
        volume.dataSource = s2.uuid
        volume.dataSince = 9
        all[volume.uuid] = volume
        #expect(!derives(s3, s2), "s3 -> volume, whose device is newer than s3: another history")
        #expect(derives(volume, s2) && !derives(volume, s3))
    }
}

@Suite("data destroy")
struct DataDestroyTests {
    @Test("a snapshot's data goes in one pool transaction; its row keeps what changed-block queries need")
    func dataDestroy() async throws {
        let sr = try TestSR()
        let open = try sr.open()
        defer { open.close() }
        let volume = try open.volumes.createVolume(name: "disk", description: "", sizeBytes: 1 << 20, sharable: false)
        let snapshot = try open.volumes.copyVolume(volume.key, kind: .snapshot, name: "s1")
        sr.programs.state.withLock { state in
            state.mappings[snapshot.thinID.value] = ThinDeviceMappings(
                deviceID: snapshot.thinID.value, creationTime: 4, runs: [.init(begin: 0, length: 3, time: 1)])
            state.mappings[volume.thinID.value] = ThinDeviceMappings(
                deviceID: volume.thinID.value, creationTime: 0,
                runs: [.init(begin: 0, length: 1, time: 1), .init(begin: 2, length: 1, time: 5)])
        }
        let destroyed = try await open.lineage.destroyData(snapshot.key)
        #expect(destroyed.dataDestroyed && destroyed.changeBase == ChangeBase(creationTime: 4, mapped: [0..<3]))
        #expect(sr.deviceMapper.calls.contains(sr.message("delete \(snapshot.thinID)")))
        #expect(!(try open.catalog.referencedThinIDs().contains(snapshot.thinID)), "the pool no longer holds it")
        #expect(try open.catalog.reservedThinIDs().contains(snapshot.thinID), "but no new device may take its id")
        // Block 1 was discarded since (mapped in s1 only), block 2 rewritten (time 5 >= 4).
        let changes = try await open.lineage.changedBlocks(from: snapshot.key, to: volume.key)
        #expect(changes.extents.map(\.offset) == [65536] && changes.extents.map(\.length) == [2 * 65536])
        #expect(!sr.programs.calls.contains { $0.hasPrefix("thin_dump") && $0.contains("[\(snapshot.thinID.value),") },
                "the destroyed snapshot's device is not dumped again")
        _ = try await open.lineage.destroyData(snapshot.key)   // again: nothing changes
        #expect(sr.deviceMapper.calls.filter { $0 == sr.message("delete \(snapshot.thinID)") }.count == 1)
        await #expect(throws: ThinError.self) { try await open.attachments.attachVolume(snapshot.key, readOnly: true) }
        #expect(throws: ThinError.self) { try open.volumes.copyVolume(snapshot.key, kind: .clone, name: nil) }
        await #expect(throws: ThinError.self) { try await open.lineage.destroyData(volume.key) }
        try open.volumes.destroyVolume(snapshot.key)
        #expect(try open.catalog.volume(matching: snapshot.key) == nil)
    }
}

@Suite("catalog growth")
struct CatalogGrowthTests {
    func lv(_ bytes: UInt64) -> LogicalVolumeReport {
        LogicalVolumeReport(volumeGroup: "vg", name: "c", sizeBytes: bytes, tags: [], active: true, mapperPath: "/dev/x")
    }

    @Test("a half-full catalog doubles, small or large; one whose LV already doubled (a killed extend) does not")
    func growth() {
        let mib: UInt64 = 1 << 20
        // 32 MiB and 64 MiB LVs, whose ext4 offers about 25 and 55 MiB, more than half used.
        #expect(SRAdministration.catalogGrowth(lv(32 * mib), space: (25 * mib, 2 * mib), extent: 4 * mib) == 32 * mib)
        #expect(SRAdministration.catalogGrowth(lv(64 * mib), space: (55 * mib, 20 * mib), extent: 4 * mib) == 64 * mib)
        #expect(SRAdministration.catalogGrowth(lv(64 * mib), space: (55 * mib, 40 * mib), extent: 4 * mib) == 0, "under half full")
        #expect(SRAdministration.catalogGrowth(lv(64 * mib), space: (25 * mib, 2 * mib), extent: 4 * mib) == 0,
                "the LV doubled but resize2fs has not run yet")
    }
}
