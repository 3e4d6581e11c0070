public import ArgumentParser
public import ThinCore

public struct VDICreate: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-create",
        abstract: "Create a thin volume (VDI) in an attached SR.",
        discussion: """
            Creates a thin volume of the given virtual size; no space is used until data is written. The \
            volume's key is derived from its name (characters outside A-Z a-z 0-9 . _ + - dropped, ~N added \
            for uniqueness) and never changes. Prints the key.
            """)
    public static let examples = [("thinvdi-create vmstore --name web01-root --size 20G", "Create a 20 GiB volume.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @Option(help: "The volume's name label.") var name: String
    @Option(help: ArgumentHelp("Virtual size, in bytes or with a K, M, G or T suffix.", valueName: "size"))
    var size: String
    @Option(help: "The volume's description.") var description: String = ""
    @Flag(help: "Mark the volume sharable between VMs.") var sharable = false
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        let bytes = try ByteSize.parse(size)
        let repository = try AttachedSR.open(sr, exclusive: true)
        let volume = try repository.createVolume(name: name, description: description, sizeBytes: bytes,
                                                 sharable: sharable)
        try await printVolume(repository, key: volume.key, json: output.json)
    }
}

public struct VDIDestroy: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-destroy",
        abstract: "Destroy a volume and free its blocks.",
        discussion: "Refuses while the volume is attached.")
    public static let examples = [("thinvdi-destroy vmstore web01-root", "Destroy the volume.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @Argument(help: "The volume's key or uuid.", completion: Complete.volumes) var vdi: String
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        try AttachedSR.open(sr, exclusive: true).destroyVolume(vdi)
        if output.json { Console.out("null") }
    }
}

public struct VDIStat: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-stat",
        abstract: "Show one volume.",
        discussion: "With --json, prints an SMAPIv3 volume record with thinsr's own fields.")
    public static let examples = [("thinvdi-stat vmstore web01-root", "Show the volume.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @Argument(help: "The volume's key or uuid.", completion: Complete.volumes) var vdi: String
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        try Privileges.requireRoot(Self.toolName)
        let view = VolumeJSON(try await AttachedSR.open(sr, exclusive: false).volumeViews(vdi)[0])
        if output.json { return Console.printJSON(view) }
        Console.fields([
            ("key", view.key), ("uuid", view.uuid), ("name", view.name), ("description", view.description),
            ("kind", view.kind), ("read write", view.read_write ? "yes" : "no"),
            ("sharable", view.sharable ? "yes" : "no"),
            ("virtual size", "\(ByteSize.format(view.virtual_size)) (\(view.virtual_size) bytes)"),
            ("physical utilisation", "\(ByteSize.format(view.physical_utilisation)) (\(view.physical_utilisation) bytes)"),
            ("thin id", String(view.thin_id)), ("created", view.created), ("uri", view.uri.joined(separator: " ")),
            ("device", view.device_path.map { $0 + (view.attached_read_only == true ? " (read-only)" : "") } ?? "-"),
        ] + view.keys.sorted(by: { $0.key < $1.key }).map { ("key \($0.key)", $0.value) })
    }
}

public struct VDIList: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-ls",
        abstract: "List the volumes in an attached SR.")
    public static let examples = [("thinvdi-ls vmstore", "List volumes."), ("thinvdi-ls --json vmstore", "As JSON.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        try Privileges.requireRoot(Self.toolName)
        let views = try await AttachedSR.open(sr, exclusive: false).volumeViews().map(VolumeJSON.init)
        if output.json { return Console.printJSON(views) }
        Console.table(["KEY", "NAME", "KIND", "SIZE", "USED", "DEVICE"], views.map {
            [$0.key, String($0.name.prefix(40)).split(whereSeparator: \.isNewline).joined(separator: " "), $0.kind,
             ByteSize.format($0.virtual_size), ByteSize.format($0.physical_utilisation), $0.device_path ?? "-"]
        })
    }
}

public struct VDIAttach: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-attach",
        abstract: "Attach a volume as a block device and print its path.",
        discussion: """
            Creates the volume's device-mapper device and the link /dev/thinsr/<sr-uuid>/<key>. Attaching \
            an attached volume in the same mode succeeds and prints the same path.
            """)
    public static let examples = [("thinvdi-attach vmstore web01-root", "Attach read-write; prints the device path."),
                                  ("thinvdi-attach --read-only vmstore web01-root", "Attach read-only.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @Argument(help: "The volume's key or uuid.", completion: Complete.volumes) var vdi: String
    @Flag(name: .customLong("read-only"), help: "Attach the block device read-only.") var readOnly = false
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        let repository = try AttachedSR.open(sr, exclusive: true)
        let path = try repository.attachVolume(vdi, readOnly: readOnly)
        if output.json {
            Console.printJSON(VolumeJSON(try await repository.volumeViews(vdi)[0]))
        } else {
            Console.out(path)
        }
    }
}

public struct VDIDetach: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-detach",
        abstract: "Detach a volume's block device.",
        discussion: """
            Flushes and removes the volume's device. Refuses while a process holds it open. Detaching a \
            detached volume succeeds.
            """)
    public static let examples = [("thinvdi-detach vmstore web01-root", "Detach the volume.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @Argument(help: "The volume's key or uuid.", completion: Complete.volumes) var vdi: String
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        try AttachedSR.open(sr, exclusive: true).detachVolume(vdi)
        if output.json { Console.out("null") }
    }
}
