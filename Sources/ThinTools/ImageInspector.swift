import FoundationEssentials
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Why an image is refused: one line naming what is wrong and what to do.
public struct ImageRefusal: Error, Sendable, Equatable {
    public var message: String
}

/// An image thinsr has inspected and accepted, and how qemu must open it:
/// always with its format named, each layer of a chain named too, so qemu
/// neither probes a format nor follows a reference the header makes.
public struct InspectedImage: Sendable, Equatable {
    public struct Layer: Sendable, Equatable {
        public var path: String
        public var format: ImageFormat

        public init(path: String, format: ImageFormat) {
            self.path = path
            self.format = format
        }
    }

    /// The image first, then each backing image the caller named.
    public var layers: [Layer]

    public init(layers: [Layer]) { self.layers = layers }

    public var format: ImageFormat { layers[0].format }
    public var path: String { layers[0].path }

    /// qemu's arguments for reading the image: `-f FORMAT PATH`, or for a
    /// chain a `json:` description that names every layer and ends it.
    public var qemuSource: [String] {
        // A relative name could read as an option (-x) or a protocol (nbd:...): qemu gets ./name.
        guard layers.count > 1 || format.takesBackingFile else { return ["-f", format.rawValue, Self.plain(path)] }
        // A format that can name a backing image is opened with its chain ended explicitly
        // (backing null at the bottom), so qemu follows no name thinsr did not check.
        return ["json:" + Self.json(layers[...], blockDevice: ImageInspector.isBlockDevice(path))]
    }

    /// For `qemu-img info`, which opens no backing image (and so refuses a
    /// `backing` option): the top image with its format named.
    public var qemuInfoSource: [String] { ["-f", format.rawValue, Self.plain(path)] }

    static func plain(_ path: String) -> String { path.hasPrefix("/") ? path : "./" + path }

