import FoundationEssentials
import Testing
import ThinTools
#if canImport(Glibc)
import Glibc
#endif
@testable import ThinCore

@Suite("export extents, progress, holders")
struct TransferTests {
    typealias Run = ExportExtents.Run

    @Test("an export refuses directories every user can rearrange: world-writable without the sticky bit")
    func replaceableDirectories() throws {
        #expect(ReplaceableDirectories.lets(anyoneReplaceEntries: 0o40777))
        #expect(!ReplaceableDirectories.lets(anyoneReplaceEntries: 0o41777))   // /tmp: others cannot rename root's file
        #expect(!ReplaceableDirectories.lets(anyoneReplaceEntries: 0o40755))
        #expect(!ReplaceableDirectories.lets(anyoneReplaceEntries: 0o40775))
        let base = "/tmp/thinsr-replaceable-\(getpid())"
        defer { rmdir(base + "/open/inner"); rmdir(base + "/open"); rmdir(base) }
        #expect(mkdir(base, 0o755) == 0 && mkdir(base + "/open", 0o755) == 0 && mkdir(base + "/open/inner", 0o755) == 0)
        #expect(ReplaceableDirectories.first(above: base + "/open/inner/image.qcow2") == nil)
        #expect(chmod(base + "/open", 0o777) == 0)
        // A parent every user can rearrange lets the image's own directory be swapped too.
        #expect(ReplaceableDirectories.first(above: base + "/open/inner/image.qcow2") == base + "/open")
        #expect(chmod(base + "/open", 0o1777) == 0)
        #expect(ReplaceableDirectories.first(above: base + "/open/inner/image.qcow2") == nil)
    }

    @Test("a whole export reads the mapped pool blocks, clipped to the size; the rest is zero")
    func wholeExport() {
        // 64 KiB blocks: 0..<2 and 5..<6 mapped, and block 9 past a 9.5-block volume's end is cut there.
        let extents = ExportExtents.whole(size: 9 * 65536 + 32768, mapped: [5..<6, 0..<2, 9..<10], blockBytes: 65536)
        #expect(extents.runs == [Run(offset: 0, length: 131072, kind: .data), Run(offset: 131072, length: 196608, kind: .zero),
                                 Run(offset: 327680, length: 65536, kind: .data), Run(offset: 393216, length: 196608, kind: .zero),
                                 Run(offset: 589824, length: 32768, kind: .data)])
        #expect(extents.dataBytes == 131072 + 65536 + 32768)
        #expect(extents.extentList.split(separator: "\n").first == "0 131072")
        #expect(extents.extentList.split(separator: "\n")[1] == "131072 196608 hole,zero")
        #expect(ExportExtents.whole(size: 4096, mapped: [], blockBytes: 65536).runs == [Run(offset: 0, length: 4096, kind: .zero)])
    }

    @Test("an incremental export: changed and mapped is data, changed and unmapped is zero, the rest unchanged")
    func incrementalExport() {
        let whole = ExportExtents.whole(size: 1 << 20, mapped: [0..<4], blockBytes: 65536)   // data 0..<256 KiB
        // Changed: block 1 (rewritten), blocks 6..<8 (discarded since: unmapped now).
        let changed = [ChangedBlocks.Extent(offset: 65536, length: 65536), ChangedBlocks.Extent(offset: 6 * 65536, length: 131072)]
        let extents = ExportExtents.incremental(size: 1 << 20, changed: changed, whole: whole)
        #expect(extents.runs == [Run(offset: 0, length: 65536, kind: .unchanged), Run(offset: 65536, length: 65536, kind: .data),
                                 Run(offset: 131072, length: 262144, kind: .unchanged),
                                 Run(offset: 393216, length: 131072, kind: .zero),
                                 Run(offset: 524288, length: 524288, kind: .unchanged)])
        #expect(extents.dataBytes == 65536)
        #expect(extents.extentList.contains("0 65536 hole\n"))
        // Every byte is covered once, in order.
        var position: UInt64 = 0
        for run in extents.runs {
            #expect(run.offset == position)
            position += run.length
        }
        #expect(position == 1 << 20)
    }

    @Test("engine progress: qemu-img's (NN.NN/100%) and nbdcopy's N/100, other text kept")
    func engineProgress() {
        let qemu = EngineProgress.parse("    (0.00/100%)\r    (12.50/100%)\r")
        #expect(qemu.fraction == 0.125 && qemu.rest.isEmpty)
        let copy = EngineProgress.parse("25/100\n63/100\nnbdcopy: error: broken\n")
        #expect(copy.fraction == 0.63)
        #expect(copy.rest == "nbdcopy: error: broken")
        #expect(EngineProgress.parse("qemu-img: Could not open 'x'\n").fraction == nil)
    }

    @Test("holder names: xapi's domains pass; paths, dot files and process names do not")
    func holderNames() throws {
        for good in ["5", "u0_2f1e", "backup:1", "a-b.c"] { try VolumeHolders.validate(good) }
        for bad in ["", "a/b", "..", ".x", "process.12", "sp ace", String(repeating: "x", count: 129)] {
            #expect(throws: ThinError.self) { try VolumeHolders.validate(bad) }
        }
    }

    @Test("process holders count while their process lives, and stop counting when it is gone")
    func processHolders() throws {
        let root = "/tmp/thinsr-holders-\(getpid())"
        defer { _ = try? FileManagerFree.removeTree(root) }
        let holders = VolumeHolders(names: SRNames(uuid: UUID()), volume: UUID(), runDirectory: root)
        try holders.add("5")
        try holders.add(ProcessClaim.holderName())
        try holders.add(ProcessClaim.holderName(999_999_999))   // no such process
        #expect(holders.live() == ["5", ProcessClaim.holderName()].sorted())
        holders.remove("5")
        holders.remove(ProcessClaim.holderName())
        #expect(holders.live().isEmpty)
    }

    @Test("the import owner names this boot, pid and start time")
    func importOwner() {
        let fields = ProcessClaim.current.ownerMark.split(separator: " ")
        #expect(fields.count == 3)
        #expect(fields[1] == "\(getpid())")
        #expect(String(fields[0]) == System.bootID() && !fields[0].isEmpty)
    }
}

