import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// What `thinvdi-export` was asked for.
public struct ExportRequest: Sendable {
    public var volume: String
    /// The image to write; "-" for a raw image on standard output.
    public var file: String
    public var format: DiskFormat
    public var base: String?
    public var baseImage: String?

    public init(volume: String, file: String, format: DiskFormat, base: String?, baseImage: String?) {
        self.volume = volume
        self.file = file
        self.format = format
        self.base = base
        self.baseImage = baseImage
    }

    var toStandardOutput: Bool { file == "-" }
    /// A block device is written in place (no temporary name, nothing to rename).
    var inPlace: Bool { toStandardOutput || System.blockDevice(file) != nil }
}

/// What an export wrote.
public struct ExportOutcome: Sendable {
    public let volume: VolumeRecord
    public let extents: ExportExtents
    /// How the image names its backing file (an export against a base).
    public let backingFile: String?
    /// The image was written, but where it went could not be recorded for a later --base.
    public let recordFailure: ThinError?
}

/// An export as a job: the extents and the lease in one phase, the copy by
/// nbdkit (with the pool's block status) and qemu-img or nbdcopy without
/// the SR lock, the lease released in a last phase. The image is written
/// under a temporary name and renamed over the file when whole.
public struct ExportJob: Sendable {
    public let context: JobContext

    public init(_ context: JobContext) { self.context = context }

    public func run(_ request: ExportRequest) async throws(ThinError) -> ExportOutcome {
        let (lease, (extents, backing)) = try await VolumeLease.acquire(request.volume, mode: .reading, context: context) {
            sr throws(ThinError) in
            let extents = try await sr.exportExtents(of: request.volume, since: request.base)
            var backing: (name: String, format: String)?
            if let base = request.base { backing = try await ExportBase.resolve(base, for: request, in: sr) }
            return (extents, backing)
        }
        let volume = lease.volume
        try await lease.whileHeld { lease throws(ThinError) in
            try await copy(request, from: lease, extents: extents, backing: backing)
        }
        var recordFailure: ThinError?
        if !request.toStandardOutput {
            do { try ExportRecords.remember(sr: lease.names, volume: volume, image: System.absolutePath(request.file)) }
            catch { recordFailure = error }
        }
        return ExportOutcome(volume: volume, extents: extents, backingFile: backing?.name, recordFailure: recordFailure)
    }

    /// Writes the image: a file under a temporary name, renamed over the
    /// file when whole and removed on every other path.
    private func copy(_ request: ExportRequest, from lease: VolumeLease, extents: ExportExtents,
                      backing: (name: String, format: String)?) async throws(ThinError) {
        let extentFile = lease.scratchFile("export", "extents")
        try System.writeFile(extentFile, extents.extentList)
        context.progress.begin("export", total: extents.dataBytes)
        let target = request.inPlace ? request.file : try ExclusiveFile.create(besides: request.file, tag: "thinvdi-export")
        do throws(ThinError) {
            if try await needsFallback(request) {
                try await copyWithoutNBD(request, from: lease, extents: extents, target: target)
            } else {
                try await runEngine(request, from: lease, extentFile: extentFile, total: extents.dataBytes, target: target,
                                    backing: backing)
            }
            if !request.inPlace { try System.rename(target, to: request.file) }
        } catch {
            if !request.inPlace { System.removeFile(target) }
            throw error
        }
        context.progress.finish()
    }

    /// nbdkit serving the device with the extent list, running the engine that writes `target`.
    private func runEngine(_ request: ExportRequest, from lease: VolumeLease, extentFile: String, total: UInt64,
                           target: String, backing: (name: String, format: String)?) async throws(ThinError) {
        let (engine, stream) = try engineLine(request, target: target, backing: backing)
        let arguments = ["-U", "-", "-r", "--exit-with-parent", "--filter=extentlist", "file", "file=\(lease.device)",
                         "extentlist=\(extentFile)", "--run", engine]
        let progress = context.progress
        let result: ExternalCommandResult
        do {
            result = try await context.system.runEngine(Program.nbdkit, arguments, progressOn: stream) {
                progress.update(done: UInt64(Double(total) * min(max($0, 0), 1)))
            }
        } catch {
            throw ThinError(.backendFailure, "cannot run nbdkit: \(error)")
        }
        if context.cancelled {
            throw cancelled("export of \(lease.volume.key)" + (request.inPlace ? "" : "; \(request.file) is unchanged"))
        }
        guard result.exitStatus == 0 else {
            throw ThinError(.backendFailure, "export of \(lease.volume.key) failed: \(messageLine(result.standardError, last: true))")
        }
    }

