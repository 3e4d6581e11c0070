import FoundationEssentials
import Synchronization
import Testing
import ThinLVM
import ThinDeviceMapper
@testable import ThinTools
@testable import ThinCore

/// `thinsr-check`'s branches on an attached SR (through the metadata
/// snapshot) and a detached one (offline, with the spare), against the doubles.
@Suite("check, attached")
struct AttachedCheckTests {
    func check(_ sr: TestSR, repair: Bool = false) async throws -> CheckReport {
        try await SRLifecycle(host: sr.host).check(sr.names.uuidString, repair: repair)
    }

    @Test("a consistent SR is clean, read through a metadata snapshot that is released after")
    func clean() async throws {
        let sr = try TestSR()
        try sr.addVolume("a", thinID: 1)
        let report = try await check(sr)
        #expect(report.outcome == .clean && report.attached && report.metadata == "clean")
        #expect(sr.poolMessages == ["reserve_metadata_snap", "release_metadata_snap"])
        #expect(sr.programs.calls.contains("thin_check --metadata-snap \(sr.mapperPath(.metadata))"))
        #expect(sr.deviceMapper.pool(sr.names.poolDevice)?.metadataSnapshotHeld == false)
    }

    @Test("a metadata snapshot left held by a dead process is released and taken again")
    func heldSnapshot() async throws {
        let sr = try TestSR()
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.metadataSnapshotHeld = true }
        #expect(try await check(sr).outcome == .clean)
        #expect(sr.poolMessages == ["reserve_metadata_snap", "release_metadata_snap", "reserve_metadata_snap",
                                    "release_metadata_snap"])
    }

    @Test("a failed pool is reported and nothing else is read")
    func failedPool() async throws {
        let sr = try TestSR()
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.failed = true }
        let report = try await check(sr, repair: true)
        #expect(report.findings.map(\.problem) == ["pool-failed"] && report.outcome == .damaged)
        #expect(sr.programs.calls.isEmpty && sr.poolMessages.isEmpty)
    }

    @Test("the kernel's needs_check flag is reported")
    func needsCheck() async throws {
        let sr = try TestSR()
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.needsCheck = true }
        #expect(try await check(sr).findings.map(\.problem) == ["needs-check"])
    }

    @Test("an open transaction is found; repair finishes or undoes it", arguments: [false, true])
    func openTransaction(repair: Bool) async throws {
        let sr = try TestSR()
        let catalog = try sr.catalog()
        try catalog.setPending(PendingTransaction(from: 0, messages: [.createThin(1)]))
        catalog.close()
        let report = try await check(sr, repair: repair)
        #expect(report.findings.first?.problem == "open-transaction")
        #expect(report.findings.first?.repaired == repair)
        #expect(report.outcome == (repair ? .repaired : .damaged))
        #expect((sr.openTransaction == nil) == repair)
    }

    @Test("an open transaction that must complete is completed by repair")
    func mustComplete() async throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("v", thinID: 1)
        let catalog = try sr.catalog()
        try catalog.setState(.destroying, volume: volume.uuid)
        try catalog.setPending(PendingTransaction(from: 0, messages: [.delete(1)]))
        catalog.close()
        let report = try await check(sr, repair: true)
        #expect(report.outcome == .repaired && report.findings.map(\.problem) == ["open-transaction"])
        let left = try sr.catalog().volumes(includingUnfinished: true)
        #expect(sr.poolThinIDs.isEmpty && left.isEmpty)
    }

    @Test("a device a killed change left suspended is found without its marker; repair resumes it")
    func unfinishedDevice() async throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("v", thinID: 1)
        sr.attachDevice(volume, suspended: true)
        let found = try await check(sr)
        #expect(found.findings.map(\.problem) == ["device-unfinished"] && found.outcome == .damaged)
        let repaired = try await check(sr, repair: true)
        #expect(repaired.outcome == .repaired)
        #expect(sr.deviceMapper.device(sr.names.volumeDevice(volume.uuid).name)?.suspended == false)
    }

    @Test("metadata that fails thin_check is damage to repair offline")
    func damagedMetadata() async throws {
        let sr = try TestSR()
        sr.programs.state.withLock {
            $0.checks[sr.mapperPath(.metadata)] = ThinTools.CheckResult(clean: false, report: "bad btree\nmore")
        }
        let report = try await check(sr)
        #expect(report.metadata == "damaged" && report.findings.map(\.problem) == ["metadata-damaged"])
        #expect(report.findings[0].detail.contains("thin_check: bad btree;"))
    }

    @Test("leaked ids are found; repair deletes them in a transaction; missing ones stay damage")
    func leakedAndMissing() async throws {
        let sr = try TestSR()
        try sr.addVolume("a", thinID: 1)
        try sr.addVolume("b", thinID: 2)
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.thinIDs = [1, 7, 8] }
        let found = try await check(sr)
        #expect(found.findings.map(\.problem) == ["leaked-thin-id", "leaked-thin-id", "missing-thin-id"])
        #expect(sr.poolThinIDs == [1, 7, 8])
        let repaired = try await check(sr, repair: true)
        #expect(repaired.findings.filter { $0.problem == "leaked-thin-id" }.allSatisfy { $0.repaired })
        #expect(repaired.outcome == .damaged, "a missing id cannot be repaired")
        #expect(sr.poolThinIDs == [1] && sr.poolTransactionID == 1)
        #expect(sr.poolMessages.suffix(3) == ["delete 7", "delete 8", "set_transaction_id 0 1"])
    }

    @Test("a transaction id mismatch is found; repair records the pool's id in the catalog")
    func transactionIDs() async throws {
        let sr = try TestSR()
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.transactionID = 4 }
        #expect(try await check(sr).findings.map(\.problem) == ["transaction-id-mismatch"])
        #expect(try await check(sr, repair: true).outcome == .repaired)
        #expect(try sr.catalog().srRecord().transactionID == 4)
        #expect(try await check(sr).outcome == .clean)
    }

    @Test("rows that contradict themselves are found")
    func rows() async throws {
        let sr = try TestSR()
        try sr.addVolume("snap", thinID: 1, kind: .snapshot, parent: UUID())
        let catalog = try sr.catalog()
        try catalog.database.query("UPDATE volume SET read_write = 1, snapshot_of = NULL, virtual_size = 1000")
        catalog.close()
        let problems = try await check(sr).findings.map(\.problem)
        #expect(problems == ["kind-disagrees", "kind-disagrees", "lineage-broken", "size-disagrees"])
    }

    @Test("repair grows a short device, reports one mapping another id, removes an orphan unless it is open",
          arguments: [0, 1] as [Int32])
    func devices(openCount: Int32) async throws {
        let sr = try TestSR()
        let volume = try sr.addVolume("a", thinID: 1)
        sr.attachDevice(volume, sizeBytes: 1 << 20)
        let orphan = sr.names.volumeDevice(UUID()).name
        sr.deviceMapper.addDevice(orphan, .init(table: [ThinTable(poolDevice: "p", deviceID: 9).line(lengthSectors: 8)],
                                                openCount: openCount))
        let other = try sr.addVolume("b", thinID: 2)
        sr.attachDevice(other)
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.thinIDs = [1, 2] }
        sr.deviceMapper.state.withLock { state in
            // b's device maps a thin id its row does not name.
            state.devices[sr.names.volumeDevice(other.uuid).name]?.table =
                [ThinTable(poolDevice: "p", deviceID: 5).line(lengthSectors: (1 << 30) / 512)]
        }
        let report = try await check(sr, repair: true)
        #expect(Set(report.findings.map(\.problem)) == ["device-disagrees", "device-unfinished", "orphan-device"])
        #expect(report.findings.first { $0.problem == "device-disagrees" }?.repaired == false)
        #expect(report.findings.first { $0.problem == "device-disagrees" }?.detail.contains("thin id 5") == true)
        let removed = report.findings.first { $0.problem == "orphan-device" }?.repaired
        #expect(removed == (openCount == 0))
        #expect((sr.deviceMapper.device(orphan) == nil) == (openCount == 0))
    }
}