/// Removes a scratch tree the tests made (no Foundation FileManager in the core's tests).
enum FileManagerFree {
    static func removeTree(_ path: String) throws {
        for entry in System.directoryEntries(path) {
            let child = "\(path)/\(entry)"
            if !System.directoryEntries(child).isEmpty || isDirectory(child) { try removeTree(child) } else { unlink(child) }
        }
        rmdir(path)
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }
}

@Suite("SR statistics for rrdd")
struct MetricsTests {
    @Test("CRC-32 is zlib's (the standard check value)")
    func crc() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([]) == 0)
    }

    @Test("protocol v2: header, checksums over timestamp+values and metadata, big-endian int64s, string metadata")
    func encoding() throws {
        let sources = [SRMetrics.Datasource(name: "a", value: 258, description: "x\"y", units: "B"),
                       SRMetrics.Datasource(name: "b", value: -1, description: "", units: "")]
        let bytes = SRMetrics.encode(sources, owner: "u", time: 1.5)
        #expect(Array(bytes[0..<11]) == Array("DATASOURCES".utf8))
        func u32(_ at: Int) -> UInt32 { bytes[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) } }
        func u64(_ at: Int) -> UInt64 { bytes[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        #expect(u32(19) == 2)
        #expect(u64(23) == 1)   // int64 seconds, as rrdd reads it
        #expect(u64(31) == 258 && u64(39) == UInt64.max)
        #expect(u32(11) == CRC32.checksum(Array(bytes[23..<47])))
        let length = Int(u32(47))
        let metadata = Array(bytes[51..<51 + length])
        #expect(bytes.count == 51 + length)
        #expect(u32(15) == CRC32.checksum(metadata))
        let text = String(decoding: metadata, as: UTF8.self)
        #expect(text.hasPrefix("{\"datasources\":{\"a\":{\"description\":\"x\\\"y\",\"owner\":\"sr u\""))
        #expect(text.contains("\"value_type\":\"int64\"") && text.contains("\"type\":\"gauge\""))
    }
}
