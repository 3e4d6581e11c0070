import Testing
import ThinDeviceMapper

@Suite("device names and their nodes")
struct DmNameTests {
    @Test("the kernel's name rules: 1 to 127 bytes, no slash, not a dot entry")
    func validation() {
        #expect(DmName(validating: "thinsr_0a1b_pool")?.rawValue == "thinsr_0a1b_pool")
        #expect(DmName(validating: String(repeating: "x", count: 127))?.rawValue.utf8.count == 127)
        #expect(DmName(validating: String(repeating: "x", count: 128)) == nil)
        // 64 two-byte characters: 128 bytes, too long although 64 characters.
        #expect(DmName(validating: String(repeating: "é", count: 64)) == nil)
        for bad in ["", ".", "..", "a/b", "/x", "a\u{0}b"] { #expect(DmName(validating: bad) == nil, "\(bad)") }
    }

    @Test("a name's node, and the control node")
    func paths() {
        #expect(DmName("thinsr_ab_v01").path == "/dev/mapper/thinsr_ab_v01")
        #expect(DmName.controlPath == "/dev/mapper/control")
        #expect(DmName("a") < DmName("b"))
    }

    @Test("uuids: 1 to 128 bytes, no NUL")
    func uuids() {
        let uuid = "THINSR-0b6c6f0e-9f57-4a34-8d8b-6d2f3c4c1a10-pool"
        #expect(DmUuid(validating: uuid)?.rawValue == uuid && DmUuid(uuid).description == uuid)
        #expect(DmUuid(validating: String(repeating: "u", count: 128)) != nil)
        #expect(DmUuid(validating: String(repeating: "u", count: 129)) == nil)
        #expect(DmUuid(validating: "") == nil && DmUuid(validating: "a\u{0}b") == nil)
    }

    @Test("LVM's device name doubles each dash inside the VG and LV names")
    func lvmNames() {
        #expect(DmName(lvmGroup: "my-vg", volume: "lv-1").rawValue == "my--vg-lv--1")
        #expect(DmName(lvmGroup: "vg", volume: "thinsr_ab_meta").path == "/dev/mapper/vg-thinsr_ab_meta")
        #expect(DmName(lvmGroup: "a--b", volume: "-").rawValue == "a----b---")
    }
}

@Suite("typed target tables")
struct TargetTableTests {
    @Test("target types carry the kernel's names; an unknown type read back is kept as is")
    func targetTypes() {
        #expect([TargetType.linear, .error, .thin, .thinPool, .clone].map(\.rawValue)
                == ["linear", "error", "thin", "thin-pool", "clone"])
        #expect(TargetType(rawValue: "thin-pool") == .thinPool)
        #expect(TargetType(rawValue: "striped") != .linear && "\(TargetType(rawValue: "striped"))" == "striped")
    }

    @Test("linear: `<device> <offset>`, parsed back as the kernel shows it")
    func linear() throws {
        let line = LinearTable(device: "/dev/mapper/vg-lv").line(lengthSectors: 4096)
        #expect(line == TableLine(lengthSectors: 4096, targetType: .linear, parameters: "/dev/mapper/vg-lv 0"))
        let parsed = try #require(LinearTable(parameters: "253:4 2048"))
        #expect(parsed.device == "253:4" && parsed.offsetSectors == 2048)
        #expect(LinearTable(parameters: "253:4") == nil && LinearTable(parameters: "253:4 x") == nil)
    }

    @Test("error: no parameters")
    func error() {
        let line = ErrorTable().line(lengthSectors: 8)
        #expect(line.targetType.rawValue == "error" && line.parameters.isEmpty && line.lengthSectors == 8)
        #expect(line.startSector == 0)
    }

    @Test("thin: `<pool> <id> [<external origin>]`")
    func thin() throws {
        let line = ThinTable(poolDevice: "/dev/mapper/p", deviceID: 7, externalOrigin: "/dev/mapper/o").line(lengthSectors: 64)
        #expect(line.targetType == .thin && line.parameters == "/dev/mapper/p 7 /dev/mapper/o")
        let parsed = try #require(ThinTable(parameters: "253:2 9"))
        #expect(parsed.deviceID == 9 && parsed.externalOrigin == nil)
    }

    @Test("clone: the table a hydration loads, word for word")
    func cloneHydrationTable() throws {
        let table = CloneTable(metadataDevice: "/dev/mapper/m", destinationDevice: "/dev/mapper/d",
                               sourceDevice: "/dev/mapper/s", regionSectors: 128,
                               features: [.noHydration, .noDiscardPassdown], hydrationThreshold: 1)
        let line = table.line(lengthSectors: 2048)
        #expect(line.targetType.rawValue == "clone" && line.lengthSectors == 2048)
        #expect(line.parameters == "/dev/mapper/m /dev/mapper/d /dev/mapper/s 128 2 no_hydration no_discard_passdown "
                + "2 hydration_threshold 1")
        #expect(CloneTable(parameters: line.parameters) == table)
    }

    @Test("clone: optional sections are written only when something follows", arguments: [
        (CloneTable(metadataDevice: "m", destinationDevice: "d", sourceDevice: "s", regionSectors: 8), "m d s 8"),
        (CloneTable(metadataDevice: "m", destinationDevice: "d", sourceDevice: "s", regionSectors: 8,
                    hydrationThreshold: 5), "m d s 8 0 2 hydration_threshold 5"),
        (CloneTable(metadataDevice: "m", destinationDevice: "d", sourceDevice: "s", regionSectors: 8,
                    features: [.noDiscardPassdown]), "m d s 8 1 no_discard_passdown"),
    ])
    func cloneOptionalSections(table: CloneTable, parameters: String) {
        #expect(table.parameters == parameters)
        #expect(CloneTable(parameters: parameters) == table)
    }

    @Test("clone: malformed parameters", arguments: ["m d s", "m d s x", "m d s 8 2 no_hydration",
                                                      "m d s 8 1 frob", "m d s 8 0 2 frob 1", "m d s 8 0 1 x",
                                                      "m d s 8 0 2 hydration_threshold -1", "m d s 8 0 0 extra"])
    func cloneMalformed(parameters: String) { #expect(CloneTable(parameters: parameters) == nil) }
}
