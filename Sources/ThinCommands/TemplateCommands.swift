public import ArgumentParser
public import ThinCore
#if canImport(Glibc)
import Glibc
#endif

public struct VDIIntroduce: WholeSRTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-introduce",
        abstract: "Register a read-only template image by URI; its clones start at once.",
        discussion: """
            The image stays where it is: nothing is copied. The URI is resolved by the scheme script \
            \(SchemeScripts.systemDirectory)/<scheme> (file and nbd are shipped; a scheme a+b uses the \
            script a; THINSR_SCHEME_DIR overrides the directory), which prints a local file or block \
            device; a URI the script refuses (its exit status 64) fails with exit status 64, an image it \
            cannot reach with 1. thinsr reads its format from its header (never a qemu probe; only self-contained images) unless --format is given, and qemu-img its size. The \
            template is read-only: only thinvdi-stat, -ls, -tree, -clone, -snapshot and thinvdi-forget apply to it \
            (anything else fails with VDI_IS_TEMPLATE, exit status 7). A clone of it reads the image \
            where it has no block of its own (the thin target's external origin) and writes to the pool; \
            thinvdi-hydrate copies the rest in so it no longer needs the image. The image must never \
            change while a volume reads it. Prints the template's key.
            """)
    public static let examples = [
        ("thinvdi-introduce vmstore file:///srv/images/debian-12.qcow2 --name debian-12",
         "Register a local qcow2 image."),
        ("thinvdi-introduce vmstore 'nbd+unix:///debian?socket=/run/images.sock' --format raw",
         "Register an NBD export."),
    ]

    @OptionGroup public var target: SRArgument
    @Argument(help: ArgumentHelp("The image's URI: file:///path, nbd://host[:port]/export, "
                                 + "nbd+unix:///export?socket=PATH, or any scheme with a script.", valueName: "uri"))
    var uri: String
    @Option(help: "The template's name label (default: the URI's last path element).") var name: String?
    @Option(help: "The template's description.") var description: String = ""
    @Option(help: ArgumentHelp("The image's format (default: read from its header).", valueName: "format"))
    var format: ImportFormat?
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let template = try await sr.templates.introduceTemplate(uri: uri, name: name, description: description,
                                                      declaredFormat: format?.image)
        try await printVolume(template, of: sr, json: output.json)
    }
}

public struct VDIForget: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-forget",
        abstract: "Deregister a template (its image is not touched).",
        discussion: """
            Refused (exit status 3) while any volume still reads the template's image: hydrate those \
            volumes with thinvdi-hydrate, or destroy them, first. A volume that is not a template is \
            refused too (destroy it with thinvdi-destroy).
            """)
    public static let examples = [("thinvdi-forget vmstore debian-12", "Forget the template.")]

    @OptionGroup public var volume: VolumeArgument
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        try sr.templates.forgetTemplate(volume.vdi)
        if output.json { Console.out("null") }
    }
}

public struct VDIHydrate: TransferTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-hydrate",
        abstract: "Copy a template clone's remaining template data into the pool, then drop the template.",
        discussion: """
            The kernel's dm-clone copies, region by region, every part of the volume it does not hold \
            yet, while the volume stays attached and in use (dm-clone orders the guest's writes with \
            the copying; it pauses while the guest does I/O, and --threshold bounds how much it copies \
            at once). Blocks the volume already holds are not copied again. When all is copied, the \
            volume's table drops the template's image and the catalog no longer ties the volume to the \
            template (thinvdi-forget is then allowed). SIGINT or SIGTERM stops it (exit status 130), \
            and so does a detach of the volume or of the SR; it leaves the volume reading the template \
            as before, and running it again resumes from what the volume holds, as it does after a crash. A volume that reads no template is \
            already whole: nothing is done. Snapshots of the volume still read the template.

            With --on-read it copies only what is read: dm-clone serves a read of template data from \
            the template, the kernel's statistics (dm-stats) on dm-clone's source say which regions \
            were read (or which groups of them, on a volume of more than 16384 regions), and every \
            fifth of a second dm-clone is made to copy them into the pool (the guest's I/O is held \
            while it does, at most 4 MiB at a time), so a second read is a read of the pool. It runs \
            until everything is copied (then it drops the template as above), or, with exit status 0, \
            until SIGINT or SIGTERM, a detach of the volume or the SR, or a change that needs the \
            volume alone: a resize or revert, or a thinvdi-hydrate without --on-read, which takes over. \
            What it copied stays in the volume. The datapath plugin starts it when xapi activates a \
            clone of a template.
            """)
    public static let examples = [("thinvdi-hydrate vmstore web01-root --progress", "Hydrate with a progress bar."),
                                  ("thinvdi-hydrate vmstore web01-root --threshold 4 &",
                                   "Hydrate gently, in the background."),
                                  ("thinvdi-hydrate vmstore web01-root --on-read &",
                                   "Copy template data into the pool as the guest reads it (copy-on-read).")]
    public static let extraExitStatuses: [(Int32, String)] = [
        (130, "stopped by SIGINT or SIGTERM; the volume reads the template as before and a later run resumes"),
    ]

    @OptionGroup public var volume: VolumeArgument
    @Option(help: ArgumentHelp("At most this many regions (pool blocks) copied at once (default 64).",
                               valueName: "regions"))
    var threshold: UInt32?
    @Flag(name: .customLong("on-read"), help: "Copy only what is read, as it is read (copy-on-read), until stopped.")
    var onRead = false
    @OptionGroup var progressOptions: ProgressOptions
    var progress: ProgressMode? { progressOptions.progress }
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func checkArguments() throws(ThinError) {
        if let threshold, threshold == 0 { throw ThinError(.invalidArgument, "--threshold must be at least 1 region") }
        if onRead, threshold != nil {
            throw ThinError(.invalidArgument, "--threshold bounds the background copying, which --on-read does not do; "
                            + "give one or the other")
        }
    }

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let outcome = try await HydrationJob(jobContext(sr: volume.target.sr, host: host, progress: progress))
            .run(volume.vdi, threshold: threshold ?? 64, onRead: onRead)
        switch outcome {
        case .nothingToHydrate:
            if output.json { Console.printJSON(HydrateJSON(volume: volume.vdi, hydrated: true, total_bytes: 0)) }
            else { Console.out("\(volume.vdi) reads no template: nothing to hydrate") }
        case .copiedOnRead(let key, let total, let bytes):
            if output.json {
                Console.printJSON(HydrateJSON(volume: key, hydrated: false, total_bytes: total, copied_on_read_bytes: bytes))
            } else {
                Console.out("\(key): \(ByteSize.format(bytes)) copied on read; it reads the rest from its template")
            }
        case .hydrated(let key, let total, let copiedOnRead):
            if output.json {
                Console.printJSON(HydrateJSON(volume: key, hydrated: true, total_bytes: total,
                                              copied_on_read_bytes: copiedOnRead))
            } else {
                Console.out("\(key) hydrated: it no longer reads its template")
            }
        }
        return 0
    }
}

struct HydrateJSON: Encodable {
    var volume: String
    var hydrated: Bool
    var total_bytes: UInt64
    var copied_on_read_bytes: UInt64? = nil
}
