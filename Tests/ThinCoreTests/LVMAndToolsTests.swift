import Testing
import FoundationEssentials
@testable import ThinLVM
@testable import ThinTools
@testable import ThinCore

enum ThinLVMNames {
    static func isValidLV(_ name: String) -> Bool { LVMNames.isValidLVName(name) }
}

@Suite("LVM argument validation")
struct LVMValidationTests {
    @Test("names LVM accepts", arguments: ["vg0", "my-vg", "a.b_c+d", "thinsr_abc_data"])
    func validNames(name: String) {
        #expect(LVMNames.isValidVGName(name) && LVMNames.isValidLVName(name))
    }

    @Test("hostile or reserved names are refused", arguments: [
        "", ".", "..", "-rf", "a b", "a;b", "$(x)", "a/b", "a\nb", "x_tdata", "snapshot1", "pvmove0",
        String(repeating: "a", count: 128), "é",
    ])
    func invalidNames(name: String) {
        #expect(!LVMNames.isValidLVName(name))
    }

    @Test("device paths", arguments: [("/dev/loop0", true), ("/dev/mapper/x-y", true), ("/dev/../etc/x", false),
                                      ("/tmp/x", false), ("/dev/a b", false), ("/dev/$(x)", false)])
    func devices(path: String, valid: Bool) {
        #expect(LVMNames.isValidDevicePath(path) == valid)
    }

    @Test("an argument with a space can never be made")
    func arguments() {
        #expect(throws: LVMValidationError.self) { try LVMArgument(validated: "a b") }
        #expect(throws: LVMValidationError.self) { try LVMArgument(validated: "") }
        #expect(throws: LVMValidationError.self) { try LVMArgument(validated: "x\"y") }
        #expect((try? LVMArgument(validated: "thinsr.sr=6f1c"))?.text == "thinsr.sr=6f1c")
    }

    @Test("tags")
    func tags() {
        #expect(LVMNames.isValidTag("thinsr.sr=6f1c1a52-3b1e-4c8e-9d0f-2a7b5c4d3e21"))
        #expect(!LVMNames.isValidTag("a b"))
        #expect(!LVMNames.isValidTag("-x"))
    }
}

@Suite("thin tool output")
struct ThinToolsParsingTests {
    @Test func metadataSize() {
        #expect(ThinTools.parseMetadataSize("94224384\n") == 94_224_384)
        #expect(ThinTools.parseMetadataSize("4194304.5") == 4_194_305)
        #expect(ThinTools.parseMetadataSize("lots") == nil)
    }

