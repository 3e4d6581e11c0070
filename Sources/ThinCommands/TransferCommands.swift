public import ArgumentParser
import FoundationEssentials
public import ThinCore
import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// A tool that copies data in or out of a volume for a long time: it holds
/// the SR lock only while it sets up and tears down, never while it copies,
/// so the SR's other operations go on meanwhile.
protocol TransferTool: ToolCommand {}

extension TransferTool {
    public static var access: ToolAccess { .write }
}

extension ToolCommand {
    /// Runs `body` on the SR opened for writing, then closes it.
    func withSR<T>(_ reference: String, host: Host,
                   _ body: (AttachedSR) async throws(ThinError) -> T) async throws(ThinError) -> T {
        let sr = try AttachedSR.open(reference, for: .write, host: host)
        defer { sr.close() }
        return try await body(sr)
    }
}

/// Shell words for nbdkit --run, which runs its command through /bin/sh.
private func shellQuoted(_ word: String) -> String { "'" + word.replacing("'", with: "'\\''") + "'" }

private func directory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

private func fileName(of path: String) -> String {
    path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
}

func cancelled(_ what: String) -> ThinError { ThinError(.cancelled, "\(what) cancelled") }

/// A program's path for a shell line, or the error naming its package.
func located(_ program: Program) throws(ThinError) -> String {
    guard let path = program.path else {
        throw ThinError(.backendFailure, "\(program.name) not found; install \(program.package)")
    }
    return path
}

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
            when whole, so a failed or cancelled export leaves FILE as it was. - writes a raw image to \
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

    var chosenFormat: ImageFormat {
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
    }

    private func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        CancelSignals.install()
        let format = chosenFormat
        // Set up under the SR lock: what to read, and the device, held read-only for this process.
        let (sr, record, device, extents, backing) = try await withSR(volume.target.sr, host: host) {
            sr throws(ThinError) in
            let extents = try await sr.exportExtents(of: volume.vdi, since: base)
            var backing: (name: String, format: String)?
            if let base { backing = try await resolveBase(base, in: sr) }
            let (record, device) = try await sr.attachForReading(volume.vdi)
            return (sr.names, record, device, extents, backing)
        }
        defer {
            // Let the device go, whatever happened; a failure here leaves only a holder a later detach clears.
            _ = try? AttachedSR.open(sr.uuidString, for: .write, host: host).withClose { sr throws(ThinError) in try sr.releaseHold(record) }
        }
        let hold = try System.holdDevice(device)
        defer { System.releaseDevice(hold) }
        let scratch = try AttachedSR.open(sr.uuidString, for: .read, host: host).withClose { sr throws(ThinError) in try sr.transferDirectory() }
        let extentFile = "\(scratch)/export-\(getpid()).extents"
        try System.writeFile(extentFile, extents.extentList)
        defer { System.removeFile(extentFile) }

        let reporter = ProgressReporter(operation: "export", total: extents.dataBytes, mode: progress)
        let toBlockDevice = file != "-" && System.blockDevice(file) != nil
        let target = file == "-" || toBlockDevice ? file : try ExclusiveFile.create(besides: file, tag: "thinvdi-export")
        let engine: String
        let stream: ExternalCommand.ProgressStream
        if file == "-" {
            engine = shellQuoted(try located(.nbdcopy)) + " --progress=2 \"$uri\" -"
            stream = .standardError
        } else {
            var words = [try located(.qemuImage), "convert", "-p", "-f", "raw"]
            if let backing { words += ["-B", backing.name, "-F", backing.format] }
            if toBlockDevice { words.append("-n") }
            words += ["-O", format.rawValue] + format.creationOptions
            engine = words.map(shellQuoted).joined(separator: " ") + " \"$uri\" " + shellQuoted(target)
            stream = .standardOutput
        }
        let arguments = ["-U", "-", "-r", "--exit-with-parent", "--filter=extentlist", "file", "file=\(device)",
                         "extentlist=\(extentFile)", "--run", engine]
        let result: ExternalCommandResult
        do {
            result = try await ExternalCommand.runReportingProgress(Program.nbdkit, arguments, progressOn: stream) {
                reporter.update(fraction: $0)
            }
        } catch {
            throw ThinError(.backendFailure, "cannot run nbdkit: \(error)")
        }
        guard CancelSignals.received == nil, result.exitStatus == 0 else {
            if !toBlockDevice && file != "-" { System.removeFile(target) }
            if CancelSignals.received != nil {
                throw cancelled("export of \(record.key)" + (file == "-" || toBlockDevice ? "" : "; \(file) is unchanged"))
            }
            throw ThinError(.backendFailure, "export of \(record.key) failed: \(messageLine(result.standardError, last: true))")
        }
        if !toBlockDevice && file != "-" { try System.rename(target, to: file) }
        reporter.finish()
        if file != "-" {
            do { try ExportRecords.remember(sr: sr, volume: record, image: System.absolutePath(file)) } catch {
                Console.err("thinvdi-export: \(file) was written, but where \(record.key) went could not be recorded "
                            + "(\(error.message)); an export --base \(record.key) needs --base-image \(file)")
            }
        }
        if output.json {
            Console.printJSON(ExportJSON(file: file, format: format.rawValue, volume: record.key,
                                         virtual_size: extents.virtualSize, data_bytes: extents.dataBytes,
                                         base: base, backing_file: backing?.name))
        } else if file != "-" {
            Console.out(file)
        }
        return 0
    }

    /// The base's image: how the new image names it (its file name when both
    /// lie in one directory, so the pair can move together) and its format.
    private func resolveBase(_ snapshot: String, in sr: AttachedSR) async throws(ThinError)
        -> (name: String, format: String) {
        let baseVolume = try sr.requireVolume(snapshot)
        guard let image = baseImage ?? ExportRecords.lastExport(sr: sr.names, volume: baseVolume) else {
            throw ThinError(.invalidArgument, "no export of \(baseVolume.key) is recorded on this host (never exported "
                            + "here, or its record could not be written); give --base-image PATH, the image "
                            + "\(baseVolume.key) was exported to")
        }
        let absolute = System.absolutePath(image)
        guard System.exists(absolute) else {
            throw ThinError(.invalidArgument, "the base image \(image) does not exist; give --base-image PATH, the image "
                            + "\(baseVolume.key) was exported to")
        }
        let chain: (layers: [InspectedImage.Layer], virtualSize: UInt64?)
        do { chain = try ImageInspector.followChain(absolute, what: "the base image \(image)") } catch {
            throw ThinError(.invalidArgument, error.message)
        }
        // Writing over a file of the base's own chain would leave an image backed by itself.
        if let own = chain.layers.first(where: { ImageInspector.sameFile($0.path, file) || $0.path == System.absolutePath(file) }) {
            let which = own.path == absolute ? "the base image itself" : "in the base image's chain (\(own.path))"
            throw ThinError(.invalidArgument, "\(file) is \(which); write the increment to another file")
        }
        guard let virtualSize = chain.virtualSize, virtualSize == baseVolume.virtualSize else {
            throw ThinError(.invalidArgument, "the base image \(image) is \(chain.virtualSize.map(String.init) ?? "of unknown size") "
                            + "bytes but \(baseVolume.key) is \(baseVolume.virtualSize); give --base-image PATH, the image "
                            + "it was exported to")
        }
        let sameDirectory = directory(of: absolute) == directory(of: System.absolutePath(file))
        return (sameDirectory ? fileName(of: absolute) : absolute, chain.layers[0].format.rawValue)
    }
}

