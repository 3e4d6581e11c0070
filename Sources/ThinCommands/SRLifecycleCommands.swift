public import ArgumentParser
import FoundationEssentials
public import ThinCore

public struct SRCreate: LifecycleTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-create",
        abstract: "Create a thin-provisioned storage repository (SR).",
        discussion: """
            With --device, the SR owns the given raw devices: they become LVM physical volumes in a new \
            volume group holding the SR's pool data, pool metadata, a metadata spare, a catalog and the \
            catalog's copy, which takes every commit too (64 MiB each to start, 32 MiB in a VG under 4 GiB; \
            thinsr-extend grows them). With --vg, the SR lives in an existing volume group and never \
            touches logical volumes that are not tagged as its own; --pool-size is then required. An \
            own-the-world pool starts at half the VG (after catalog and metadata) unless --pool-size says \
            otherwise: a pool can grow online at any time (thinsr-monitor grows it at 80% used by default, \
            thinsr-extend on demand) but never shrink, and preallocated volumes need free extents. The new SR \
            is left attached. Prints the SR's uuid.
            """)

    public static let examples = [
        ("thinsr-create --name vmstore --device /dev/sdb --device /dev/sdc",
         "Create an SR that owns two disks."),
        ("thinsr-create --name scratch --vg data --pool-size 200G", "Create a 200 GiB SR in the existing VG data."),
    ]

    @Option(help: "The SR's uuid (default: a new random uuid).", transform: UUIDArgument.parse)
    var uuid: UUID?
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
                               + "half the space left after metadata; the rest stays free for thinsr-monitor to grow the pool into "
                               + "and for preallocated volumes).", valueName: "size"),
            transform: ByteCount.parser("pool size"))
    var poolSize: ByteCount?
    @Option(name: .customLong("block-size"),
            help: ArgumentHelp("Pool block size, 64K to 1G in multiples of 64K (default 64K).", valueName: "size"),
            transform: ByteCount.parser("block size"))
    var blockSize: ByteCount?
    @Option(name: .customLong("metadata-size"),
            help: ArgumentHelp("Pool metadata size, 2M to 15G (default: what thin_metadata_size gives for the "
                               + "whole volume group and 1,000 thin devices per GiB).", valueName: "size"),
            transform: ByteCount.parser("metadata size"))
    var metadataSize: ByteCount?
    @Option(name: .customLong("on-full"),
            help: ArgumentHelp("What writes do when the pool's data is full: queue (wait for thinsr-extend; the "
                               + "kernel fails them after 60 s) or error (fail at once).", valueName: "queue|error"))
    var onFull: OnFullPolicy = .queue
    @OptionGroup public var output: OutputOptions

    public init() {}

    public func checkArguments() throws(ThinError) {
        switch (devices.isEmpty, vg) {
        case (false, _?): throw ThinError(.invalidArgument, "give either --device or --vg, not both")
        case (true, nil): throw ThinError(.invalidArgument, "give --device DEV (own the disks) or --vg VG (use an existing volume group)")
        default: break
        }
    }

    public func execute(_ lifecycle: SRLifecycle) async throws(ThinError) {
        let request = SRCreateRequest(
            uuid: uuid, name: name, description: description,
            placement: vg.map { .volumeGroup($0) } ?? .devices(devices), poolBytes: poolSize?.bytes,
            blockBytes: blockSize?.bytes, metadataBytes: metadataSize?.bytes, onFull: onFull)
        let sr = try await lifecycle.create(request)
        defer { sr.close() }
        try printSR(sr, json: output.json)
    }
}

/// Prints an SR: its `thinsr-stat --json` record with --json, else its uuid.
func printSR(_ sr: AttachedSR, json: Bool) throws(ThinError) {
    if json { Console.printJSON(SRStatJSON(try sr.administration.status())) } else { Console.out(sr.names.uuidString) }
}

