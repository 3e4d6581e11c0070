public import ArgumentParser
public import ThinCore

public struct VDIImport: TransferTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-import",
        abstract: "Import a disk image into a new volume.",
        discussion: """
            Reads a self-contained disk image (raw, qcow2, vpc/VHD, vmdk, vhdx; the format read from its \
            header by thinsr, never probed by qemu, unless --format is given) into a new thin volume of the image's virtual size (or --size, if larger), writing only \
            the image's allocated data: runs of zeros stay unprovisioned, so the volume uses about what the \
            image holds. With --preallocate, the volume is a raw LV beside the pool instead, zeroed before \
            the copy (as thinvdi-create --preallocate makes it). The image is checked first (qemu-img check where the format has one), and its data \
            must fit in the pool's free space, before anything is made. - reads a raw stream from standard \
            input, with --size, its exact length: a stream that ends sooner (its producer failed) imports \
            nothing. An image that reads outside itself (an external data file, a VMDK descriptor's extents, a \
            differencing VHD's parent) is refused; a backing chain is read only when --backing names each of \
            its images, which are then opened with the formats their headers give, never probed. A failed or \
            cancelled import removes the volume it made; one killed outright is removed by the SR's next \
            operation. Prints the new volume's key.
            """)
    public static let examples = [
        ("thinvdi-import vmstore --name web01-root web01.qcow2", "Import a qcow2 image."),
        ("zcat web01.raw.gz | thinvdi-import vmstore --name web01-root --size 20G -", "Import a raw stream."),
    ]
    public static let extraExitStatuses: [(Int32, String)] = [(130, "cancelled by SIGINT or SIGTERM; nothing was kept")]

    @OptionGroup public var target: SRArgument
    @Option(help: "The new volume's name label.") var name: String
    @Argument(help: ArgumentHelp("The image to read, or - for a raw stream on standard input.", valueName: "file"),
              completion: .file())
    var file: String
    @Option(help: ArgumentHelp("The image's format (default: read from its header).", valueName: "format"))
    var format: ImportFormat?
    @Option(help: ArgumentHelp("A backing image of FILE's chain, in order (repeat for each); without it an image naming "
                               + "a backing image is refused.", valueName: "path"), completion: .file())
    var backing: [String] = []
    @Option(help: ArgumentHelp("The volume's size (at least the image's; for -, the stream's exact length).", valueName: "size"),
            transform: ByteCount.parser("size"))
    var size: ByteCount?
    @Option(help: "The new volume's description.") var description: String = ""
    @Flag(help: "Import into a preallocated raw volume (a linear LV beside the pool, zeroed first) instead of a thin one.")
    var preallocate = false
    @OptionGroup var progressOptions: ProgressOptions
    var progress: ProgressMode? { progressOptions.progress }
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func checkArguments() throws(ThinError) {
        if file == "-" {
            guard format == nil || format == .raw else {
                throw .init(.invalidArgument, "standard input takes a raw stream only; give a file for --format "
                            + "\(format!.rawValue)")
            }
            guard size != nil else {
                throw .init(.invalidArgument, "reading standard input needs --size (the stream's exact length)")
            }
            guard backing.isEmpty else {
                throw .init(.invalidArgument, "standard input takes a raw stream, which has no backing image; drop --backing")
            }
        } else if !System.exists(file) {
            throw .init(.invalidArgument, "\(file) does not exist; give the path of a disk image")
        }
        for path in backing where !System.exists(path) {
            throw .init(.invalidArgument, "--backing \(path) does not exist; give the path of a backing image of \(file)")
        }
    }

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let request = ImportRequest(name: name, description: description, file: file, format: format?.image,
                                    backing: backing, size: size?.bytes, preallocate: preallocate, describe: output.json)
        let outcome = try await ImportJob(jobContext(sr: target.sr, host: host, progress: progress)).run(request)
        if let detachFailure = outcome.detachFailure {
            Console.err("thinvdi-import: \(outcome.volume.key) was imported but is still attached (\(detachFailure)); "
                        + "detach it with thinvdi-detach")
        }
        printVolume(outcome.volume, view: outcome.view, json: output.json)
        return 0
    }
}

/// `--format` of an import.
enum ImportFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case raw, qcow2, vpc, vmdk, vhdx
    var image: DiskFormat { DiskFormat(rawValue: rawValue)! }
}
