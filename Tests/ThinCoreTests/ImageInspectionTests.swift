import FoundationEssentials
import Testing
@testable import ThinTools
#if canImport(Glibc)
import Glibc
#endif
@testable import ThinCore

/// Image headers built byte by byte, as a hostile guest or image author
/// would write them, and what the inspector makes of them.
@Suite("image inspection: only self-contained images")
struct ImageInspectionTests {
    // MARK: builders

    static func bigEndian(_ value: UInt64, _ width: Int) -> [UInt8] { (0..<width).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
    static func littleEndian(_ value: UInt64, _ width: Int) -> [UInt8] { (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    static func put(_ bytes: [UInt8], at offset: Int, in image: inout [UInt8]) {
        if image.count < offset + bytes.count { image += [UInt8](repeating: 0, count: offset + bytes.count - image.count) }
        image.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }

    /// A qcow2 v3 header of `size` bytes, with optional backing name,
    /// incompatible features and header extensions (type, data).
    static func qcow2(size: UInt64 = 1 << 20, backing: String? = nil, incompatible: UInt64 = 0,
                      extensions: [(UInt32, [UInt8])] = []) -> [UInt8] {
        var image = [UInt8](repeating: 0, count: 4096)
        put([0x51, 0x46, 0x49, 0xfb] + bigEndian(3, 4), at: 0, in: &image)
        put(bigEndian(16, 4), at: 20, in: &image)          // cluster bits
        put(bigEndian(size, 8), at: 24, in: &image)
        put(bigEndian(incompatible, 8), at: 72, in: &image)
        put(bigEndian(104, 4), at: 100, in: &image)        // header length
        var offset = 104
        for (type, data) in extensions {
            put(bigEndian(UInt64(type), 4) + bigEndian(UInt64(data.count), 4) + data, at: offset, in: &image)
            offset += 8 + (data.count + 7) / 8 * 8
        }
        put([0, 0, 0, 0, 0, 0, 0, 0], at: offset, in: &image)
        if let backing {
            put(bigEndian(2048, 8) + bigEndian(UInt64(backing.utf8.count), 4), at: 8, in: &image)
            put(Array(backing.utf8), at: 2048, in: &image)
        }
        return image
    }

    /// A hosted sparse VMDK whose embedded descriptor is `descriptor`.
    static func vmdk(capacity: UInt64 = 2048, descriptor: String) -> [UInt8] {
        var image = [UInt8](repeating: 0, count: 16384)
        put(Array("KDMV".utf8) + littleEndian(1, 4) + littleEndian(3, 4), at: 0, in: &image)
        put(littleEndian(capacity, 8) + littleEndian(128, 8) + littleEndian(1, 8) + littleEndian(20, 8), at: 12, in: &image)
        put(Array(descriptor.utf8), at: 512, in: &image)
        return image
    }

    static func header(_ bytes: [UInt8]) -> ImageHeader {
        ImageHeaderParser(size: UInt64(bytes.count)) { offset, count in
            guard offset < UInt64(bytes.count) else { return [] }
            return Array(bytes[Int(offset)..<min(bytes.count, Int(offset) + count)])
        }.parse()
    }

    /// Writes `bytes` to a new file in a fresh directory; returns its path.
    static func file(_ name: String, _ bytes: [UInt8], in directory: String) -> String {
        let path = "\(directory)/\(name)"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
        return path
    }

    static func scratch() -> String {
        var template = Array("/tmp/thinsr-inspect-XXXXXX".utf8CString)
        return String(cString: mkdtemp(&template)!)
    }

    static func refusal(_ body: () throws(ImageRefusal) -> InspectedImage) -> String? {
        do { _ = try body(); return nil } catch { return error.message }
    }

    // MARK: qcow2

    @Test("a qcow2 naming an external data file (a host device) reads outside itself")
    func qcowDataFile() {
        let parsed = Self.header(Self.qcow2(incompatible: 4, extensions: [(0x4441_5441, Array("/dev/sda".utf8))]))
        #expect(parsed.kind == .qcow2)
        #expect(parsed.externalReferences == ["external data file /dev/sda"])
        // The feature bit alone (the name given at open time) is refused too.
        #expect(Self.header(Self.qcow2(incompatible: 4)).externalReferences == ["an external data file"])
        // An unrelated extension (the backing format) is not a reference.
        #expect(Self.header(Self.qcow2(extensions: [(0xe279_2aca, Array("qcow2".utf8))])).externalReferences.isEmpty)
    }

    @Test("a qcow2's backing name and size come from its header")
    func qcowBacking() {
        let parsed = Self.header(Self.qcow2(size: 5 << 30, backing: "base.qcow2"))
        #expect(parsed.backing == "base.qcow2")
        #expect(parsed.virtualSize == 5 << 30)
        #expect(Self.header(Self.qcow2()).backing == nil)
        var old = Self.qcow2()
        Self.put(Self.bigEndian(1, 4), at: 4, in: &old)
        #expect(Self.header(old).kind == .other("qcow version 1"))
    }

    // MARK: VMDK

    @Test("a VMDK text descriptor (the guest-written monolithicFlat attack) names its extents")
    func vmdkDescriptor() {
        let text = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 8192 FLAT \"/dev/sdb\" 0\n"
        let parsed = Self.header(Array(text.utf8) + [UInt8](repeating: 0, count: 512))
        #expect(parsed.kind == .vmdkDescriptor)
        #expect(parsed.externalReferences == ["extent FLAT \"/dev/sdb\" 0"])
        #expect(parsed.format == nil)
    }

    @Test("a sparse VMDK is self-contained only as monolithicSparse or streamOptimized with its own extent")
    func vmdkSparse() {
        let good = "# Disk DescriptorFile\nversion=1\ncreateType=\"streamOptimized\"\nRW 2048 SPARSE \"disk.vmdk\"\n"
        let parsed = Self.header(Self.vmdk(descriptor: good))
        #expect(parsed.kind == .vmdk && parsed.externalReferences.isEmpty && parsed.virtualSize == 2048 * 512)
        let flat = "createType=\"monolithicFlat\"\nRW 2048 FLAT \"/dev/sdb\" 0\n"
        #expect(Self.header(Self.vmdk(descriptor: flat)).externalReferences.count == 2)
        // No capacity: qemu reads the embedded descriptor's extents instead of the file.
        #expect(!Self.header(Self.vmdk(capacity: 0, descriptor: good)).externalReferences.isEmpty)
        let child = good + "parentFileNameHint=\"base.vmdk\"\n"
        #expect(Self.header(Self.vmdk(descriptor: child)).backing == "base.vmdk")
        // qemu finds the parent's name anywhere (a substring search), a comment included.
        let hidden = good + "# parentFileNameHint=\"/dev/sdb\"\n"
        #expect(Self.header(Self.vmdk(descriptor: hidden)).backing == "/dev/sdb")
        // A capacity past any disk is refused, not a crash.
        #expect(!Self.header(Self.vmdk(capacity: 1 << 60, descriptor: good)).externalReferences.isEmpty)
    }

    @Test("a fixed VHD (its footer only at the end) is read as vpc only when declared")
    func fixedVHD() throws {
        let directory = Self.scratch()
        var image = [UInt8](repeating: 0x11, count: 4096)
        Self.put(Array("conectix".utf8), at: 4096 - 512, in: &image)
        Self.put(Self.bigEndian(2, 4), at: 4096 - 512 + 60, in: &image)
        let path = Self.file("fixed.vhd", image, in: directory)
        #expect(try ImageInspector.inspect(path, declared: nil).format == .raw)
        #expect(try ImageInspector.inspect(path, declared: .vpc).qemuSource == ["-f", "vpc", path])
    }

    // MARK: VHD and others

    @Test("a differencing VHD reads its parent; a dynamic one does not")
    func vhd() {
        var image = [UInt8](repeating: 0, count: 1024)
        Self.put(Array("conectix".utf8), at: 0, in: &image)
        Self.put(Self.bigEndian(1 << 20, 8), at: 48, in: &image)
        Self.put(Self.bigEndian(3, 4), at: 60, in: &image)
        #expect(Self.header(image).kind == .vpc && Self.header(image).externalReferences.isEmpty)
        #expect(Self.header(image).virtualSize == 1 << 20)
        Self.put(Self.bigEndian(4, 4), at: 60, in: &image)
        #expect(Self.header(image).externalReferences == ["a parent disk (a differencing VHD)"])
    }

    @Test("formats qemu would probe that thinsr does not read are named; anything else is raw")
    func otherFormats() {
        #expect(Self.header(Array("QED\u{0}".utf8) + [UInt8](repeating: 0, count: 60)).kind == .other("qed"))
        var vdi = [UInt8](repeating: 0, count: 512)
        Self.put(Self.littleEndian(0xbeda_107f, 4), at: 64, in: &vdi)
        #expect(Self.header(vdi).kind == .other("vdi"))
        #expect(Self.header(Array("vhdxfile".utf8) + [UInt8](repeating: 0, count: 8)).kind == .vhdx)
        let plain = Self.header([UInt8](repeating: 0x41, count: 4096))
        #expect(plain.kind == .raw && plain.virtualSize == 4096)
    }

    // MARK: the policy

    @Test("inspect refuses what reads outside the image, unless the caller asks for raw bytes")
    func inspectPolicy() {
        let directory = Self.scratch()
        let evil = Self.file("evil.qcow2", Self.qcow2(incompatible: 4, extensions: [(0x4441_5441, Array("/dev/sda".utf8))]), in: directory)
        let message = Self.refusal { () throws(ImageRefusal) in try ImageInspector.inspect(evil, declared: nil) }
        #expect(message?.contains("external data file /dev/sda") == true)
        #expect(Self.refusal { () throws(ImageRefusal) in try ImageInspector.inspect(evil, declared: .qcow2) } != nil)
        let raw = try? ImageInspector.inspect(evil, declared: .raw)
        #expect(raw?.qemuSource == ["-f", "raw", evil])
        // A single qcow2 is opened with its chain ended: qemu follows no name from its header.
        let single = Self.file("single.qcow2", Self.qcow2(), in: directory)
        #expect((try? ImageInspector.inspect(single, declared: nil))?.qemuSource
                == [#"json:{"driver":"qcow2","file":{"driver":"file","filename":"\#(single)"},"backing":null}"#])
        // A relative name never reads as an option or a protocol.
        #expect(InspectedImage(layers: [.init(path: "-x:y", format: .raw)]).qemuSource == ["-f", "raw", "./-x:y"])
        let text = Self.file("disk.raw", Array("# Disk DescriptorFile\nRW 8 FLAT \"/dev/sdb\" 0\n".utf8), in: directory)
        #expect(Self.refusal { () throws(ImageRefusal) in try ImageInspector.inspect(text, declared: nil) }?
            .contains("VMDK descriptor") == true)
        #expect(Self.refusal { () throws(ImageRefusal) in try ImageInspector.inspect(text, declared: .vmdk) } != nil)
        // A declared format the header contradicts is refused before qemu opens anything.
        let plain = Self.file("plain.raw", [UInt8](repeating: 0, count: 4096), in: directory)
        #expect(Self.refusal { () throws(ImageRefusal) in try ImageInspector.inspect(plain, declared: .qcow2) }?
            .contains("not a qcow2 image") == true)
    }

    @Test("a backing chain is read only when the caller names each image, opened with every format named")
    func namedChain() throws {
        let directory = Self.scratch()
        let bottom = Self.file("base.raw", [UInt8](repeating: 0x41, count: 1 << 20), in: directory)
        let middle = Self.file("mid.qcow2", Self.qcow2(backing: "base.raw"), in: directory)
        let top = Self.file("top.qcow2", Self.qcow2(backing: middle), in: directory)
        #expect(Self.refusal { () throws(ImageRefusal) in try ImageInspector.inspect(top, declared: nil) }?
            .contains("names a backing image") == true)
        // Only the first level named: the second level is refused too (the check looks at every level).
        #expect(Self.refusal { () throws(ImageRefusal) in try ImageInspector.inspect(top, declared: nil, backing: [middle]) }?
            .contains("base.raw") == true)
        let chain = try ImageInspector.inspect(top, declared: .qcow2, backing: [middle, bottom])
        #expect(chain.layers.map(\.format) == [.qcow2, .qcow2, .raw])
        let source = try #require(chain.qemuSource.first)
        #expect(source == #"json:{"driver":"qcow2","file":{"driver":"file","filename":"\#(top)"},"backing":"#
                + #"{"driver":"qcow2","file":{"driver":"file","filename":"\#(middle)"},"backing":"#
                + #"{"driver":"raw","file":{"driver":"file","filename":"\#(bottom)"}}}}"#)
        // Naming a file the header does not name, or one too many, is refused.
        #expect(Self.refusal { () throws(ImageRefusal) in try ImageInspector.inspect(top, declared: nil, backing: [bottom]) } != nil)
        #expect(Self.refusal { () throws(ImageRefusal) in
            try ImageInspector.inspect(top, declared: nil, backing: [middle, bottom, bottom]) }?.contains("not in") == true)
    }

    @Test("a chain naming a device is refused whether named or followed")
    func deviceInChain() {
        let directory = Self.scratch()
        let top = Self.file("top.qcow2", Self.qcow2(backing: "/dev/null"), in: directory)
        #expect(Self.refusal { () throws(ImageRefusal) in try ImageInspector.inspect(top, declared: nil, backing: ["/dev/null"]) }?
            .contains("not a regular file") == true)
        do {
            _ = try ImageInspector.followChain(top, what: "the base")
            Issue.record("a chain ending at a device was followed")
        } catch {
            #expect(error.message.contains("/dev/null"))
        }
        let base = Self.file("base.qcow2", Self.qcow2(size: 7 << 20), in: directory)
        let increment = Self.file("incr.qcow2", Self.qcow2(size: 7 << 20, backing: "base.qcow2"), in: directory)
        let followed = try? ImageInspector.followChain(increment, what: "the base")
        #expect(followed?.layers.map(\.path) == [increment, base])
        #expect(followed?.virtualSize == 7 << 20)
    }

    @Test("a path with quotes and control characters stays one JSON string")
    func jsonQuoting() throws {
        let image = InspectedImage(layers: [.init(path: "/x/a\"b\\c\nd", format: .qcow2), .init(path: "/x/base", format: .raw)])
        let source = try #require(image.qemuSource.first)
        #expect(source.contains(#""filename":"/x/a\"b\\c\u000ad""#))
    }

    @Test("a temporary file is made exclusively under a new unpredictable name, readable by its owner only")
    func exclusiveFile() throws {
        let directory = Self.scratch()
        let first = try ExclusiveFile.create(besides: "\(directory)/out.qcow2", tag: "thinvdi-export")
        let second = try ExclusiveFile.create(besides: "\(directory)/out.qcow2", tag: "thinvdi-export")
        #expect(first != second)
        #expect(first.hasPrefix("\(directory)/.out.qcow2.thinvdi-export-"))
        var info = stat()
        #expect(stat(first, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(!first.hasSuffix("-\(getpid())"))
    }
}

