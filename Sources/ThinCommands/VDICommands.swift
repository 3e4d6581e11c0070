public import ArgumentParser
public import ThinCore

public struct VDICreate: WholeSRTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-create",
        abstract: "Create a thin volume (VDI) in an attached SR.",
        discussion: """
            Creates a thin volume of the given virtual size; no space is used until data is written. The \
            volume's key is derived from its name (characters outside A-Z a-z 0-9 . _ + - dropped, ~N added \
            for uniqueness) and never changes. Prints the key. With --preallocate, the volume is a plain \
            linear LV beside the pool instead (all its space taken now, from the VG's free extents; the \
            fastest data path), zeroed before it is used: a bar on a terminal, or --progress=json. SIGINT \
            or SIGTERM, or thinvdi-destroy of the volume from another shell, cancels the zeroing and \
            removes the volume; a create killed outright is removed by the SR's next operation. A \
            preallocated volume attaches, resizes (the new part zeroed), exports, imports and is destroyed \
            as a thin one; it cannot be snapshotted, cloned, reverted or track changed blocks.
            """)
    public static let examples = [("thinvdi-create vmstore --name web01-root --size 20G", "Create a 20 GiB volume."),
                                  ("thinvdi-create vmstore --name db01-data --size 100G --preallocate",
                                   "Create a 100 GiB raw LV, zeroed, beside the pool.")]
    public static let extraExitStatuses: [(Int32, String)] = [
        (130, "the zeroing of --preallocate was cancelled; nothing was kept"),
    ]

    @OptionGroup public var target: SRArgument
    @Option(help: "The volume's name label.") var name: String
    @Option(help: ArgumentHelp("Virtual size, in bytes or with a K, M, G or T suffix.", valueName: "size"),
            transform: ByteCount.parser("size"))
    var size: ByteCount
    @Option(help: "The volume's description.") var description: String = ""
    @Flag(help: "Mark the volume sharable between VMs.") var sharable = false
    @Flag(help: "Make a preallocated raw volume: a linear LV beside the pool, zeroed before use.")
    var preallocate = false
    @OptionGroup var progressOptions: ProgressOptions
    var progress: ProgressMode? { progressOptions.progress }
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        guard preallocate else {
            let sr = try AttachedSR.open(reference, for: .write, host: host)
            defer { sr.close() }
            try await execute(on: sr)
            return 0
        }
        let (volume, view) = try await ZeroingJob(jobContext(sr: target.sr, host: host, progress: progress))
            .createPreallocated(name: name, description: description, sizeBytes: size.bytes, sharable: sharable,
                                keepFilling: false, describe: output.json)
        printVolume(volume, view: view, json: output.json)
        return 0
    }

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let volume = try sr.volumes.createVolume(name: name, description: description, sizeBytes: size.bytes, sharable: sharable)
        try await printVolume(volume, of: sr, json: output.json)
    }
}

public struct VDIDestroy: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-destroy",
        abstract: "Destroy a volume and free its blocks.",
        discussion: """
            Refuses while the volume is attached. A volume still being filled by another process (an \
            import, or the zeroing of thinvdi-create --preallocate) is cancelled: that process is sent \
            SIGTERM, removes the volume itself, and this waits for it (up to a minute).
            """)
    public static let examples = [("thinvdi-destroy vmstore web01-root", "Destroy the volume.")]

    @OptionGroup public var volume: VolumeArgument
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        try await DestroyJob(sr: reference, host: host).run(volume.vdi)
        if output.json { Console.out("null") }
        return 0
    }

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        try sr.volumes.destroyVolume(volume.vdi)
        if output.json { Console.out("null") }
    }
}

public struct VDIStat: VolumeTool {
    public static let access = ToolAccess.read
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-stat",
        abstract: "Show one volume.",
        discussion: "With --json, prints an SMAPIv3 volume record with thinsr's own fields.")
    public static let examples = [("thinvdi-stat vmstore web01-root", "Show the volume.")]

    @OptionGroup public var volume: VolumeArgument
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let view = VolumeJSON(try await sr.volumes.view(of: try sr.requireVolume(volume.vdi, allowingTemplate: true)))
        if output.json { return Console.printJSON(view) }
        let thinID: String = view.thin_id.map { String($0) }
            ?? (view.preallocated ? "none (preallocated: LV \(view.raw_lv ?? "?"))" : "none (its data was destroyed)")
        var template: [(String, String)] = []
        if let uri = view.template_uri { template += [("template uri", uri), ("template format", view.template_format ?? "?")] }
        if let origin = view.origin_template { template.append(("reads template", origin + (view.hydrating ? " (hydrating)" : ""))) }
        let extra: [(String, String)] = view.keys.sorted(by: { $0.key < $1.key }).map { ("key \($0.key)", $0.value) }
        Console.fields([
            ("key", view.key), ("uuid", view.uuid), ("name", view.name), ("description", view.description),
            ("kind", view.kind), ("read write", view.read_write ? "yes" : "no"),
            ("sharable", view.sharable ? "yes" : "no"),
            ("virtual size", "\(ByteSize.format(view.virtual_size)) (\(view.virtual_size) bytes)"),
            ("physical utilisation", "\(ByteSize.format(view.physical_utilisation)) (\(view.physical_utilisation) bytes)"),
            ("thin id", thinID), ("created", view.created),
            ("uri", view.uri.joined(separator: " ")),
            ("device", view.device_path.map { $0 + (view.attached_read_only == true ? " (read-only)" : "") } ?? "-"),
        ] + template + extra)
    }
}

