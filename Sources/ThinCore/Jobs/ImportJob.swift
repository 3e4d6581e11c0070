import ThinTools

/// What `thinvdi-import` was asked for.
public struct ImportRequest: Sendable {
    public var name: String
    public var description: String
    /// The image to read; "-" for a raw stream on standard input.
    public var file: String
    public var format: DiskFormat?
    public var backing: [String]
    /// The volume's size (for "-", the stream's exact length).
    public var size: UInt64?
    public var preallocate: Bool
    /// Return the imported volume's view (for --json).
    public var describe: Bool

    public init(name: String, description: String, file: String, format: DiskFormat?, backing: [String],
                size: UInt64?, preallocate: Bool, describe: Bool) {
        self.name = name
        self.description = description
        self.file = file
        self.format = format
        self.backing = backing
        self.size = size
        self.preallocate = preallocate
        self.describe = describe
    }
}

/// What an import made.
public struct ImportOutcome: Sendable {
    public let volume: VolumeRecord
    public let view: VolumeView?
    /// The volume was imported but could not be detached afterwards.
    public let detachFailure: ThinError?
}

/// An import as a job: the image inspected before anything is made, the
/// volume made and attached for this process in one phase (marked with this
/// process as its owner, so a killed import is removed by the next writer),
/// filled without the SR lock, then finished or removed in a last phase.
public struct ImportJob: Sendable {
    public let context: JobContext

    public init(_ context: JobContext) { self.context = context }

    public func run(_ request: ImportRequest) async throws(ThinError) -> ImportOutcome {
        let inspection = try await ImportInspection(context: context).inspect(request)
        let volumeSize = max(request.size ?? 0, inspection.virtualSize)
        let (volume, device) = try await begin(request, sizeBytes: volumeSize, allocatedBytes: inspection.allocatedBytes)
        let total = request.file == "-" ? 0
            : inspection.allocatedBytes > 0 ? inspection.allocatedBytes : inspection.virtualSize
        context.progress.begin("import", total: total)
        let failure = context.cancelled ? cancelled("import")
            : await fill(device, from: request, image: inspection.image, size: volumeSize, total: total)
        return try await context.phase { sr throws(ThinError) in
            if let failure {
                try sr.abandonImport(volume)
                throw failure
            }
            let (imported, detachFailure) = try sr.finishImport(volume)
            context.progress.finish()
            return ImportOutcome(volume: imported, view: request.describe ? try await sr.volumes.view(of: imported) : nil,
                                 detachFailure: detachFailure)
        }
    }

    /// The volume the import fills, attached read-write for this process: a
    /// thin one, or a preallocated one zeroed first.
    private func begin(_ request: ImportRequest, sizeBytes: UInt64,
                       allocatedBytes: UInt64) async throws(ThinError) -> (VolumeRecord, String) {
        guard request.preallocate else {
            return try await context.phase { sr throws(ThinError) in
                try await sr.beginImport(name: request.name, description: request.description, sizeBytes: sizeBytes,
                                         allocatedBytes: allocatedBytes)
            }
        }
        let (volume, _) = try await ZeroingJob(context).createPreallocated(
            name: request.name, description: request.description, sizeBytes: sizeBytes, sharable: false,
            keepFilling: true)
        return try await context.phase { sr throws(ThinError) in
            do throws(ThinError) { return try await sr.preallocated.attachForImport(volume) } catch {
                try? sr.abandonImport(volume)
                throw error
            }
        }
    }

    /// Copies the image (or standard input) onto the device; returns the
    /// failure, or nil when every byte arrived.
    private func fill(_ device: String, from request: ImportRequest, image: InspectedImage,
                      size volumeSize: UInt64, total: UInt64) async -> ThinError? {
        let progress = context.progress
        if request.file == "-" {
            do {
                let arrived = try context.system.copyStandardInput(toDevice: device, limit: volumeSize) {
                    progress.update(done: $0)
                }
                if context.cancelled { return cancelled("import") }
                guard arrived >= volumeSize else {
                    // A producer that died ends its stream early: that is not the image.
                    return ThinError(.invalidArgument, "standard input ended after \(arrived) of the \(volumeSize) bytes "
                                     + "--size gives (did its producer fail?); nothing was imported: give the "
                                     + "stream's exact size with --size")
                }
                return nil
            } catch {
                return error
            }
        }
        do {
            let result = try await context.system.runEngine(
                Program.qemuImage, ["convert", "-p", "-n", "--target-is-zero"] + image.qemuSource + ["-O", "raw", device],
                progressOn: .standardOutput) { progress.update(done: UInt64(Double(total) * min(max($0, 0), 1))) }
            if context.cancelled { return cancelled("import") }
            guard result.exitStatus == 0 else {
                return ThinError(.invalidArgument, "\(request.file) could not be read to its end (truncated or damaged?): "
                                 + messageLine(result.standardError, last: true))
            }
            return nil
        } catch {
            return ThinError(.backendFailure, "cannot run qemu-img: \(error)")
        }
    }
}

/// The image an import reads, checked before anything is made: its format
/// (read from its header by thinsr, never a qemu probe), virtual size and
/// allocated bytes; what is not a readable, consistent, self-contained
/// image is refused.
struct ImportInspection {
    let context: JobContext
    var image = InspectedImage(layers: [])
    var virtualSize: UInt64 = 0
    var allocatedBytes: UInt64 = 0

    init(context: JobContext) { self.context = context }

    func inspect(_ request: ImportRequest) async throws(ThinError) -> ImportInspection {
        var result = self
        let file = request.file
        guard file != "-" else {
            result.image = InspectedImage(layers: [.init(path: "-", format: .raw)])
            result.virtualSize = request.size ?? 0
            return result
        }
        do { result.image = try ImageInspector.inspect(file, declared: request.format?.image, backing: request.backing) } catch {
            throw ThinError(.invalidArgument, error.message)
        }
        let image = result.image
        // An image with no header is raw; a real raw disk image is whole sectors.
        if request.format == nil, image.format == .raw, System.blockDevice(file) == nil,
           let length = System.fileLength(file), length % 512 != 0 || length == 0 {
            throw ThinError(.invalidArgument, "\(file) is not a disk image (\(length) bytes of unrecognised data); "
                            + "give --format raw to import it as raw data anyway")
        }
        let info: ImageInfo
        do { info = try await DiskImages.info(image) } catch {
            if context.cancelled { throw cancelled("import") }
            throw ThinError(.invalidArgument, "\(file) is not a \(image.format.rawValue) image qemu-img can read: "
                            + messageLine(error.standardError, last: true))
        }
        result.virtualSize = info.virtualSize
        let problem: String?
        do { problem = try await DiskImages.problem(image) } catch {
            throw ThinError(.backendFailure, "cannot check \(file): \(error)")
        }
        if context.cancelled { throw cancelled("import") }
        if let problem { throw ThinError(.invalidArgument, "\(file) is damaged: \(problem); repair it with qemu-img check -r") }
        do {
            // qemu's vhdx driver reports no allocation (every block reads as data):
            // its estimate cannot refuse an import, the pool's own limits then apply.
            result.allocatedBytes = image.format.reportsAllocation ? try await DiskImages.allocatedBytes(image) : 0
            return result
        } catch {
            if context.cancelled { throw cancelled("import") }
            throw ThinError(.invalidArgument, "\(file) cannot be mapped (truncated or damaged?): "
                            + messageLine(error.standardError, last: true))
        }
    }
}