    private static func json(_ layers: ArraySlice<Layer>, blockDevice: Bool) -> String {
        guard let layer = layers.first else { return "null" }
        let file = #"{"driver":"\#(blockDevice ? "host_device" : "file")","filename":\#(quoted(plain(layer.path)))}"#
        var node = #"{"driver":"\#(layer.format.rawValue)","file":\#(file)"#
        if layer.format.takesBackingFile { node += #","backing":\#(json(layers.dropFirst(), blockDevice: false))"# }
        return node + "}"
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Accepts only self-contained images: no external data file, no extents
/// or parents elsewhere, no backing image unless the caller named each one.
public enum ImageInspector {
    /// The header of the image at `path` (a file or a block device).
    public static func header(of path: String) throws(ImageRefusal) -> ImageHeader {
        let descriptor: FileDescriptor
        do { descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]) } catch {
            throw ImageRefusal(message: "\(path) cannot be opened (\(error)); give a readable disk image")
        }
        defer { try? descriptor.close() }
        let size: UInt64
        do { size = UInt64(try descriptor.seek(offset: 0, from: .end)) } catch {
            throw ImageRefusal(message: "\(path) cannot be read (\(error)); give a readable disk image")
        }
        return ImageHeaderParser(size: size) { offset, count in
            guard count > 0, offset < size else { return [] }
            var bytes = [UInt8](repeating: 0, count: count)
            let got = (try? bytes.withUnsafeMutableBytes { try descriptor.read(fromAbsoluteOffset: Int64(offset), into: $0) }) ?? 0
            return Array(bytes.prefix(got))
        }.parse()
    }

    /// Inspects `path` (as `declared` when given) and the backing images
    /// named in `backing`, top first. `what` names the image in messages.
    public static func inspect(_ path: String, declared: ImageFormat?, backing named: [String] = [],
                               what: String? = nil) throws(ImageRefusal) -> InspectedImage {
        let label = what ?? path
        // A raw image reads nothing but its own bytes, whatever they look like.
        if declared == .raw {
            guard named.isEmpty else { throw ImageRefusal(message: "a raw image has no backing image; drop --backing") }
            return InspectedImage(layers: [.init(path: path, format: .raw)])
        }
        var layers: [InspectedImage.Layer] = []
        var current = path, remaining = named[...], header = try header(of: path)
        try accept(header, of: label, declared: declared)
        layers.append(.init(path: path, format: declared == .vpc && header.fixedVHDFooter ? .vpc : header.format ?? .raw))
        while let backing = header.backing {
            guard let next = remaining.popFirst() else {
                throw ImageRefusal(message: "\(label) names a backing image (\(backing)); name each image of the chain "
                                   + "with --backing PATH, or flatten it first (qemu-img convert -O qcow2)")
            }
            try requireSameFile(backing, relativeTo: current, named: next, of: label)
            current = next
            header = try Self.header(of: next)
            try accept(header, of: next, declared: nil)
            layers.append(.init(path: next, format: header.format ?? .raw))
        }
        if let extra = remaining.first {
            throw ImageRefusal(message: "--backing \(extra) is not in \(label)'s chain (\(current) names no backing image); "
                               + "drop it")
        }
        return InspectedImage(layers: layers)
    }

    /// An image thinsr wrote (an export, a base of an increment) with the
    /// chain its headers name: each backing image must be a regular file
    /// and self-contained but for its own backing image. Nothing is opened
    /// by qemu; the top's size comes from its header.
    public static func followChain(_ path: String, what: String) throws(ImageRefusal)
        -> (layers: [InspectedImage.Layer], virtualSize: UInt64?) {
        var header = try header(of: path)
        try accept(header, of: what, declared: nil)
        let size = header.virtualSize
        var layers = [InspectedImage.Layer(path: path, format: header.format ?? .raw)]
        var current = path
        while let backing = header.backing {
            guard let next = resolve(backing, relativeTo: current), isRegularFile(next) else {
                throw ImageRefusal(message: "\(what)'s chain names \(backing), which is not a regular file beside it; "
                                   + "give the image of a whole chain of files")
            }
            guard layers.count < 64 else { throw ImageRefusal(message: "\(what)'s chain is over 64 images deep; flatten it") }
            current = next
            header = try Self.header(of: next)
            try accept(header, of: next, declared: nil)
            layers.append(.init(path: next, format: header.format ?? .raw))
        }
        return (layers, size)
    }

    /// Whether two paths name one file (the same device and inode).
    public static func sameFile(_ first: String, _ second: String) -> Bool {
        var a = stat(), b = stat()
        return stat(first, &a) == 0 && stat(second, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    private static func accept(_ header: ImageHeader, of label: String, declared: ImageFormat?) throws(ImageRefusal) {
        switch header.kind {
        case .vmdkDescriptor:
            throw ImageRefusal(message: "\(label) is a VMDK descriptor, which reads other files or devices ("
                               + "\(header.externalReferences.prefix(2).joined(separator: ", "))); only self-contained "
                               + "images are read: give --format raw to take its bytes as a raw disk")
        case .other(let name):
            throw ImageRefusal(message: "\(label) is a \(name) image, which thinsr does not read; convert it with "
                               + "qemu-img convert -O qcow2, or give --format raw to take its bytes as a raw disk")
        default: break
        }
        let found = header.format ?? .raw
        if declared == .vpc, header.fixedVHDFooter { return }
        if let declared, declared != found {
            throw ImageRefusal(message: "\(label) is not a \(declared.rawValue) image (its header says \(found.rawValue)); "
                               + "give the format it has, or --format raw for its bytes")
        }
        if !header.externalReferences.isEmpty {
            throw ImageRefusal(message: "\(label) is a \(found.rawValue) image that reads outside itself ("
                               + "\(header.externalReferences.prefix(2).joined(separator: ", "))); only self-contained "
                               + "images are read: convert it with qemu-img convert on a host you trust")
        }
    }

    /// The backing name in `image`'s header must resolve (beside `image`
    /// when relative) to the regular file the caller named.
    private static func requireSameFile(_ backing: String, relativeTo image: String, named: String,
                                        of label: String) throws(ImageRefusal) {
        guard isRegularFile(named) else {
            throw ImageRefusal(message: "--backing \(named) is not a regular file; a backing image is a file, never a device")
        }
        guard let resolved = resolve(backing, relativeTo: image), sameFile(resolved, named) else {
            throw ImageRefusal(message: "\(label)'s backing image is \(backing), not --backing \(named); name the "
                               + "files of its chain in order")
        }
    }

    /// A header's backing name as a path (beside `image` when relative);
    /// nil for a protocol name (`nbd:...`), which is never a file.
    private static func resolve(_ backing: String, relativeTo image: String) -> String? {
        if backing.hasPrefix("/") { return backing }
        return backing.contains(":") ? nil : PathText.directory(of: image) + "/" + backing
    }

    private static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    static func isBlockDevice(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFBLK
    }
}
