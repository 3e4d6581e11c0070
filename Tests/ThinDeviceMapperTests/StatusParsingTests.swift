import Testing
import ThinDeviceMapper

@Suite("thin-pool status lines")
struct PoolStatusTests {
    @Test("a healthy pool with every field, kernel >= 4.19")
    func healthy() throws {
        let status = try #require(ThinPoolStatus(parameters:
            "7 151/4161600 1024/16384 - rw discard_passdown queue_if_no_space - 1024"))
        guard case .active(let usage) = status else { Issue.record("expected active, got \(status)"); return }
        #expect(usage.transactionID == 7)
        #expect(usage.usedMetadataBlocks == 151 && usage.totalMetadataBlocks == 4_161_600)
        #expect(usage.usedDataBlocks == 1024 && usage.totalDataBlocks == 16384)
        #expect(usage.heldMetadataRoot == nil)
        #expect(usage.mode == .readWrite && usage.discardPassdown && !usage.errorIfNoSpace && !usage.needsCheck)
        #expect(usage.metadataLowWatermark == 1024)
    }

    @Test("every mode and flag the kernel documents", arguments: [
        ("0 1/2 3/4 - ro no_discard_passdown error_if_no_space needs_check", ThinPoolMode.readOnly, false, true, true),
        ("0 1/2 4/4 - out_of_data_space discard_passdown queue_if_no_space -", .outOfDataSpace, true, false, false),
        ("0 1/2 3/4 - rw no_discard_passdown error_if_no_space - 8", .readWrite, false, true, false),
        // A pool without discards (another tool's), as 4.19 and 6.1 both report it.
        ("0 1/2 3/4 - rw ignore_discard queue_if_no_space - 8", .readWrite, false, false, false),
    ])
    func modes(line: String, mode: ThinPoolMode, passdown: Bool, errorIfNoSpace: Bool, needsCheck: Bool) throws {
        guard case .active(let usage)? = ThinPoolStatus(parameters: line) else {
            Issue.record("\(line) did not parse"); return
        }
        #expect(usage.mode == mode)
        #expect(usage.discardPassdown == passdown)
        #expect(usage.errorIfNoSpace == errorIfNoSpace)
        #expect(usage.needsCheck == needsCheck)
    }

    @Test("a held metadata root")
    func heldRoot() throws {
        guard case .active(let usage)? = ThinPoolStatus(parameters:
            "3 10/100 5/50 2057 rw discard_passdown queue_if_no_space - 10") else { Issue.record("no parse"); return }
        #expect(usage.heldMetadataRoot == 2057)
    }

    @Test("Fail and Error")
    func failed() {
        #expect(ThinPoolStatus(parameters: "Fail") == .failed)
        #expect(ThinPoolStatus(parameters: "Error") == .error)
    }

    @Test("malformed lines are rejected", arguments: [
        "", "7", "x 1/2 3/4 - rw discard_passdown queue_if_no_space -",
        "7 1/2 3/4 - sideways discard_passdown queue_if_no_space -",
        "7 3/2 3/4 - rw discard_passdown queue_if_no_space -",
        "7 1-2 3/4 - rw discard_passdown queue_if_no_space -",
        "7 1/2 3/4 - rw maybe_passdown queue_if_no_space -",
        "7 1/2 3/4 - rw discard_passdown panic -",
        "7 1/2 3/4 - rw discard_passdown queue_if_no_space needs_help",
        "7 1/2 3/4 x rw discard_passdown queue_if_no_space -",
        "7 1/2 3/4 - rw discard_passdown queue_if_no_space - 1 extra",
    ])
    func malformed(line: String) {
        #expect(ThinPoolStatus(parameters: line) == nil)
    }
}

@Suite("thin status lines")
struct ThinStatusTests {
    @Test func mapped() {
        #expect(ThinStatus(parameters: "2048 4095") == .active(mappedSectors: 2048, highestMappedSector: 4095))
    }
    @Test func nothingMapped() {
        #expect(ThinStatus(parameters: "0 -") == .active(mappedSectors: 0, highestMappedSector: nil))
    }
    @Test func failed() { #expect(ThinStatus(parameters: "Fail") == .failed) }
    @Test("Error: the kernel could not read the device's metadata")
    func unreadable() { #expect(ThinStatus(parameters: "Error") == .failed) }
    @Test(arguments: ["", "1", "a b", "1 2 3", "-1 5"]) func malformed(line: String) {
        #expect(ThinStatus(parameters: line) == nil)
    }
}

@Suite("tables")
struct TableTests {
    @Test("thin-pool parameters round-trip")
    func poolRoundTrip() throws {
        let table = ThinPoolTable(metadataDevice: "253:1", dataDevice: "253:2", blockSizeSectors: 128,
                                  lowWaterMarkBlocks: 10, features: [.skipBlockZeroing, .errorIfNoSpace])
        #expect(table.parameters == "253:1 253:2 128 10 2 skip_block_zeroing error_if_no_space")
        #expect(ThinPoolTable(parameters: table.parameters) == table)
        #expect(table.line(lengthSectors: 2048) == TableLine(lengthSectors: 2048, targetType: .thinPool,
                                                             parameters: table.parameters))
    }

    @Test("the kernel's form without features")
    func poolWithoutFeatures() {
        #expect(ThinPoolTable(parameters: "253:1 253:2 128 10 0")?.features == [])
        #expect(ThinPoolTable(parameters: "253:1 253:2 128 10")?.features == [])
        #expect(ThinPoolTable(parameters: "253:1 253:2 128 10 2 skip_block_zeroing") == nil)
        #expect(ThinPoolTable(parameters: "253:1 253:2 128 10 1 frobnicate") == nil)
    }

    @Test("block sizes", arguments: [(128, true), (256, true), (2_097_152, true), (64, false), (192, false),
                                     (2_097_280, false), (0, false)])
    func blockSizes(sectors: UInt64, valid: Bool) {
        #expect(ThinPoolTable.isValidBlockSize(sectors: sectors) == valid)
    }

    @Test("thin parameters")
    func thin() {
        let table = ThinTable(poolDevice: "/dev/mapper/p", deviceID: 42)
        #expect(table.parameters == "/dev/mapper/p 42")
        #expect(ThinTable(parameters: "253:3 42 253:9") == ThinTable(poolDevice: "253:3", deviceID: 42,
                                                                         externalOrigin: "253:9"))
        #expect(ThinTable(parameters: "253:3 16777216") == nil, "ids are 24-bit")
        #expect(ThinTable(parameters: "253:3") == nil)
    }
}
