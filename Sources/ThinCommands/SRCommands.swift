public import ArgumentParser
import FoundationEssentials
public import ThinCore

public struct SRCreate: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-create",
        abstract: "Create a thin-provisioned storage repository (SR).",
        discussion: """
            With --device, the SR owns the given raw devices: they become LVM physical volumes in a new \
            volume group holding the SR's pool data, pool metadata, a metadata spare and a catalog. With \
            --vg, the SR lives in an existing volume group and never touches logical volumes that are not \
            tagged as its own; --pool-size is then required. The new SR is left attached. Prints the SR's \
            uuid.
            """)

    public static let examples = [
        ("thinsr-create --name vmstore --device /dev/sdb --device /dev/sdc",
         "Create an SR that owns two disks."),
        ("thinsr-create --name scratch --vg data --pool-size 200G", "Create a 200 GiB SR in the existing VG data."),
    ]

    @Option(help: "The SR's uuid (default: a new random uuid).")
    var uuid: String?
    @Option(help: "The SR's name label.")
    var name: String = ""
    @Option(help: "The SR's description.")
    var description: String = ""
    @Option(name: .customLong("device"), help: ArgumentHelp("A raw block device for the SR to own (repeatable).",
                                                            valueName: "device"),
            completion: .file())
    var devices: [String] = []
    @Option(help: ArgumentHelp("An existing volume group to create the SR in.", valueName: "vg"))
    var vg: String?
    @Option(name: .customLong("pool-size"),
            help: ArgumentHelp("Pool data size, in bytes or with a K, M, G or T suffix (default with --device: "
                               + "90% of the space left after metadata).", valueName: "size"))
    var poolSize: String?
    @Option(name: .customLong("block-size"),
            help: ArgumentHelp("Pool block size, 64K to 1G in multiples of 64K (default 64K).", valueName: "size"))
    var blockSize: String?
    @OptionGroup public var output: OutputOptions

    public init() {}

    public func execute() async throws(ThinError) {
        let placement: SRCreateRequest.Placement
        switch (devices.isEmpty, vg) {
        case (false, nil): placement = .devices(devices)
        case (true, let vg?): placement = .volumeGroup(vg)
        case (false, _?): throw ThinError(.invalidArgument, "give either --device or --vg, not both")
        case (true, nil): throw ThinError(.invalidArgument, "give --device DEV (own the disks) or --vg VG (use an existing volume group)")
        }
        var srUUID: UUID?
        if let uuid {
            guard let parsed = UUID(uuidString: uuid) else {
                throw ThinError(.invalidArgument, "\"\(uuid)\" is not a uuid (expected e.g. 6f1c1a52-3b1e-4c8e-9d0f-2a7b5c4d3e21)")
            }
            srUUID = parsed
        }
        let request = SRCreateRequest(
            uuid: srUUID, name: name, description: description, placement: placement,
            poolBytes: try poolSize.map { size throws(ThinError) in try ByteSize.parse(size, what: "pool size") },
            blockBytes: try blockSize.map { size throws(ThinError) in try ByteSize.parse(size, what: "block size") })
        let record = try await SRLifecycle.create(request)
        if output.json {
            Console.printJSON(SRStatJSON(try SRLifecycle.status(record.uuid.uuidString)))
        } else {
            Console.out(record.uuid.uuidString.lowercased())
        }
    }
}

public struct SRAttach: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-attach",
        abstract: "Attach an SR on this host.",
        discussion: """
            Activates the SR's logical volumes, checks the pool metadata with thin_check (refusing to \
            assemble a pool whose metadata fails), mounts the catalog, assembles the pool and finishes or \
            undoes any operation a crash interrupted. Attaching an attached SR succeeds and changes nothing. \
            Volumes stay detached.
            """)
    public static let examples = [("thinsr-attach vmstore", "Attach the SR named vmstore.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        let record = try await SRLifecycle.attach(sr)
        if output.json {
            Console.printJSON(SRStatJSON(try SRLifecycle.status(record.uuid.uuidString)))
        } else {
            Console.out(record.uuid.uuidString.lowercased())
        }
    }
}

