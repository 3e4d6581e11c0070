import FoundationEssentials

/// What an image's own header says it is and what else it would make a
/// reader open, read by thinsr itself: a qemu probe picks a format from
/// bytes a guest may have written, and opening an image follows the
/// references in its header (CVE-2024-32498 is that attack on OpenStack).
public struct ImageHeader: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case raw, qcow2, vpc, vmdk, vhdx
        /// A VMDK text descriptor: its data lives in the extents it names.
        case vmdkDescriptor
        /// A format thinsr does not read, which qemu would still probe.
        case other(String)
    }

    public var kind: Kind
    /// The backing (parent) image the header names, as written.
    public var backing: String?
    /// Everything else the header would make a reader open or read: an
    /// external data file, extents, a parent it cannot follow. An image
    /// with any of these is not self-contained.
    public var externalReferences: [String] = []
    /// The virtual disk's size where the header says it (not for vhdx).
    public var virtualSize: UInt64?
    /// A raw-looking image that ends in a VHD footer: a fixed VHD.
    public var fixedVHDFooter = false

    public var format: ImageFormat? {
        switch kind {
        case .raw: .raw
        case .qcow2: .qcow2
        case .vpc: .vpc
        case .vmdk: .vmdk
        case .vhdx: .vhdx
        case .vmdkDescriptor, .other: nil
        }
    }

    /// What a person calls the format, for messages.
    public var formatName: String {
        switch kind {
        case .vmdkDescriptor: "VMDK descriptor"
        case .other(let name): name
        default: format?.rawValue ?? "raw"
        }
    }
}

/// Parses image headers from bytes only: `read(offset, count)` returns what
/// lies there (fewer bytes past the end), `size` is the image's length.
public struct ImageHeaderParser {
    let read: (UInt64, Int) -> [UInt8]
    let size: UInt64

    public init(size: UInt64, read: @escaping (UInt64, Int) -> [UInt8]) {
        self.size = size
        self.read = read
    }

    public func parse() -> ImageHeader {
        let head = read(0, 4096)
        if head.starts(with: [0x51, 0x46, 0x49, 0xfb]) { return qcow(head) }
        if head.starts(with: Array("KDMV".utf8)) { return vmdkSparse(head) }
        if head.starts(with: Array("COWD".utf8)) { return ImageHeader(kind: .other("VMDK version 3")) }
        if head.starts(with: Array("conectix".utf8)) { return vpc(head) }
        if head.starts(with: Array("vhdxfile".utf8)) { return ImageHeader(kind: .vhdx) }
        if let other = Self.otherFormat(head, tail: size >= 512 ? read(size - 512, 512) : []) {
            return ImageHeader(kind: .other(other))
        }
        if size >= 512, read(size - 512, 512).starts(with: Array("conectix".utf8)) {
            // A fixed VHD has its footer only at the end (qemu probes it as raw): vpc only when declared.
            var header = ImageHeader(kind: .raw, virtualSize: size)
            header.fixedVHDFooter = true
            return header
        }
        if let extents = Self.descriptorExtents(head) {
            return ImageHeader(kind: .vmdkDescriptor, externalReferences: extents)
        }
        return ImageHeader(kind: .raw, virtualSize: size)
    }

    // MARK: qcow2

    private func qcow(_ head: [UInt8]) -> ImageHeader {
        let version = head.bigEndian32(at: 4)
        guard version == 2 || version == 3 else { return ImageHeader(kind: .other("qcow version \(version)")) }
        var header = ImageHeader(kind: .qcow2, virtualSize: head.bigEndian64(at: 24))
        let backingOffset = head.bigEndian64(at: 8), backingLength = Int(head.bigEndian32(at: 16))
        if backingOffset != 0 {
            let name = read(backingOffset, min(backingLength, 1023))
            header.backing = String(decoding: name, as: UTF8.self)
        }
        header.externalReferences = qcowExtensionReferences(from: version == 3 ? Int(head.bigEndian32(at: 100)) : 72)
        // Incompatible feature bit 2: the guest's data lives in an external data file, named or not.
        if version == 3, head.bigEndian64(at: 72) & 0x4 != 0,
           !header.externalReferences.contains(where: { $0.hasPrefix("external data file") }) {
            header.externalReferences.append("an external data file")
        }
        return header
    }

