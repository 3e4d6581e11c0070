import Testing
import ThinDeviceMapper

@Suite("the mirror target: its table, its status line, its disk log")
struct MirrorTargetTests {
    @Test("a disk-logged two-leg table, as dm-raid1 reads it")
    func table() {
        let table = MirrorTable(logDevice: "/dev/loop3", regionSectors: 128,
                                legs: [MirrorLeg(device: "/dev/mapper/src"), MirrorLeg(device: "/dev/nbd0")])
        #expect(table.line(lengthSectors: 524288).parameters == "disk 2 /dev/loop3 128 2 /dev/mapper/src 0 /dev/nbd0 0")
        #expect(table.line(lengthSectors: 8).targetType == .mirror)
        #expect(MirrorTable.isValidRegion(sectors: 128) && !MirrorTable.isValidRegion(sectors: 96))
        #expect(!MirrorTable.isValidRegion(sectors: 1))
    }

    @Test("status: copying, in sync, a dead remote leg, a core log")
    func status() throws {
        let copying = try #require(MirrorStatus(parameters: "2 253:4 43:0 30/2048 1 AA 3 disk 7:3 A"))
        #expect(copying.inSyncRegions == 30 && copying.totalRegions == 2048)
        #expect(copying.isHealthy && !copying.isInSync && copying.logHealth == .alive)
        let synced = try #require(MirrorStatus(parameters: "2 253:4 43:0 2048/2048 1 AA 3 disk 7:3 A"))
        #expect(synced.isInSync && synced.isHealthy)
        let dead = try #require(MirrorStatus(parameters: "2 253:4 43:0 2047/2048 1 AD 3 disk 7:3 A"))
        #expect(dead.legHealth == [.alive, .writeFailed] && !dead.isHealthy)
        let badLog = try #require(MirrorStatus(parameters: "2 253:4 43:0 2048/2048 1 AA 3 disk 7:3 F"))
        #expect(!badLog.isHealthy)
        let core = try #require(MirrorStatus(parameters: "2 253:4 43:0 1/4 1 AS 1 core"))
        #expect(core.logHealth == nil && core.legHealth == [.alive, .syncFailed])
    }

    @Test("malformed status lines", arguments: ["", "2 a b", "2 253:4 43:0 x/2 1 AA 1 core", "2 253:4 43:0 1/2 1 A 1 core",
                                                 "2 253:4 43:0 1/2 2 AA 1 core", "0 1/2 1  1 core"])
    func malformed(_ line: String) { #expect(MirrorStatus(parameters: line) == nil) }

    @Test("the disk log's bytes: header, then one little-endian bit per region from byte 1024")
    func diskLog() throws {
        var log = MirrorDiskLog(regions: 40)
        log.setInSync(0, true)
        log.setInSync(9, true)
        log.setInSync(39, true)
        let bytes = log.bytes
        #expect(bytes.count == 1536)
        #expect(Array(bytes[0..<4]) == [0x72, 0x52, 0x69, 0x4D])   // "rRiM": 0x4D695272 little-endian
        #expect(Array(bytes[4..<8]) == [2, 0, 0, 0] && Array(bytes[8..<16]) == [40, 0, 0, 0, 0, 0, 0, 0])
        #expect(bytes[1024] == 0b0000_0001 && bytes[1025] == 0b0000_0010 && bytes[1028] == 0b1000_0000)
        #expect(log.inSyncCount == 3)
        let read = try #require(MirrorDiskLog(bytes: bytes))
        #expect(read == log && read.isInSync(9) && !read.isInSync(10))
        log.setInSync(9, false)
        #expect(log.inSyncCount == 2)
        var corrupt = bytes
        corrupt[0] = 0
        #expect(MirrorDiskLog(bytes: corrupt) == nil)
    }
}