/// `--format` of an export.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case raw, qcow2, vpc, vmdk
    var image: ImageFormat { ImageFormat(rawValue: rawValue)! }
}

/// `--format` of an import.
enum ImportFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case raw, qcow2, vpc, vmdk, vhdx
    var image: ImageFormat { ImageFormat(rawValue: rawValue)! }
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
        CancelSignals.install()
        let (image, virtualSize, allocated) = try await inspect()
        let volumeSize = max(size?.bytes ?? 0, virtualSize)
        let (volumeRecord, device) = try await begin(sizeBytes: volumeSize, allocatedBytes: allocated, host: host)
        let reporter = ProgressReporter(operation: "import", total: file == "-" ? 0 : allocated > 0 ? allocated : virtualSize,
                                        mode: progress)
        var failure: ThinError?
        if CancelSignals.received != nil {
            failure = cancelled("import")
        } else if file == "-" {
            do {
                let arrived = try StreamCopy.copyStandardInput(toDevice: device, limit: volumeSize) { reporter.update(done: $0) }
                if CancelSignals.received != nil {
                    failure = cancelled("import")
                } else if arrived < volumeSize {
                    // A producer that died ends its stream early: that is not the image.
                    failure = ThinError(.invalidArgument, "standard input ended after \(arrived) of the \(volumeSize) bytes "
                                        + "--size gives (did its producer fail?); nothing was imported: give the "
                                        + "stream's exact size with --size")
                }
            } catch {
                failure = error
            }
        } else {
            do {
                let result = try await ExternalCommand.runReportingProgress(
                    Program.qemuImage, ["convert", "-p", "-n", "--target-is-zero"] + image.qemuSource + ["-O", "raw", device]) {
                    reporter.update(fraction: $0)
                }
                if CancelSignals.received != nil {
                    failure = cancelled("import")
                } else if result.exitStatus != 0 {
                    failure = ThinError(.invalidArgument, "\(file) could not be read to its end (truncated or damaged?): "
                                        + messageLine(result.standardError, last: true))
                }
            } catch {
                failure = ThinError(.backendFailure, "cannot run qemu-img: \(error)")
            }
        }
        return try await withSR(target.sr, host: host) { sr throws(ThinError) in
            if let failure {
                try sr.abandonImport(volumeRecord)
                throw failure
            }
            let (imported, detachFailure) = try sr.finishImport(volumeRecord)
            reporter.finish()
            if let detachFailure {
                Console.err("thinvdi-import: \(imported.key) was imported but is still attached (\(detachFailure)); "
                            + "detach it with thinvdi-detach")
            }
            try await printVolume(imported, of: sr, json: output.json)
            return 0
        }
    }

    /// The volume the import fills, attached read-write for this process: a
    /// thin one, or with --preallocate a raw one zeroed first.
    private func begin(sizeBytes: UInt64, allocatedBytes: UInt64,
                       host: Host) async throws(ThinError) -> (VolumeRecord, String) {
        guard preallocate else {
            return try await withSR(target.sr, host: host) { sr throws(ThinError) in
                try await sr.beginImport(name: name, description: description, sizeBytes: sizeBytes,
                                   allocatedBytes: allocatedBytes)
            }
        }
        let volume = try await createPreallocated(sr: target.sr, name: name, description: description,
                                                  sizeBytes: sizeBytes, sharable: false, progress: progress,
                                                  host: host, keepFilling: true)
        return try await withSR(target.sr, host: host) { sr throws(ThinError) in
            do throws(ThinError) { return try await sr.preallocated.attachForImport(volume) } catch {
                try? sr.abandonImport(volume)
                throw error
            }
        }
    }

    /// The image's format, virtual size and allocated bytes, refusing what
    /// is not a readable, consistent, self-contained image. thinsr reads
    /// the format from the header itself: a qemu probe is never trusted.
    private func inspect() async throws(ThinError) -> (InspectedImage, UInt64, UInt64) {
        guard file != "-" else { return (InspectedImage(layers: [.init(path: "-", format: .raw)]), size?.bytes ?? 0, 0) }
        let image: InspectedImage
        do { image = try ImageInspector.inspect(file, declared: format?.image, backing: backing) } catch {
            throw ThinError(.invalidArgument, error.message)
        }
        // An image with no header is raw; a real raw disk image is whole sectors.
        if format == nil, image.format == .raw, System.blockDevice(file) == nil,
           let length = System.fileLength(file), length % 512 != 0 || length == 0 {
            throw ThinError(.invalidArgument, "\(file) is not a disk image (\(length) bytes of unrecognised data); "
                            + "give --format raw to import it as raw data anyway")
        }
        let info: ImageInfo
        do { info = try await DiskImages.info(image) } catch {
            if CancelSignals.received != nil { throw cancelled("import") }
            throw ThinError(.invalidArgument, "\(file) is not a \(image.format.rawValue) image qemu-img can read: "
                            + messageLine(error.standardError, last: true))
        }
        let problem: String?
        do { problem = try await DiskImages.problem(image) } catch {
            throw ThinError(.backendFailure, "cannot check \(file): \(error)")
        }
        if CancelSignals.received != nil { throw cancelled("import") }
        if let problem { throw ThinError(.invalidArgument, "\(file) is damaged: \(problem); repair it with qemu-img check -r") }
        do {
            // qemu's vhdx driver reports no allocation (every block reads as data):
            // its estimate cannot refuse an import, the pool's own limits then apply.
            let allocated = image.format.reportsAllocation ? try await DiskImages.allocatedBytes(image) : 0
            return (image, info.virtualSize, allocated)
        } catch {
            if CancelSignals.received != nil { throw cancelled("import") }
            throw ThinError(.invalidArgument, "\(file) cannot be mapped (truncated or damaged?): \(messageLine(error.standardError, last: true))")
        }
    }
}