/// Programs are named once, found on PATH or where a host keeps them.
@Suite("programs")
struct ProgramTests {
    @Test("a program off PATH is found in its known directory (qemu-dp's on XCP-ng); a missing one names its package")
    func lookup() async throws {
        let directory = ImageInspectionTests.scratch()
        let tool = "\(directory)/thinsr-fake-tool"
        _ = ImageInspectionTests.file("thinsr-fake-tool", Array("#!/bin/sh\necho found\n".utf8), in: directory)
        chmod(tool, 0o755)
        let known = Program("thinsr-fake-tool", package: "fake-package", alsoIn: [directory])
        #expect(known.path == tool)
        #expect(try await ExternalCommand.check(known, []) == "found\n")
        let missing = Program("thinsr-no-such-tool", package: "no-such-package")
        #expect(missing.path == nil)
        do {
            _ = try await ExternalCommand.run(missing, ["x"])
            Issue.record("a missing program ran")
        } catch {
            #expect(error.standardError == "thinsr-no-such-tool not found; install no-such-package")
        }
        #expect(Program.qemuImage.alsoIn.contains("/usr/lib64/qemu-dp/bin"))
        #expect(Program.at("/bin/sh").path == "/bin/sh" && Program.at("/no/such/xe").path == nil)
    }
}