public struct SRAttach: LifecycleTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-attach",
        abstract: "Attach an SR on this host.",
        discussion: """
            Activates the SR's logical volumes, checks the pool metadata with thin_check (refusing to \
            assemble a pool whose metadata fails), mounts the catalog, assembles the pool and finishes or \
            undoes any operation a crash interrupted. Attaching an attached SR succeeds and changes nothing. \
            Volumes stay detached. An SR whose volume group carries another host's LVM system ID is refused \
            (Activated_on_another_host, naming the owner): two hosts must never run the same pool. When that \
            host is down for good or has detached the SR, --take-over gives the volume group this host's \
            system ID (vgchange --systemid) and attaches it.
            """)
    public static let examples = [("thinsr-attach vmstore", "Attach the SR named vmstore."),
                                  ("thinsr-attach --take-over vmstore",
                                   "Attach an SR whose previous host failed, taking over its volume group.")]

    @OptionGroup public var target: SRArgument
    @Flag(name: .customLong("take-over"),
          help: "Take over an SR another host owns (only when that host no longer uses it).")
    var takeOver = false
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(_ lifecycle: SRLifecycle) async throws(ThinError) {
        let sr = try await lifecycle.attach(target.sr, takeOver: takeOver)
        defer { sr.close() }
        try printSR(sr, json: output.json)
    }
}

public struct SRDetach: LifecycleTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-detach",
        abstract: "Detach an SR from this host.",
        discussion: """
            Removes the pool device, unmounts the catalog and deactivates the SR's logical volumes, after \
            finishing any operation a crash interrupted. Refuses while volumes are attached unless --force. \
            --force detaches attached volumes first, and tears the SR down even when its pool has failed or \
            its catalog and pool disagree (it says so on stderr; run thinsr-check --repair before attaching \
            again). A volume that a process holds open is reported and the SR stays attached, unless --force \
            is given twice: then that volume's device fails all further I/O and goes when it is closed. \
            Detaching a detached SR succeeds and changes nothing.
            """)
    public static let examples = [("thinsr-detach vmstore", "Detach the SR."),
                                  ("thinsr-detach --force vmstore", "Detach it and any attached volumes, even if its "
                                   + "pool has failed."),
                                  ("thinsr-detach --force --force vmstore",
                                   "Also take away volumes that processes hold open (their I/O fails).")]

    @OptionGroup public var target: SRArgument
    @Flag(name: .long, help: "Detach attached volumes first and tear down a failed pool; twice: open volumes too.")
    var force: Int
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(_ lifecycle: SRLifecycle) async throws(ThinError) {
        let warnings = try lifecycle.detach(target.sr, force: SRLifecycle.DetachForce(count: force))
        for warning in warnings { Console.err("thinsr-detach: warning: \(warning.terminalSafe)") }
        if output.json { Console.out("null") }
    }
}

public struct SRDestroy: LifecycleTool {
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

    // No completion: the SR to destroy is detached, and completion knows attached SRs only.
    @Argument(help: "The SR's uuid or unique name.") var sr: String
    @Flag(help: "Destroy the SR even though it holds volumes.") var force = false
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(_ lifecycle: SRLifecycle) async throws(ThinError) {
        try await lifecycle.destroy(sr, force: force)
        if output.json { Console.out("null") }
    }
}

public struct SRList: LifecycleTool {
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-ls",
        abstract: "List the SRs this host can see, attached or not.",
        discussion: "Finds SRs by the LVM tags on their logical volumes.")
    public static let examples = [("thinsr-ls", "List SRs."), ("thinsr-ls --json", "List them as JSON.")]

    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(_ lifecycle: SRLifecycle) async throws(ThinError) {
        let summaries = try lifecycle.list().map(SRSummaryJSON.init)
        if output.json { return Console.printJSON(summaries) }
        Console.table(["UUID", "NAME", "VG", "MODE", "POOL", "OWNER", "ATTACHED"], summaries.map {
            [$0.uuid, $0.name, $0.volume_group, $0.mode, ByteSize.format($0.pool_size),
             $0.owner.isEmpty ? "-" : $0.owner, $0.attached ? "yes" : "no"]
        })
    }
}