@Suite("check, detached")
struct DetachedCheckTests {
    func check(_ sr: TestSR, repair: Bool = false) async throws -> CheckReport {
        try await SRLifecycle(host: sr.host).check(sr.names.uuidString, repair: repair)
    }

    func damage(_ sr: TestSR, _ device: String) {
        sr.programs.state.withLock { $0.checks[device] = ThinTools.CheckResult(clean: false, report: "bad superblock") }
    }

    @Test("offline: the metadata LVs are activated, checked and deactivated; the catalog read read-only")
    func clean() async throws {
        let sr = try TestSR(attached: false)
        try sr.addVolume("a", thinID: 1)
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.metadata)] = [1] }
        let report = try await check(sr)
        #expect(report.outcome == .clean && !report.attached)
        #expect(sr.system.calls.first == "mount -r \(sr.mapperPath(.catalog)) \(sr.names.inspectMount)")
        let lvs = [LVRole.metadata, .spare, .catalog, .catalogCopy].map { sr.names.lv($0) }.joined(separator: " ")
        #expect(sr.lvm.calls.filter { $0.hasPrefix("lvchange") } == ["lvchange -ay \(lvs)", "lvchange -an \(lvs)"])
        #expect(sr.system.calls.contains("mount -r \(sr.mapperPath(.catalogCopy)) \(sr.names.inspectMount)"),
                "the copy is read too, to compare its revision")
        #expect(sr.deviceMapper.calls.isEmpty, "a detached SR's check never touches device-mapper")
    }

    @Test("offline ids are compared too; --repair assembles the pool to delete leaked ones, then tears it down")
    func ids() async throws {
        let sr = try TestSR(attached: false)
        try sr.addVolume("a", thinID: 1)
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.metadata)] = [1, 5] }
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.thinIDs.insert(5) }
        let found = try await check(sr)
        #expect(found.findings.map(\.problem) == ["leaked-thin-id"] && found.findings[0].detail.contains("--repair"))
        #expect(sr.deviceMapper.calls.isEmpty)
        let report = try await check(sr, repair: true)
        #expect(report.findings.map(\.problem) == ["leaked-thin-id"] && report.findings[0].repaired)
        #expect(sr.deviceMapper.calls.contains(sr.message("delete 5")))
        #expect(sr.deviceMapper.device(sr.names.poolDevice) == nil && !sr.system.isMounted(sr.names.catalogMount))
    }

    @Test("offline: a transaction id the catalog does not know, or an open transaction, is found and repaired online")
    func offlineTransactions() async throws {
        let sr = try TestSR(attached: false)
        try sr.addVolume("a", thinID: 1)
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.metadata)] = [1] }
        sr.deviceMapper.updatePool(sr.names.poolDevice) { $0.transactionID = 7 }
        #expect(try await check(sr).findings.map(\.problem) == ["transaction-id-mismatch"])
        let report = try await check(sr, repair: true)
        #expect(report.findings.map(\.problem) == ["transaction-id-mismatch"] && report.findings[0].repaired)
        #expect(try sr.catalog().srRecord().transactionID == 7)
        // An open create whose ids match neither side, and which reached the pool: kept.
        let catalog = try sr.catalog()
        try catalog.insert(VolumeRecord(uuid: UUID(), key: "b", name: "b", description: "", thinID: 2,
                                        virtualSize: 1 << 20, kind: .volume, readWrite: true, sharable: false,
                                        createdAt: 1, keys: [:], parentUUID: nil, snapshotOf: nil, state: .creating))
        try catalog.setPending(PendingTransaction(from: 3, messages: [.createThin(2)]))
        catalog.close()
        // (The double forgets a pool's metadata when its device goes: set it up again.)
        sr.deviceMapper.updatePool(sr.names.poolDevice) { pool in
            pool.thinIDs = [1, 2]
            pool.transactionID = 7
        }
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.metadata)] = [1, 2] }
        #expect(try await check(sr).findings.map(\.problem) == ["open-transaction"])
        let settled = try await check(sr, repair: true)
        #expect(settled.findings.first?.repaired == true && settled.findings[0].detail.contains("settled"))
        #expect(try sr.catalog().volumes().map(\.key).sorted() == ["a", "b"] && sr.openTransaction == nil)
        #expect(try sr.catalog().srRecord().transactionID == 7)
    }

    @Test("a lost catalog (its database gone, or its LV) is rebuilt from the copy with every row; the copy is checked too")
    func catalogRebuilt() async throws {
        let sr = try TestSR(attached: false)
        let base = try sr.addVolume("base", thinID: 1)
        try sr.addVolume("snap", thinID: 2, kind: .snapshot, parent: base.uuid)
        let labelled = try sr.catalog()
        try labelled.setKey("k=v", value: "--x", volume: base.uuid)
        labelled.close()
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.metadata)] = [1, 2] }
        let before = try sr.catalog().volumes()
        #expect(try await check(sr).outcome == .clean)

        System.removeFile("\(sr.filesystem)/catalog.db")   // as a zeroed LV that e2fsck -fy emptied
        let found = try await check(sr)
        #expect(found.findings.map(\.problem) == ["catalog-damaged"])
        #expect(found.findings[0].detail.contains("rebuilds the catalog from its copy"))
        let repaired = try await check(sr, repair: true)
        #expect(repaired.findings.map(\.problem) == ["catalog-damaged"] && repaired.outcome == .repaired)
        #expect(repaired.findings[0].detail.contains("rebuilt from the catalog copy (2 volume(s)"))
        #expect(try sr.catalog().volumes() == before)
        #expect(try await check(sr).outcome == .clean)

        // The LV itself removed: made again, with the SR's tags, and filled from the copy.
        sr.lvm.state.withLock { $0.logicalVolumes.removeAll { $0.name == sr.names.lv(.catalog) } }
        System.removeFile("\(sr.filesystem)/catalog.db")
        #expect(try await check(sr).findings.map(\.problem) == ["catalog-missing"])
        let recreated = try await check(sr, repair: true)
        #expect(recreated.outcome == .repaired)
        #expect(sr.lvm.calls.contains("lvcreate \(TestSR.group)/\(sr.names.lv(.catalog))"))
        let tags = sr.lvm.state.withLock { $0.logicalVolumes.first { $0.name == sr.names.lv(.catalog) }?.tags }
        #expect(tags?.contains(LVRole.catalog.tag) == true && tags?.contains(sr.names.srTag) == true)
        #expect(try sr.catalog().volumes() == before)
    }

    @Test("a copy behind the catalog is found offline and rebuilt by --repair; without a copy the catalog stays lost")
    func staleAndMissingCopy() async throws {
        let sr = try TestSR(attached: false)
        try sr.addVolume("a", thinID: 1)
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.metadata)] = [1] }
        let behind = try Catalog(path: "\(sr.filesystem)/catalog.db")   // a writer whose copy commit was lost
        let volume = try #require(try behind.volume(matching: "a"))
        try behind.setLabel(name: "renamed", description: nil, volume: volume.uuid)
        behind.close()
        #expect(try await check(sr).findings.map(\.problem) == ["catalog-copy-stale"])
        let repaired = try await check(sr, repair: true)
        #expect(repaired.findings.map(\.problem) == ["catalog-copy-stale"] && repaired.outcome == .repaired)
        #expect(try await check(sr).outcome == .clean)

        sr.lvm.state.withLock { $0.logicalVolumes.removeAll { $0.name == sr.names.lv(.catalogCopy) } }
        #expect(try await check(sr).findings.map(\.problem) == ["catalog-copy-missing"])
        System.removeFile("\(sr.filesystem)/catalog.db")
        let lost = try await check(sr, repair: true)
        #expect(lost.outcome == .damaged && lost.findings[0].detail.contains("no catalog copy"))
    }

    @Test("a rebuild from a copy that stopped taking commits keeps the thin ids the pool holds beyond it")
    func rebuildFromBehindCopy() async throws {
        let sr = try TestSR(attached: false)
        try sr.addVolume("a", thinID: 1)
        // A writer without the copy makes volume b: the catalog and pool have it, the copy does not.
        let alone = try Catalog(path: "\(sr.filesystem)/catalog.db")
        try alone.insert(VolumeRecord(uuid: UUID(), key: "b", name: "b", description: "", thinID: 2,
                                      virtualSize: 1 << 20, kind: .volume, readWrite: true, sharable: false,
                                      createdAt: 1, keys: [:], parentUUID: nil, snapshotOf: nil, state: .ready))
        try alone.setTransactionID(1)
        alone.close()
        sr.deviceMapper.updatePool(sr.names.poolDevice) { pool in
            pool.thinIDs = [1, 2]
            pool.transactionID = 1
        }
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.metadata)] = [1, 2] }
        System.removeFile("\(sr.filesystem)/catalog.db")
        let report = try await check(sr, repair: true)
        #expect(report.findings.map(\.problem) == ["catalog-damaged", "transaction-id-mismatch", "leaked-thin-id"])
        #expect(report.outcome == .damaged && report.findings.last?.detail.contains("this repair left them") == true)
        #expect(!sr.deviceMapper.calls.contains(sr.message("delete 2")), "the thin id of volume b is kept")
        #expect(try sr.catalog().volumes().map(\.key) == ["a"])
    }

    @Test("e2fsck's report is summed up by its first line that says something")
    func filesystemProblem() {
        #expect(CheckReport.filesystemProblem("/dev/mapper/vg-lv: \n\nThe superblock could not be read") ==
                "The superblock could not be read")
        #expect(CheckReport.filesystemProblem("/dev/mapper/vg-lv: Inode 12 has an invalid extent") ==
                "/dev/mapper/vg-lv: Inode 12 has an invalid extent")
        #expect(CheckReport.filesystemProblem("") == "failed")
    }

    @Test("damaged metadata without repair says how to repair")
    func damagedNoRepair() async throws {
        let sr = try TestSR(attached: false)
        damage(sr, sr.mapperPath(.metadata))
        let report = try await check(sr)
        #expect(report.metadata == "damaged" && report.findings[0].detail.contains("thinsr-check --repair"))
        #expect(!sr.programs.calls.contains { $0.hasPrefix("thin_repair") })
    }

    @Test("repair rebuilds into the zeroed spare and swaps it in by name and role tag")
    func repaired() async throws {
        let sr = try TestSR(attached: false)
        try sr.addVolume("a", thinID: 1)
        damage(sr, sr.mapperPath(.metadata))
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.spare)] = [1] }
        let report = try await check(sr, repair: true)
        #expect(report.metadata == "repaired" && report.findings[0].repaired)
        #expect(sr.system.calls.contains("zero \(sr.mapperPath(.spare))"))
        #expect(sr.programs.calls.contains("thin_repair -i \(sr.mapperPath(.metadata)) -o \(sr.mapperPath(.spare))"))
        let (meta, spare, swap) = (sr.names.lv(.metadata), sr.names.lv(.spare), sr.names.swapLV)
        let renames = sr.lvm.calls.filter { $0.hasPrefix("lvrename") }
        #expect(renames == ["lvrename vg0 \(meta) \(swap)", "lvrename vg0 \(spare) \(meta)", "lvrename vg0 \(swap) \(spare)"])
        // The commit point came first: one lvchange gave the repaired copy the next generation.
        let commit = try #require(sr.lvm.calls.firstIndex(of: "lvchange vg0/\(spare) - +thinsr.metagen=1"))
        #expect(commit < (sr.lvm.calls.firstIndex(of: renames[0]) ?? -1))
        let lvs = sr.lvm.state.withLock { $0.logicalVolumes }
        let metadataLV = try #require(lvs.first { $0.name == meta })
        #expect(metadataLV.tags.contains("thinsr.metagen=1") && metadataLV.tags.contains(LVRole.metadata.tag))
        #expect(lvs.first { $0.name == spare }?.tags.contains(LVRole.spare.tag) == true)
    }

    @Test("a swap killed after its commit point, at any later step, is finished by the next check or attach",
          arguments: [0, 1, 2, 3])
    func swapRollsForward(failingStep: Int) async throws {
        let sr = try TestSR(attached: false)
        try sr.addVolume("a", thinID: 1)
        damage(sr, sr.mapperPath(.metadata))
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.spare)] = [1] }
        let (meta, spare, swap) = (sr.names.lv(.metadata), sr.names.lv(.spare), sr.names.swapLV)
        let steps = ["lvrename vg0 \(meta) \(swap)", "lvrename vg0 \(spare) \(meta)", "lvrename vg0 \(swap) \(spare)",
                     "lvchange vg0/\(meta) -thinsr.role=spare +thinsr.role=meta"]
        sr.lvm.state.withLock { _ = $0.failing.insert(steps[failingStep]) }
        await #expect(throws: ThinError.self) { try await check(sr, repair: true) }
        sr.lvm.state.withLock { $0.failing = [] }
        let zeroes = sr.system.calls.filter { $0.hasPrefix("zero") }.count
        // The metadata now (by generation) is the repaired copy, whatever its name: the next check is clean.
        sr.programs.state.withLock {
            $0.checks = [:]
            $0.listed[sr.mapperPath(.metadata)] = [1]
        }
        let report = try await check(sr, repair: true)
        #expect(report.findings.isEmpty)
        #expect(sr.system.calls.filter { $0.hasPrefix("zero") }.count == zeroes)
        let lvs = sr.lvm.state.withLock { $0.logicalVolumes }
        #expect(lvs.first { $0.name == meta }?.tags.contains("thinsr.metagen=1") == true)
        #expect(lvs.first { $0.name == spare }?.tags.contains(LVRole.spare.tag) == true)
        #expect(!lvs.contains { $0.name == swap })
    }

    @Test("a repair that fails leaves the metadata as it was")
    func repairFails() async throws {
        let sr = try TestSR(attached: false)
        damage(sr, sr.mapperPath(.metadata))
        sr.programs.state.withLock { $0.repairFails = true }
        let report = try await check(sr, repair: true)
        #expect(!report.findings[0].repaired && report.findings[0].detail.contains("thin_repair failed"))
        #expect(!sr.lvm.calls.contains { $0.hasPrefix("lvrename") })
    }

    @Test("a repaired copy that still fails, or lacks referenced ids, is not used", arguments: [false, true])
    func copyRefused(stillDamaged: Bool) async throws {
        let sr = try TestSR(attached: false)
        try sr.addVolume("a", thinID: 1)
        damage(sr, sr.mapperPath(.metadata))
        if stillDamaged { damage(sr, sr.mapperPath(.spare)) }
        sr.programs.state.withLock { $0.listed[sr.mapperPath(.spare)] = stillDamaged ? [1] : [] }
        let report = try await check(sr, repair: true)
        #expect(!report.findings[0].repaired)
        #expect(report.findings[0].detail.contains(stillDamaged ? "still fails thin_check" : "lacks thin ids"))
        #expect(!sr.lvm.calls.contains { $0.hasPrefix("lvrename") })
    }

    @Test("an SR another host owns is refused before anything is read")
    func foreign() async throws {
        let sr = try TestSR(attached: false)
        sr.own(by: "there", local: "here")
        await #expect { try await check(sr) } throws: { ($0 as? ThinError)?.code == .activatedOnAnotherHost }
        #expect(sr.programs.calls.isEmpty && sr.system.calls.isEmpty)
    }
}