public struct VDIServe: TransferTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-serve",
        abstract: "Export a volume over NBD.",
        discussion: """
            Runs nbdkit on the volume's device until it is stopped (SIGTERM or SIGINT, as systemd stops a \
            service), on a unix socket or a TCP port, and prints the export's URI once it accepts \
            connections. Read-only unless --writable, with base:allocation block status from the pool's \
            metadata, so nbdinfo --map shows holes where nothing is provisioned and nbdcopy or qemu-img copy \
            only data; a volume attached read-write elsewhere is refused (serve a snapshot of it). \
            --writable serves a detached volume read-write to one client at a time, reporting every block \
            as data (its mappings change under the export), and refuses snapshots. --detach starts the \
            server in the background and prints its URI and pid file; kill the pid to stop it. The volume \
            stays attached for the server (shared with other readers) until it stops. With --tls-psk or \
            --tls-certificates the URI is nbds:// or nbds+unix://, which thinsr's nbd scheme opens (as a \
            template's URI) with the client credentials in /etc/thinsr/nbd-tls: the same keys.psk, or \
            ca-cert.pem, client-cert.pem and client-key.pem.
            """)
    public static let examples = [
        ("thinvdi-serve vmstore nightly-1 --socket /run/web01.sock", "Serve a snapshot on a unix socket."),
        ("thinvdi-serve vmstore nightly-1 --port 10809 --bind 192.0.2.10 --detach",
         "Serve on TCP in the background."),
    ]

    @OptionGroup public var volume: VolumeArgument
    @Option(help: ArgumentHelp("Listen on this unix socket (it must not exist).", valueName: "path"),
            completion: .file())
    var socket: String?
    @Option(help: ArgumentHelp("Listen on this TCP port.", valueName: "port")) var port: Int?
    @Option(help: ArgumentHelp("With --port: the address to listen on (default 127.0.0.1; :: or 0.0.0.0 for all).",
                               valueName: "address"))
    var bind: String?
    @Flag(help: "Serve read-write (refused on a snapshot and on an attached volume).") var writable = false
    @Option(name: .customLong("tls-certificates"),
            help: ArgumentHelp("Require TLS with the X.509 certificates in this directory (nbdkit's layout).",
                               valueName: "dir"), completion: .directory)
    var tlsCertificates: String?
    @Option(name: .customLong("tls-psk"), help: ArgumentHelp("Require TLS with this pre-shared key file.", valueName: "file"),
            completion: .file())
    var tlsPSK: String?
    @Option(name: .customLong("export-name"), help: ArgumentHelp("The NBD export name (default: the volume's key).",
                                                                  valueName: "name"))
    var exportName: String?
    @Flag(help: "Run in the background; print the URI and the pid file.") var detach = false
    @Option(name: .customLong("pid-file"), help: ArgumentHelp("Write the server's pid here once it accepts connections.",
                                                              valueName: "path"), completion: .file())
    var pidFile: String?
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func checkArguments() throws(ThinError) {
        guard (socket == nil) != (port == nil) else {
            throw .init(.invalidArgument, "give exactly one of --socket PATH and --port N")
        }
        if let socket, System.exists(socket) {
            throw .init(.invalidArgument, "\(socket) already exists; remove it if no server uses it, or choose another path")
        }
        if let port, !(1...65535).contains(port) {
            throw .init(.invalidArgument, "--port \(port) is out of range; give a TCP port from 1 to 65535")
        }
        if bind != nil, port == nil { throw .init(.invalidArgument, "--bind needs --port") }
        if tlsCertificates != nil, tlsPSK != nil {
            throw .init(.invalidArgument, "give one of --tls-certificates and --tls-psk")
        }
        for path in [tlsCertificates, tlsPSK].compactMap({ $0 }) where !System.exists(path) {
            throw .init(.invalidArgument, "\(path) does not exist; give nbdkit's TLS certificate directory or PSK file")
        }
        if let pidFile, System.exists(pidFile) {
            throw .init(.invalidArgument, "\(pidFile) already exists; remove it if no server uses it, or choose another path")
        }
    }

    func uri(export: String) -> String {
        let secure = tlsCertificates != nil || tlsPSK != nil
        if let socket {
            return "nbd\(secure ? "s" : "")+unix:///\(export)?socket=\(System.absolutePath(socket))"
        }
        let address = bind ?? "127.0.0.1"
        return "nbd\(secure ? "s" : "")://\(address.contains(":") ? "[\(address)]" : address):\(port ?? 10809)/\(export)"
    }

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        if detach { return try await startInBackground() }
        CancelSignals.install()
        let (sr, record, device, extents) = try await withSR(volume.target.sr, host: host) { sr throws(ThinError) in
            if writable {
                let (record, device) = try await sr.attachForWriting(volume.vdi)
                return (sr.names, record, device, ExportExtents?.none)
            }
            let extents = try await sr.exportExtents(of: volume.vdi)
            let (record, device) = try await sr.attachForReading(volume.vdi)
            return (sr.names, record, device, Optional(extents))
        }
        defer { _ = try? AttachedSR.open(sr.uuidString, for: .write, host: host).withClose { sr throws(ThinError) in try sr.releaseHold(record) } }
        let hold = try System.holdDevice(device)
        defer { System.releaseDevice(hold) }
        let scratch = try AttachedSR.open(sr.uuidString, for: .read, host: host).withClose { sr throws(ThinError) in try sr.transferDirectory() }
        let extentFile = "\(scratch)/serve-\(getpid()).extents"
        let readyFile = "\(scratch)/serve-\(getpid()).ready"
        System.removeFile(readyFile)
        defer {
            System.removeFile(extentFile)
            System.removeFile(readyFile)
            if let pidFile { System.removeFile(pidFile) }
        }
        let export = exportName ?? record.key
        var arguments = ["-f", "--exit-with-parent", "-P", readyFile, "-e", export]
        if let socket { arguments += ["-U", System.absolutePath(socket)] }
        if let port { arguments += ["-p", String(port), "-i", bind ?? "127.0.0.1"] }
        if let tlsCertificates { arguments += ["--tls=require", "--tls-certificates=\(System.absolutePath(tlsCertificates))"] }
        if let tlsPSK { arguments += ["--tls=require", "--tls-psk=\(System.absolutePath(tlsPSK))"] }
        if let extents {
            try System.writeFile(extentFile, extents.extentList)
            arguments += ["-r", "--filter=extentlist", "file", "file=\(device)", "extentlist=\(extentFile)"]
        } else {
            arguments += ["--filter=limit", "file", "file=\(device)", "limit=1"]
        }
        let address = uri(export: export)
        let announce = pidFile
        let status: Int32
        do {
            status = try await ExternalCommand.runForwardingSignals(Program.nbdkit, arguments, ready: readyFile) {
                Console.out(address)
                if let announce { try? System.writeFile(announce, "\(getpid())\n") }
            }
        } catch {
            throw ThinError(.backendFailure, "cannot run nbdkit: \(error)")
        }
        if let socket { System.removeFile(System.absolutePath(socket)) }
        guard CancelSignals.received != nil || status == 0 else {
            throw ThinError(.backendFailure, "nbdkit exited with status \(status) serving \(record.key) (see its messages above)")
        }
        return 0
    }

    /// Starts this same command without --detach in its own session, waits
    /// until it accepts connections (its pid file appears), and prints where.
    private func startInBackground() async throws(ThinError) -> Int32 {
        let pidPath = System.absolutePath(pidFile ?? Paths.servePidFile(getpid()))
        let log = Paths.serveLog(getpid())
        try System.makeDirectories(Paths.runRoot)
        var arguments = [Self.toolName, "--pid-file", pidPath]
        if let socket { arguments += ["--socket", System.absolutePath(socket)] }
        if let port { arguments += ["--port", String(port)] }
        if let bind { arguments += ["--bind", bind] }
        if writable { arguments.append("--writable") }
        if let tlsCertificates { arguments += ["--tls-certificates", System.absolutePath(tlsCertificates)] }
        if let tlsPSK { arguments += ["--tls-psk", System.absolutePath(tlsPSK)] }
        if let exportName { arguments += ["--export-name", exportName] }
        if output.verbose { arguments.append("--verbose") }
        arguments += ["--", volume.target.sr, volume.vdi]
        let child: Int32
        let uriFile = Paths.serveURIFile(getpid())
        defer { System.removeFile(uriFile) }
        do {
            child = try ExternalCommand.spawnDetached("/proc/self/exe", arguments, standardOutput: uriFile, standardError: log)
        } catch {
            throw ThinError(.backendFailure, "cannot start the server: \(error)")
        }
        for _ in 0..<600 {
            if System.exists(pidPath) {
                // The server prints its URI (with the volume's key) before it writes the pid file.
                let address = System.readFile(uriFile)?.split(separator: "\n").first.map(String.init)
                    ?? uri(export: exportName ?? volume.vdi)
                if output.json {
                    Console.printJSON(ServeJSON(uri: address, pid: child, pid_file: pidPath))
                } else {
                    Console.out(address)
                    Console.out(pidPath)
                }
                System.removeFile(log)
                return 0
            }
            if let status = ExternalCommand.exitStatus(ofChild: child) {
                let message = System.readFile(log).map { messageLine($0, last: true) } ?? "no message"
                System.removeFile(log)
                // The child said why in the tools' own words ("thinvdi-serve: ..."): pass it on, with its code.
                throw ThinError(ErrorCode.allCases.first { $0.exitStatus == status } ?? .backendFailure,
                                message.hasPrefix("\(Self.toolName): ") ? String(message.dropFirst(Self.toolName.count + 2))
                                    : "the server exited with status \(status): \(message)")
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        kill(child, SIGTERM)
        throw ThinError(.backendFailure, "the server did not start within 30 s and was stopped; see \(log)")
    }
}

struct ServeJSON: Encodable {
    var uri: String
    var pid: Int32
    var pid_file: String
}

extension AttachedSR {
    /// Runs `body`, then closes the SR.
    func withClose<T>(_ body: (AttachedSR) throws(ThinError) -> T) throws(ThinError) -> T {
        defer { close() }
        return try body(self)
    }
}