    @Test func thinLs() {
        let output = "1 65536 0 65536\n2 131072 65536 65536\ngarbage line\n"
        #expect(ThinTools.parseList(output) == [
            .init(deviceID: 1, mappedBytes: 65536, exclusiveBytes: 0, sharedBytes: 65536),
            .init(deviceID: 2, mappedBytes: 131_072, exclusiveBytes: 65536, sharedBytes: 65536),
        ])
    }

    @Test("thin_dump's superblock line gives the transaction id; anything else gives none")
    func transactionID() {
        let dump = "<superblock uuid=\"\" time=\"3\" transaction=\"17\" version=\"2\" data_block_size=\"128\" "
            + "nr_data_blocks=\"8192\">\n  <device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"9\">\n"
        #expect(ThinTools.parseTransactionID(dump) == 17)
        #expect(ThinTools.parseTransactionID("<device dev_id=\"1\" transaction=\"9\">") == nil)
        #expect(ThinTools.parseTransactionID("<superblock transaction=\"x\">") == nil)
    }

    @Test("thin_dump's mappings: runs and single blocks with their times, per device")
    func mappings() {
        let dump = """
            <superblock uuid="" time="2" transaction="4" version="2" data_block_size="128" nr_data_blocks="800">
              <device dev_id="1" mapped_blocks="3" transaction="0" creation_time="0" snap_time="2">
                <range_mapping origin_begin="0" data_begin="10" length="2" time="0"/>
                <single_mapping origin_block="7" data_block="3" time="2"/>
              </device>
              <device dev_id="2" mapped_blocks="2" transaction="1" creation_time="1" snap_time="1">
                <range_mapping origin_begin="0" data_begin="10" length="2" time="0"/>
              </device>
            </superblock>
            """
        #expect(ThinTools.parseMappings(dump) == ThinMappingsDump(poolTime: 2, devices: [
            ThinDeviceMappings(deviceID: 1, creationTime: 0, runs: [.init(begin: 0, length: 2, time: 0),
                                                                    .init(begin: 7, length: 1, time: 2)]),
            ThinDeviceMappings(deviceID: 2, creationTime: 1, runs: [.init(begin: 0, length: 2, time: 0)]),
        ]))
        let superblock = "<superblock uuid=\"\" time=\"2\" transaction=\"4\" data_block_size=\"128\" nr_data_blocks=\"8\">\n"
        #expect(ThinTools.parseMappings(superblock + "<single_mapping origin_block=\"7\" data_block=\"3\" time=\"2\"/>") == nil,
                "a mapping outside a device is not thin_dump's output")
        #expect(ThinTools.parseMappings(superblock + "<device dev_id=\"1\">") == nil, "a device without its creation time")
        #expect(ThinTools.parseMappings(superblock + "<device dev_id=\"1\" creation_time=\"0\">\n<something/>") == nil,
                "an element thinsr does not know is refused, not skipped")
        #expect(ThinTools.parseMappings("<device dev_id=\"1\" creation_time=\"0\">") == nil, "no superblock")
    }

    @Test("thin-provisioning-tools 1.x: runs shared by several devices come once as <def>, expanded at each <ref>")
    func sharedDefinitions() {
        let dump = """
            <superblock uuid="" time="3" transaction="5" version="2" data_block_size="128" nr_data_blocks="800">
              <def name="7">
                <range_mapping origin_begin="0" data_begin="10" length="4" time="1"/>
              </def>
              <device dev_id="1" mapped_blocks="5" transaction="0" creation_time="0" snap_time="3">
                <ref name="7"/>
                <single_mapping origin_block="9" data_block="30" time="3"/>
              </device>
              <device dev_id="2" mapped_blocks="4" transaction="1" creation_time="2" snap_time="2">
                <ref name="7"/>
              </device>
            </superblock>
            """
        let shared = ThinDeviceMappings.Run(begin: 0, length: 4, time: 1)
        #expect(ThinTools.parseMappings(dump) == ThinMappingsDump(poolTime: 3, devices: [
            ThinDeviceMappings(deviceID: 1, creationTime: 0, runs: [shared, .init(begin: 9, length: 1, time: 3)]),
            ThinDeviceMappings(deviceID: 2, creationTime: 2, runs: [shared]),
        ]))
        #expect(ThinTools.parseMappings(dump.replacing("<ref name=\"7\"/>", with: "<ref name=\"8\"/>")) == nil,
                "a reference to nothing")
    }
}

@Suite("LVM JSON reports")
struct LVMReportTests {
    @Test("warnings printed around or inside the report are left out")
    func warnings() {
        let printed = ["  WARNING: Not using device /dev/loop1 for PV x.", "  {", "      \"report\": [",
                       "  WARNING: something", "      ]", "  }", "  WARNING: after"]
        #expect(LVM.reportText(printed) == "  {\n      \"report\": [\n      ]\n  }")
        #expect(LVM.reportText(["no report"]) == "")
    }

    @Test("a message printed among the report's lines is left out (seen after pvremove)")
    func interleavedMessage() throws {
        let printed = ["Labels on physical volume \"/dev/loop0\" successfully wiped.", "{", "    \"report\": [",
                       "Clear pvid and info for no lvm header /dev/loop0", "        {", "            \"pv\": [",
                       "                {\"pv_name\":\"/dev/loop1\", \"vg_name\":\"\"}", "            ]", "        }",
                       "    ]", "}"]
        let text = LVM.reportText(printed)
        #expect(!text.contains("Clear pvid"))
        #expect(!text.contains("wiped"))
        #expect(text.split(separator: "\n").count == 9)
        struct Report: Decodable { var report: [[String: [[String: String]]]] }
        let decoded = try JSONDecoder().decode(Report.self, from: Data(text.utf8))
        #expect(decoded.report.first?["pv"]?.first?["pv_name"] == "/dev/loop1")
    }

    @Test(arguments: ["\"Volume group\" is [", "Found [", "\"a b\": ["])
    func messagesAreNotReportLines(line: String) { #expect(!LVM.isReportLine(line)) }
}
