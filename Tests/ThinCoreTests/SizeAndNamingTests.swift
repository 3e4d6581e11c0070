import FoundationEssentials
import Testing
@testable import ThinCore

@Suite("sizes")
struct SizeTests {
    static let acceptedForms: [(String, UInt64)] = [
        ("0", 0), ("512", 512), ("1K", 1024), ("1k", 1024), ("1KiB", 1024), ("2M", 2 << 20),
        ("3G", 3 << 30), ("3GiB", 3 << 30), ("1T", 1 << 40), ("1TiB", 1 << 40), ("1P", 1 << 50), ("7B", 7),
    ]

    @Test("accepted forms", arguments: acceptedForms)
    func accepted(text: String, bytes: UInt64) throws {
        #expect(try ByteSize.parse(text) == bytes)
    }

    @Test("refused forms name the problem", arguments: [
        ("", "not a number"), ("G", "not a number"), ("-5G", "not a number"), ("1.5G", "unknown suffix"),
        ("10Q", "unknown suffix"), ("1 G", "unknown suffix"), ("99999999999T", "too large"),
        ("18446744073709551616", "too large"), ("16E", "unknown suffix"), ("0x10", "unknown suffix"),
    ])
    func refused(text: String, reason: String) {
        #expect {
            try ByteSize.parse(text)
        } throws: { error in
            guard let error = error as? ThinError else { return false }
            return error.code == .invalidArgument && error.message.contains(reason)
        }
    }

    @Test func formatting() {
        #expect(ByteSize.format(0) == "0B")
        #expect(ByteSize.format(1024) == "1K")
        #expect(ByteSize.format(1536 << 20) == "1.5G")
        #expect(ByteSize.format(64 << 20) == "64M")
    }

    @Test func rounding() {
        #expect(ByteSize.roundUp(1, to: 512) == 512)
        #expect(ByteSize.roundUp(1024, to: 512) == 1024)
        #expect(ByteSize.roundUp(0, to: 512) == 0)
    }
}

@Suite("volume keys")
struct KeyTests {
    @Test("derived from the name label", arguments: [
        ("web01-root", "web01-root"), ("disk 1", "disk1"), ("../../etc/passwd", "etcpasswd"),
        ("$(rm -rf /)", "rm-rf"), ("a;b`c`", "abc"), ("line\nbreak", "linebreak"), ("ünïcødé", "ncd"),
        ("...", "volume"), ("", "volume"), ("-rf", "rf"), ("日本語", "volume"), ("x.y_z+1", "x.y_z+1"),
    ])
    func derived(name: String, key: String) {
        #expect(Naming.deriveKey(fromName: name, existing: []) == key)
    }

    @Test("unique with ~N suffixes")
    func unique() {
        #expect(Naming.deriveKey(fromName: "disk", existing: ["disk"]) == "disk~1")
        #expect(Naming.deriveKey(fromName: "disk", existing: ["disk", "disk~1"]) == "disk~2")
    }

    @Test("bounded, including the suffix")
    func bounded() {
        let long = String(repeating: "a", count: 4096)
        let first = Naming.deriveKey(fromName: long, existing: [])
        #expect(first.count == Naming.maximumKeyLength)
        let second = Naming.deriveKey(fromName: long, existing: [first])
        #expect(second.count == Naming.maximumKeyLength && second.hasSuffix("~1") && second != first)
    }

    @Test("a key never looks like a uuid, so key and uuid lookups cannot collide")
    func notUUID() {
        let uuid = "6f1c1a52-3b1e-4c8e-9d0f-2a7b5c4d3e21"
        #expect(Naming.deriveKey(fromName: uuid, existing: []) == uuid + "~1")
    }

    @Test("every derived key is a valid key", arguments: ["a", "a b", "..x", "~", "x~1", String(repeating: "é", count: 100)])
    func valid(name: String) {
        #expect(Naming.isValidKey(Naming.deriveKey(fromName: name, existing: [])))
    }
}

@Suite("names of an SR's parts")
struct SRNamesTests {
    let names = SRNames(uuid: UUID(uuidString: "6F1C1A52-3B1E-4C8E-9D0F-2A7B5C4D3E21")!)

    @Test("dm names never contain '-' so they cannot be LVM <vg>-<lv> names")
    func dmNames() {
        #expect(names.poolDevice == "thinsr_6f1c1a523b1e4c8e9d0f2a7b5c4d3e21_pool")
        #expect(!names.poolDevice.contains("-"))
        let volume = UUID()
        #expect(!names.volumeDevice(volume).name.contains("-"))
        #expect(names.volumeDevice(volume).name.count < 128)
        #expect(names.volume(ofDevice: names.volumeDevice(volume).name) == volume)
        #expect(names.volume(ofDevice: names.poolDevice) == nil)
        #expect(names.volume(ofDevice: SRNames(uuid: UUID()).volumeDevice(volume).name) == nil)
    }

    @Test("LV names avoid LVM's reserved suffixes")
    func lvNames() {
        for role in LVRole.allCases { #expect(ThinLVMNames.isValidLV(names.lv(role)), "\(role)") }
        #expect(ThinLVMNames.isValidLV(names.swapLV))
        #expect(names.lv(.metadata) == "thinsr_6f1c1a523b1e4c8e9d0f2a7b5c4d3e21_meta")
    }

    @Test("mapper paths double dashes as LVM does")
    func mapperPaths() {
        #expect(Paths.mapperPath(group: "my-vg", volume: "lv-1") == "/dev/mapper/my--vg-lv--1")
        #expect(Paths.mapperPath(group: "vg", volume: "lv") == "/dev/mapper/vg-lv")
    }

    @Test("SR names survive the round trip through an LVM tag")
    func tagText() {
        for text in ["vm store", "ünïcødé/;$(x)", ""] {
            let encoded = TagText.encode(text)
            #expect(encoded.allSatisfy { $0.isHexDigit })
            #expect(TagText.decode(encoded) == text)
        }
        #expect(TagText.decode("zz") == nil)
        #expect(TagText.decode("abc") == nil)
    }
}
