public import ArgumentParser
public import ThinCore
#if canImport(Glibc)
import Glibc
#endif

public struct VDIExport: TransferTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-export",
        abstract: "Export a volume to a disk image file or to standard output.",
        discussion: """
            Reads only the blocks the pool has provisioned (the pool's metadata says which, through an nbdkit \
            export with that block status) and writes a sparse image with qemu-img: raw, qcow2, vpc (VHD) or \
            vmdk; without --format the file name's extension chooses (.qcow2, .vhd, .vmdk, else raw). A \
            snapshot exports as it is; a volume attached read-write is refused (a guest may be writing it: \
            export a snapshot of it). The image is written under a temporary name and renamed over FILE \
            when whole, so a failed or cancelled export leaves FILE as it was; a FILE under a directory \
            every user can write without the sticky bit is refused (another user could swap the temporary \
            file for a link while root writes it). - writes a raw image to \
            standard output. With --base SNAPSHOT, only what changed since that earlier snapshot is written \
            (the same proof as thinvdi-changed), into a qcow2 or vmdk image whose backing file is the base's \
            own export: the file this host last exported SNAPSHOT to, or --base-image. qemu-img cannot write \
            a differencing VHD, so --base refuses vpc. Progress goes to stderr: a bar when it is a terminal \
            or with --progress, one JSON object per line with --progress=json. SIGINT or SIGTERM cancels.
            """)
    public static let examples = [
        ("thinvdi-export vmstore nightly-1 /backup/web01-full.qcow2", "Export a snapshot as qcow2."),
        ("thinvdi-export vmstore nightly-2 /backup/web01-incr.qcow2 --base nightly-1",
         "Write only what changed since nightly-1, backed by its export."),
        ("thinvdi-export vmstore nightly-1 - | gzip > web01.raw.gz", "Stream a raw image."),
    ]
    public static let extraExitStatuses: [(Int32, String)] = [(130, "cancelled by SIGINT or SIGTERM; FILE is unchanged")]

    @OptionGroup public var volume: VolumeArgument
    @Argument(help: ArgumentHelp("The image to write, or - for a raw image on standard output.", valueName: "file"),
              completion: .file())
    var file: String
    @Option(help: ArgumentHelp("The image format (default: from FILE's extension, else raw).", valueName: "format"))
    var format: ExportFormat?
    @Option(help: ArgumentHelp("Write only what changed since this earlier snapshot of the volume.", valueName: "snapshot"),
            completion: Complete.volumes)
    var base: String?
    @Option(name: .customLong("base-image"),
            help: ArgumentHelp("With --base: the base's exported image, the new image's backing file (default: the file "
                               + "this host last exported the base to).", valueName: "path"), completion: .file())
    var baseImage: String?
    @OptionGroup var progressOptions: ProgressOptions
    var progress: ProgressMode? { progressOptions.progress }
    @OptionGroup public var output: OutputOptions
    public init() {}

    var chosenFormat: DiskFormat {
        if let format { return format.image }
        let lower = file.lowercased()
        if lower.hasSuffix(".qcow2") { return .qcow2 }
        if lower.hasSuffix(".vhd") { return .vpc }
        if lower.hasSuffix(".vmdk") { return .vmdk }
        return .raw
    }

    public func checkArguments() throws(ThinError) {
        if file == "-" {
            guard chosenFormat == .raw, base == nil else {
                throw .init(.invalidArgument, "standard output takes a raw image of the whole volume only; give a file "
                            + "for --format \(chosenFormat.rawValue) or --base")
            }
            guard !output.json else {
                throw .init(.invalidArgument, "--json cannot be used with - (standard output carries the image)")
            }
        }
        if base != nil, !chosenFormat.takesBackingFile {
            throw .init(.invalidArgument, "--base needs --format qcow2 or vmdk: qemu-img cannot write a differencing "
                        + "\(chosenFormat == .vpc ? "VHD" : chosenFormat.rawValue) image")
        }
        if baseImage != nil, base == nil {
            throw .init(.invalidArgument, "--base-image needs --base SNAPSHOT (the snapshot the image holds)")
        }
        if file != "-", System.blockDevice(file) != nil, chosenFormat != .raw || base != nil {
            throw .init(.invalidArgument, "\(file) is a block device: it takes a raw image of the whole volume only; "
                        + "give a file for --format \(chosenFormat.rawValue) or --base")
        }
        if file != "-", System.exists(file), System.blockDevice(file) == nil, !isRegularFile(file) {
            throw .init(.invalidArgument, "\(file) exists and is not a regular file or a block device; choose another path")
        }
        if file != "-", System.blockDevice(file) == nil, let directory = ReplaceableDirectories.first(above: file) {
            throw .init(.invalidArgument, "\(directory) is writable by every user and not sticky: another user could "
                        + "swap the image for a link while it is written; export into a directory only root can write")
        }
    }

    private func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let request = ExportRequest(volume: volume.vdi, file: file, format: chosenFormat, base: base, baseImage: baseImage)
        let outcome = try await ExportJob(jobContext(sr: volume.target.sr, host: host, progress: progress)).run(request)
        if let failure = outcome.recordFailure {
            Console.err("thinvdi-export: \(file) was written, but where \(outcome.volume.key) went could not be recorded "
                        + "(\(failure.message)); an export --base \(outcome.volume.key) needs --base-image \(file)")
        }
        if output.json {
            Console.printJSON(ExportJSON(file: file, format: chosenFormat.rawValue, volume: outcome.volume.key,
                                         virtual_size: outcome.extents.virtualSize, data_bytes: outcome.extents.dataBytes,
                                         base: base, backing_file: outcome.backingFile))
        } else if file != "-" {
            Console.out(file)
        }
        return 0
    }
}

/// `--format` of an export.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case raw, qcow2, vpc, vmdk
    var image: DiskFormat { DiskFormat(rawValue: rawValue)! }
}

struct ExportJSON: Encodable {
    var file: String
    var format: String
    var volume: String
    var virtual_size: UInt64
    var data_bytes: UInt64
    var base: String?
    var backing_file: String?
}