    /// Header extensions (type, length, data padded to 8) up to the end
    /// marker; the data file's name extension ("DATA") is a reference.
    private func qcowExtensionReferences(from start: Int) -> [String] {
        let area = read(0, 65536)
        var offset = start, found: [String] = []
        while offset >= 72, offset + 8 <= area.count {
            let type = area.bigEndian32(at: offset), length = Int(area.bigEndian32(at: offset + 4))
            if type == 0 { return found }
            guard offset + 8 + length <= area.count else { break }
            if type == 0x4441_5441 {
                found.append("external data file \(String(decoding: area[(offset + 8)..<(offset + 8 + length)], as: UTF8.self))")
            }
            offset += 8 + (length + 7) / 8 * 8
        }
        return found + ["header extensions past the first 64 KiB"]
    }

    // MARK: VMDK

    /// A hosted sparse extent ("KDMV"). Its embedded descriptor is read at
    /// the header's offset and at 512 bytes (where qemu looks for the parent).
    private func vmdkSparse(_ head: [UInt8]) -> ImageHeader {
        let capacity = head.littleEndian64(at: 12)
        let (bytes, overflow) = capacity.multipliedReportingOverflow(by: 512)
        var header = ImageHeader(kind: .vmdk, virtualSize: overflow ? nil : bytes)
        if overflow { header.externalReferences.append("a capacity no disk has") }
        let descriptorOffset = head.littleEndian64(at: 28), descriptorSectors = head.littleEndian64(at: 36)
        var texts: [String] = []
        if descriptorOffset > 0, descriptorSectors > 0, descriptorOffset < UInt64.max / 512 {
            texts.append(String(decoding: read(descriptorOffset * 512, Int(min(descriptorSectors, 128)) * 512)
                .prefix { $0 != 0 }, as: UTF8.self))
        }
        texts.append(String(decoding: read(512, 10240).prefix { $0 != 0 }, as: UTF8.self))
        let fields = texts.map(VMDKDescriptor.init)
        // A header of no capacity makes qemu read the descriptor's extents instead of this file.
        if capacity == 0 { header.externalReferences.append("a descriptor whose extents are read instead of the image") }
        if let type = fields[0].createType, !["monolithicSparse", "streamOptimized"].contains(type) {
            header.externalReferences.append("createType \(type) (its data lives in other files)")
        }
        for extent in Set(fields.flatMap(\.extents)).sorted() where extent.contains("/") || !extent.hasPrefix("SPARSE ") {
            header.externalReferences.append("extent \(extent)")
        }
        // qemu finds the parent's name anywhere in the descriptor qemu reads at 512 (a substring search).
        let parents = Set(fields.compactMap(\.parent) + [VMDKDescriptor.parentAnywhere(texts.last ?? "")].compactMap { $0 })
        if parents.count > 1 { header.externalReferences.append("two parent names (\(parents.sorted().joined(separator: ", ")))") }
        header.backing = parents.first
        if head.littleEndian64(at: 56) == UInt64.max, size >= 1536 {
            // The grain directory is at the end: qemu reads the footer's copy of the header.
            let footer = read(size - 1024, 512)
            if !footer.starts(with: Array("KDMV".utf8)) || footer.littleEndian64(at: 12) == 0 {
                header.externalReferences.append("a footer that is not a sparse header")
            }
        }
        return header
    }

    /// The extents a text descriptor names, when `head` is one (qemu's
    /// probe takes any text with such lines for a VMDK descriptor).
    static func descriptorExtents(_ head: [UInt8]) -> [String]? {
        let text = String(decoding: head.prefix(2048), as: UTF8.self)
        let lines = text.split(whereSeparator: \.isNewline).map { trimmed($0) }
        guard lines.contains(where: { $0.hasPrefix("# Disk DescriptorFile") || $0.hasPrefix("createType=")
                                      || ($0.hasPrefix("version=") && $0.dropFirst(8).first?.isNumber == true) })
        else { return nil }
        let extents = VMDKDescriptor(text).extents
        return extents.isEmpty ? ["the extents of a VMDK descriptor"] : extents.map { "extent \($0)" }
    }