public struct VDIList: WholeSRTool {
    public static let access = ToolAccess.read
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-ls",
        abstract: "List the volumes in an attached SR.")
    public static let examples = [("thinvdi-ls vmstore", "List volumes."), ("thinvdi-ls --json vmstore", "As JSON.")]

    @OptionGroup public var target: SRArgument
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let views = try await sr.volumes.volumeViews().map(VolumeJSON.init)
        if output.json { return Console.printJSON(views) }
        Console.table(["KEY", "NAME", "KIND", "SIZE", "USED", "DEVICE"], views.map {
            [$0.key, String($0.name.prefix(40)).split(whereSeparator: \.isNewline).joined(separator: " "), $0.kind,
             ByteSize.format($0.virtual_size), ByteSize.format($0.physical_utilisation), $0.device_path ?? "-"]
        })
    }
}

public struct VDIAttach: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-attach",
        abstract: "Attach a volume as a block device and print its path.",
        discussion: """
            Creates the volume's device-mapper device and the link /dev/thinsr/<sr-uuid>/<key>. Attaching \
            an attached volume in the same mode succeeds and prints the same path. With --inactive, the \
            device is made without the volume in it, as Datapath.attach needs: it has the volume's size, \
            every I/O to it fails, and it opens no thin device. A later thinvdi-attach without --inactive \
            loads the volume into it, read-write or read-only. A 0-byte volume's device is a node without \
            a table, which cannot be opened. With --holder, the attach is counted for that holder (xapi's \
            datapath passes its domain): several holders share one read-only device, and thinvdi-detach \
            --holder removes it only when the last holder has gone.
            """)
    public static let examples = [("thinvdi-attach vmstore web01-root", "Attach read-write; prints the device path."),
                                  ("thinvdi-attach --read-only vmstore web01-root", "Attach read-only."),
                                  ("thinvdi-attach --inactive vmstore web01-root",
                                   "Make the device node only; attach again to activate it."),
                                  ("thinvdi-attach --read-only --holder backup1 vmstore nightly-1",
                                   "Attach a snapshot for one of several readers.")]

    @OptionGroup public var volume: VolumeArgument
    @Flag(name: .customLong("read-only"), help: "Attach the block device read-only.") var readOnly = false
    @Flag(help: "Make the device without loading the volume (its I/O fails until a later attach).") var inactive = false
    @Option(help: ArgumentHelp("Count this attach for HOLDER (letters, digits, '.', '_', ':', '-'); the device stays "
                               + "until every holder has detached.", valueName: "holder"))
    var holder: String?
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let (attached, path) = if let holder {
            try await sr.attachments.attachVolume(volume.vdi, readOnly: readOnly, inactive: inactive, holder: holder)
        } else {
            try await sr.attachments.attachVolume(volume.vdi, readOnly: readOnly, inactive: inactive)
        }
        if output.json {
            Console.printJSON(VolumeJSON(try await sr.volumes.view(of: attached)))
        } else {
            Console.out(path)
        }
    }
}

public struct VDIDetach: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-detach",
        abstract: "Detach a volume's block device.",
        discussion: """
            Flushes and removes the volume's device. Refuses while a process holds it open. Detaching a \
            detached volume succeeds. With --holder, only that holder lets go: the device is removed when \
            no other holder (see thinvdi-attach --holder) is left; without it, the volume is detached for \
            every holder.
            """)
    public static let examples = [("thinvdi-detach vmstore web01-root", "Detach the volume."),
                                  ("thinvdi-detach --holder backup1 vmstore nightly-1",
                                   "Let one reader go; the device stays for the others.")]

    @OptionGroup public var volume: VolumeArgument
    @Option(help: ArgumentHelp("Detach for HOLDER only; the device stays while other holders remain.",
                               valueName: "holder"))
    var holder: String?
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        if let holder {
            let remaining = try sr.attachments.detachVolume(volume.vdi, holder: holder)
            if !remaining.isEmpty && !output.json {
                Console.err("thinvdi-detach: \(volume.vdi) stays attached for \(remaining.joined(separator: ", "))")
            }
        } else {
            try sr.attachments.detachVolume(volume.vdi)
        }
        if output.json { Console.out("null") }
    }
}

/// Prints a volume: its record with --json, else its key (unless `quiet`).
func printVolume(_ volume: VolumeRecord, of sr: AttachedSR, json: Bool, quiet: Bool = false) async throws(ThinError) {
    if json {
        Console.printJSON(VolumeJSON(try await sr.volumes.view(of: volume)))
    } else if !quiet {
        Console.out(volume.key)
    }
}

/// Prints a volume a job returned: its view with --json, else its key (unless `quiet`).
func printVolume(_ volume: VolumeRecord, view: VolumeView?, json: Bool, quiet: Bool = false) {
    if json, let view {
        Console.printJSON(VolumeJSON(view))
    } else if !quiet {
        Console.out(volume.key)
    }
}