    /// The command nbdkit --run runs (through /bin/sh) on its export's
    /// "$uri", and where that engine reports progress.
    private func engineLine(_ request: ExportRequest, target: String, backing: (name: String, format: String)?)
        throws(ThinError) -> (String, ExternalCommand.ProgressStream) {
        if request.toStandardOutput {
            return (shellQuoted(try context.located(.nbdcopy)) + " --progress=2 \"$uri\" -", .standardError)
        }
        var words = [try context.located(.qemuImage), "convert", "-p", "-f", "raw"]
        if let backing { words += ["-B", backing.name, "-F", backing.format] }
        if request.inPlace { words.append("-n") }
        words += ["-O", request.format.rawValue] + request.format.image.creationOptions
        return (words.map(shellQuoted).joined(separator: " ") + " \"$uri\" " + shellQuoted(target), .standardOutput)
    }
}

/// Where the host has no nbdkit with its extentlist filter (XCP-ng's nbdkit
/// package has no filters), or no nbdcopy for standard output, the export
/// writes the pool's extents itself: sparse raw, converted by qemu-img for
/// the other formats.
extension ExportJob {
    func needsFallback(_ request: ExportRequest) async throws(ThinError) -> Bool {
        let hasFilters = await context.system.nbdkitFilters().contains("extentlist")
        let ready = hasFilters && context.system.path(of: .nbdkit) != nil
            && (!request.toStandardOutput || context.system.path(of: .nbdcopy) != nil)
        if !ready, request.base != nil {
            throw ThinError(.notAvailable, "an export against a base (--base) needs nbdkit with its extentlist filter, "
                            + "which this host lacks; install nbdkit's filters, or export the whole volume")
        }
        return !ready
    }

    func copyWithoutNBD(_ request: ExportRequest, from lease: VolumeLease, extents: ExportExtents,
                        target: String) async throws(ThinError) {
        let progress = context.progress
        let cancellation = context.cancellation
        let what = "export of \(lease.volume.key)" + (request.inPlace ? "" : "; \(request.file) is unchanged")
        guard request.format != .raw else {
            do {
                try context.system.writeExtents(of: lease.device, runs: extents.runs, size: extents.virtualSize,
                                                to: target, progress: { progress.update(done: $0) },
                                                stop: { cancellation.isRequested })
            } catch where error.code == .cancelled { throw cancelled(what) }
            return
        }
        // Sparse raw beside the image, then qemu-img (it reads the holes as holes).
        let raw = try ExclusiveFile.create(besides: request.inPlace ? lease.scratchFile("export", "raw") : request.file,
                                           tag: "thinvdi-export-raw")
        defer { System.removeFile(raw) }
        do {
            try context.system.writeExtents(of: lease.device, runs: extents.runs, size: extents.virtualSize, to: raw,
                                            progress: { progress.update(done: $0 / 2) }, stop: { cancellation.isRequested })
        } catch where error.code == .cancelled { throw cancelled(what) }
        var arguments = ["convert", "-p", "-f", "raw"]
        if request.inPlace { arguments.append("-n") }
        arguments += ["-O", request.format.rawValue] + request.format.image.creationOptions + [raw, target]
        let total = extents.dataBytes
        let result: ExternalCommandResult
        do {
            result = try await context.system.runEngine(.qemuImage, arguments, progressOn: .standardOutput) {
                progress.update(done: total / 2 + UInt64(Double(total / 2) * min(max($0, 0), 1)))
            }
        } catch { throw ThinError.backend("cannot run qemu-img", error) }
        if context.cancelled { throw cancelled(what) }
        guard result.exitStatus == 0 else {
            throw ThinError(.backendFailure, "export of \(lease.volume.key) failed: \(messageLine(result.standardError, last: true))")
        }
    }
}

/// Shell words for nbdkit --run, which runs its command through /bin/sh.
func shellQuoted(_ word: String) -> String { "'" + word.replacing("'", with: "'\\''") + "'" }

/// The base of an incremental export: the image this host last exported
/// the base snapshot to (or the one given), checked to be that snapshot's.
enum ExportBase {
    /// How the new image names the base's image (its file name when both
    /// lie in one directory, so the pair can move together) and its format.
    static func resolve(_ snapshot: String, for request: ExportRequest,
                        in sr: AttachedSR) async throws(ThinError) -> (name: String, format: String) {
        let baseVolume = try sr.requireVolume(snapshot)
        guard let image = request.baseImage ?? ExportRecords.lastExport(sr: sr.names, volume: baseVolume) else {
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
        let file = request.file
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

    private static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func fileName(of path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }
}