    // MARK: VHD and others

    /// A dynamic or differencing VHD (its footer's copy at the start); a
    /// differencing one reads its parent through locators.
    private func vpc(_ head: [UInt8]) -> ImageHeader {
        var header = ImageHeader(kind: .vpc, virtualSize: head.bigEndian64(at: 48))
        let tail = size >= 512 ? read(size - 512, 512) : []
        for footer in [head, tail] where footer.starts(with: Array("conectix".utf8)) && footer.bigEndian32(at: 60) == 4 {
            header.externalReferences = ["a parent disk (a differencing VHD)"]
        }
        return header
    }

    /// Formats qemu would probe that thinsr does not read.
    static func otherFormat(_ head: [UInt8], tail: [UInt8]) -> String? {
        let magics: [(String, String)] = [
            ("QED\u{0}", "qed"), ("LUKS", "luks"), ("Bochs Virtual HD Image", "bochs"),
            ("WithoutFreeSpace", "parallels"), ("WithouFreSpacExt", "parallels"), ("#!/bin/sh\n#V2.0 Format", "cloop"),
        ]
        for (magic, name) in magics where head.starts(with: Array(magic.utf8)) { return name }
        if head.count >= 68, head.littleEndian32(at: 64) == 0xbeda_107f { return "vdi" }
        if tail.starts(with: Array("koly".utf8)) { return "dmg" }
        return nil
    }
}

/// The fields of a VMDK descriptor that name other files.
struct VMDKDescriptor {
    var createType: String?
    var parent: String?
    /// Extent lines without their access mode and size: `TYPE "FILE" ...`.
    var extents: [String] = []

    init(_ text: String) {
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = trimmed(raw)
            if let value = Self.value(line, of: "createType") { createType = value }
            if let value = Self.value(line, of: "parentFileNameHint") { parent = value }
            let words = line.split(separator: " ", maxSplits: 2)
            if words.count == 3, ["RW", "RDONLY", "NOACCESS"].contains(words[0]), UInt64(words[1]) != nil {
                extents.append(String(words[2]))
            }
        }
    }

    /// The parent name as qemu's vmdk driver finds it: the first
    /// "parentFileNameHint" anywhere, two characters on, up to a quote.
    static func parentAnywhere(_ text: String) -> String? {
        guard let key = text.firstRange(of: "parentFileNameHint") else { return nil }
        let rest = text[key.upperBound...].dropFirst(2)
        return String(rest.prefix { $0 != "\"" })
    }

    private static func value(_ line: String, of key: String) -> String? {
        guard line.hasPrefix(key) else { return nil }
        let rest = line.dropFirst(key.count).drop { $0 == " " }
        guard rest.first == "=" else { return nil }
        return trimmed(rest.dropFirst(), also: "\"")
    }
}

/// `text` without surrounding blanks (and `also`).
func trimmed<S: StringProtocol>(_ text: S, also: Character? = nil) -> String {
    let keep = { (c: Character) in !(c == " " || c == "\t" || c == "\r" || c == also) }
    guard let first = text.firstIndex(where: keep), let last = text.lastIndex(where: keep) else { return "" }
    return String(text[first...last])
}

extension Array where Element == UInt8 {
    func bigEndian32(at offset: Int) -> UInt32 {
        guard offset + 4 <= count else { return 0 }
        return self[offset..<(offset + 4)].reduce(0) { $0 << 8 | UInt32($1) }
    }

    func bigEndian64(at offset: Int) -> UInt64 {
        guard offset + 8 <= count else { return 0 }
        return self[offset..<(offset + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }

    func littleEndian32(at offset: Int) -> UInt32 {
        guard offset + 4 <= count else { return 0 }
        return self[offset..<(offset + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    func littleEndian64(at offset: Int) -> UInt64 {
        guard offset + 8 <= count else { return 0 }
        return self[offset..<(offset + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}
