import FoundationEssentials
import Testing
import ThinDeviceMapper
@testable import ThinCore
#if canImport(Glibc)
import Glibc
#endif

@Suite("reliability logic")
struct ReliabilityTests {
    @Test("the metadata reserve is the kernel's plus an eighth, never less than 64 blocks of our own")
    func reserve() {
        #expect(SpaceReserve.metadataReserveBlocks(totalBlocks: 1024) == 102 + 128)
        #expect(SpaceReserve.metadataReserveBlocks(totalBlocks: 512) == 51 + 64)
        // The kernel's share stops at 4096 blocks (16 MiB).
        #expect(SpaceReserve.metadataReserveBlocks(totalBlocks: 1_000_000) == 4096 + 125_000)
    }

    @Test("the on-full policy becomes error_if_no_space in the pool table, and nothing for queue")
    func policyTable() {
        let error = Pool.Layout(metadataDevice: "/dev/m", dataDevice: "/dev/d", dataBytes: 1 << 30,
                                blockBytes: 65536, onFull: .error).table
        let queue = Pool.Layout(metadataDevice: "/dev/m", dataDevice: "/dev/d", dataBytes: 1 << 30,
                                blockBytes: 65536, onFull: .queue).table
        #expect(error.parameters.hasSuffix(" 1 error_if_no_space"))
        #expect(queue.parameters.hasSuffix(" 0"))
        #expect(error.lengthSectors == (1 << 30) / 512)
        #expect(ThinPoolTable(parameters: error.parameters)?.features == [.errorIfNoSpace])
    }

    @Test("leaked and missing thin ids are told apart; a report's outcome follows its findings")
    func comparison() {
        let findings = CheckReport.compareIDs(pool: [1, 2, 7], catalog: [1, 2, 3], repairable: true)
        #expect(findings.map(\.problem) == ["leaked-thin-id", "missing-thin-id"])
        #expect(findings[0].detail.contains("thin id 7") && findings[1].detail.contains("thin id 3"))
        #expect(CheckReport.compareIDs(pool: [1], catalog: [1], repairable: true).isEmpty)
        var report = CheckReport(srUUID: UUID(), attached: true, metadata: "clean", findings: [])
        #expect(report.outcome == .clean)
        report.findings = [CheckFinding(.leakedThinID, detail: "", repaired: true)]
        #expect(report.outcome == .repaired)
        report.findings.append(CheckFinding(.missingThinID, detail: "", repaired: false))
        #expect(report.outcome == .damaged)
    }

    @Test("the on-full policy round-trips through the catalog, and old catalogs gain the column")
    func policyCatalog() throws {
        var template = Array("/tmp/thinsr-policy-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template))
        let path = "\(directory)/catalog.db"
        let catalog = try Catalog.create(path: path, record: SRRecord(
            uuid: UUID(), name: "s", description: "", mode: .beNice, volumeGroup: "vg", blockSizeBytes: 65536,
            transactionID: 0, nextThinID: 1, createdAt: 1, onFull: .error))
        #expect(try catalog.srRecord().onFull == .error)
        try catalog.setOnFull(.queue)
        #expect(try catalog.srRecord().onFull == .queue)
        // A catalog made before the column existed.
        try catalog.database.execute("CREATE TABLE old AS SELECT * FROM sr; DROP TABLE sr; "
                                     + "CREATE TABLE sr AS SELECT id, format_version, uuid, name, description, mode, "
                                     + "volume_group, block_size, transaction_id, next_thin_id, created_at FROM old")
        catalog.close()
        let reopened = try Catalog(path: path)
        #expect(try reopened.srRecord().onFull == .queue)
        reopened.close()
    }
}