public struct SRDetach: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-detach",
        abstract: "Detach an SR from this host.",
        discussion: """
            Removes the pool device, unmounts the catalog and deactivates the SR's logical volumes. Refuses \
            while volumes are attached unless --force, which detaches them first; a volume that a process \
            holds open is never detached. Detaching a detached SR succeeds and changes nothing.
            """)
    public static let examples = [("thinsr-detach vmstore", "Detach the SR."),
                                  ("thinsr-detach --force vmstore", "Detach it and any attached volumes.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @Flag(help: "Detach attached volumes first.") var force = false
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        try SRLifecycle.detach(sr, force: force)
        if output.json { Console.out("null") }
    }
}

public struct SRDestroy: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-destroy",
        abstract: "Destroy a detached SR and everything in it.",
        discussion: """
            Removes the SR's logical volumes; an SR that owns its devices also removes its volume group and \
            the devices' LVM labels. The SR must be detached first. Refuses while the SR holds volumes unless \
            --force.
            """)
    public static let examples = [("thinsr-detach vmstore && thinsr-destroy vmstore", "Destroy an empty SR."),
                                  ("thinsr-destroy --force vmstore", "Destroy it with all its volumes.")]

    @Argument(help: "The SR's uuid or unique name.") var sr: String
    @Flag(help: "Destroy the SR even though it holds volumes.") var force = false
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        try await SRLifecycle.destroy(sr, force: force)
        if output.json { Console.out("null") }
    }
}

public struct SRStat: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-stat",
        abstract: "Show an attached SR's state and space.",
        discussion: "Reads the pool's status from device-mapper and the SR's record from its catalog.")
    public static let examples = [("thinsr-stat vmstore", "Show the SR's space and health."),
                                  ("thinsr-stat --json vmstore", "The same as an SMAPIv3 sr_stat record.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        let stat = SRStatJSON(try SRLifecycle.status(sr))
        if output.json { return Console.printJSON(stat) }
        let bytes = { (value: UInt64?) in value.map { "\(ByteSize.format($0)) (\($0) bytes)" } ?? "-" }
        Console.fields([
            ("uuid", stat.uuid), ("name", stat.name), ("description", stat.description),
            ("health", stat.health[1].isEmpty ? stat.health[0] : "\(stat.health[0]): \(stat.health[1])"),
            ("mode", stat.mode), ("volume group", stat.volume_group), ("pool device", stat.pool_device),
            ("pool mode", stat.pool_mode), ("block size", ByteSize.format(stat.block_size)),
            ("data used", bytes(stat.data_used)), ("data total", bytes(stat.data_total)),
            ("metadata used", bytes(stat.metadata_used)), ("metadata total", bytes(stat.metadata_total)),
            ("free space", bytes(stat.free_space)),
            ("transaction id", stat.transaction_id.map(String.init) ?? "-"),
            ("on full", stat.on_full ?? "-"), ("needs check", stat.needs_check.map { $0 ? "yes" : "no" } ?? "-"),
            ("volumes", "\(stat.volume_count) (\(stat.attached_volume_count) attached)"), ("created", stat.created),
        ])
    }
}

public struct SRList: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-ls",
        abstract: "List the SRs this host can see, attached or not.",
        discussion: "Finds SRs by the LVM tags on their logical volumes.")
    public static let examples = [("thinsr-ls", "List SRs."), ("thinsr-ls --json", "List them as JSON.")]

    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        let summaries = try SRLifecycle.list().map(SRSummaryJSON.init)
        if output.json { return Console.printJSON(summaries) }
        Console.table(["UUID", "NAME", "VG", "MODE", "POOL", "ATTACHED"], summaries.map {
            [$0.uuid, $0.name, $0.volume_group, $0.mode, ByteSize.format($0.pool_size), $0.attached ? "yes" : "no"]
        })
    }
}

public struct SRSet: ToolCommand {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-set",
        abstract: "Change an attached SR's name or description.",
        discussion: "The SR's uuid never changes.")
    public static let examples = [("thinsr-set vmstore --name vmstore-ssd", "Rename the SR.")]

    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs) var sr: String
    @Option(help: "A new name label.") var name: String?
    @Option(help: "A new description.") var description: String?
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute() async throws(ThinError) {
        guard name != nil || description != nil else {
            throw ThinError(.invalidArgument, "nothing to set: give --name or --description")
        }
        let repository = try AttachedSR.open(sr, exclusive: true)
        try repository.setLabel(name: name, description: description)
        if output.json { Console.printJSON(SRStatJSON(try repository.status())) }
    }
}
