public import ArgumentParser
public import ThinCore
import FoundationEssentials

public struct VDISnapshot: VolumeCopyTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-snapshot",
        abstract: "Take a read-only snapshot of a volume.",
        discussion: """
            Works on any volume, snapshot or clone, at any depth, and takes no space until the origin \
            changes. An attached origin is suspended for the moment of the snapshot, so the snapshot holds \
            everything written before it. The snapshot copies the name and description, not the keys. \
            Prints the snapshot's key.
            """)
    public static let examples = [("thinvdi-snapshot vmstore web01-root --name before-upgrade",
                                   "Snapshot a volume; prints the snapshot's key.")]

    @OptionGroup public var volume: VolumeArgument
    @Option(help: "The snapshot's name label (default: the origin's).") public var name: String?
    @OptionGroup public var output: OutputOptions
    public init() {}
    public static let kind = VolumeKind.snapshot
}

public struct VDIClone: VolumeCopyTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-clone",
        abstract: "Make a writable clone of a volume or snapshot.",
        discussion: """
            Any volume, snapshot or clone can be cloned; the clone shares blocks with its source until \
            either is written. Prints the clone's key.
            """)
    public static let examples = [("thinvdi-clone vmstore golden-image --name web02-root",
                                   "Clone a template; prints the clone's key.")]

    @OptionGroup public var volume: VolumeArgument
    @Option(help: "The clone's name label (default: the source's).") public var name: String?
    @OptionGroup public var output: OutputOptions
    public init() {}
    public static let kind = VolumeKind.clone
}

public struct VDIRevert: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-revert",
        abstract: "Make a volume's contents those of a snapshot, in place.",
        discussion: """
            Instant whatever the size: the volume keeps its key, uuid, name, description and keys, takes \
            the snapshot's contents and virtual size, and every other snapshot and clone is untouched. The \
            volume must be detached (Volume_in_use otherwise).
            """)
    public static let examples = [("thinvdi-revert vmstore web01-root before-upgrade",
                                   "Roll web01-root back to its snapshot.")]

    @OptionGroup public var volume: VolumeArgument
    @Argument(help: "The snapshot's key or uuid.", completion: Complete.volumes) var snapshot: String
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        try sr.volumes.revertVolume(volume.vdi, to: snapshot)
        if output.json { Console.out("null") }
    }
}

public struct VDICompose: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-compose",
        abstract: "Put a parent volume's contents under a child volume's own writes.",
        discussion: """
            xapi's Volume.compose: CHILD becomes PARENT's contents with the blocks CHILD holds on top. \
            A new thin device is snapshotted from PARENT (sharing its blocks, copying none), the blocks \
            the pool's metadata says CHILD maps are copied onto it, and CHILD switches to it, keeping its \
            key, uuid, name, keys and snapshots; PARENT is unchanged and may then be destroyed. A compose \
            killed part way is undone (or, once the switch is recorded, finished) by the next command \
            that changes the SR. Refused, changing nothing: either volume attached, CHILD and PARENT the \
            same, a snapshot or template as CHILD, a PARENT larger than CHILD, a PARENT not in the SR. \
            Prints CHILD's key (--json: its record, as thinvdi-stat prints it).
            """)
    public static let examples = [("thinvdi-compose vmstore web01-root web01-base",
                                   "web01-root becomes web01-base with web01-root's own writes on top.")]

    @OptionGroup public var volume: VolumeArgument
    @Argument(help: "The parent volume's key or uuid (its contents go under CHILD's).", completion: Complete.volumes)
    var parent: String
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let composed = try await sr.volumes.composeVolume(volume.vdi, onto: parent)
        if output.json { return Console.printJSON(VolumeJSON(try await sr.volumes.view(of: composed))) }
        Console.out(composed.key)
    }
}

public struct VDIResize: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-resize",
        abstract: "Grow a volume.",
        discussion: """
            Grows the virtual size to SIZE (rounded up to 512 bytes). An attached volume's block device \
            grows at once. Shrinking is refused; resizing to the current size does nothing. A \
            preallocated volume's LV is extended and its new part zeroed before the volume shows it \
            (progress as thinvdi-create --preallocate shows it; SIGINT or SIGTERM cancels, and the volume \
            keeps its size).
            """)
    public static let examples = [("thinvdi-resize vmstore web01-root 40G", "Grow the volume to 40 GiB.")]
    public static let extraExitStatuses: [(Int32, String)] = [
        (130, "a preallocated volume's zeroing was cancelled; the volume kept its size"),
    ]

    @OptionGroup public var volume: VolumeArgument
    @Argument(help: "The new size, in bytes or with a K, M, G or T suffix.", transform: ByteCount.parser("size"))
    var size: ByteCount
    @OptionGroup var progressOptions: ProgressOptions
    var progress: ProgressMode? { progressOptions.progress }
    @OptionGroup public var output: OutputOptions
    public init() {}

    /// A preallocated volume's new part is zeroed without the SR lock, so
    /// the pool monitor and other writers are not kept waiting.
    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let (resized, view) = try await ZeroingJob(jobContext(sr: reference, host: host, progress: progress))
            .resize(volume.vdi, to: size.bytes, describe: output.json)
        printVolume(resized, view: view, json: output.json, quiet: true)
        return 0
    }

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        try sr.volumes.resizeVolume(volume.vdi, to: size.bytes)
        try await printVolume(try sr.requireVolume(volume.vdi), of: sr, json: output.json, quiet: true)
    }
}

public struct VDISet: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-set",
        abstract: "Set a volume's name, description or keys.",
        discussion: """
            KEY=VALUE pairs set keys (split at the first '=', so the value may contain '='). For any key \
            and value, including ones that contain '=' or begin with '-', give --key=KEY --value=VALUE \
            instead: the Nth --key takes the Nth --value, nothing is split, and both round-trip exactly. \
            Changing the name does not change the volume's key.
            """)
    public static let examples = [("thinvdi-set vmstore web01-root --name \"web01 root disk\" vdi-type=user",
                                   "Rename the volume and set a key."),
                                  ("thinvdi-set --key='a=b' --value='-1' -- vmstore web01-root",
                                   "Set a key containing '=' to a value beginning with '-'.")]

    @OptionGroup public var volume: VolumeArgument
    @OptionGroup var labels: LabelChanges
    var name: String? { labels.name }
    var description: String? { labels.description }
    @Argument(help: ArgumentHelp("Keys to set.", valueName: "key=value"), transform: KeyValue.parse)
    var pairs: [KeyValue] = []
    @Option(name: .customLong("key"), help: "A key to set to the matching --value, taken whole.")
    var keys: [String] = []
    @Option(name: .customLong("value"), help: "The value of the matching --key, taken whole.")
    var values: [String] = []
    @Option(help: ArgumentHelp("Changed-block tracking (xapi's cbt_enabled): on or off. Snapshots taken while it is "
                               + "on have it on; thinvdi-changed needs no tracking, so this is the flag xapi and "
                               + "backup tools read.", valueName: "on|off"))
    var cbt: OnOff?
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func checkArguments() throws(ThinError) {
        guard keys.count == values.count else {
            throw ThinError(.invalidArgument, "\(keys.count) --key but \(values.count) --value given; give one --value "
                            + "after each --key")
        }
        guard name != nil || description != nil || !pairs.isEmpty || !keys.isEmpty || cbt != nil else {
            throw ThinError(.invalidArgument, "nothing to set: give --name, --description, KEY=VALUE, --key with "
                            + "--value, or --cbt")
        }
    }

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let set = pairs.map { ($0.key, $0.value) } + Array(zip(keys, values))
        try sr.volumes.setMetadata(volume.vdi, name: name, description: description, set: set, unset: [],
                           cbt: cbt.map { $0 == .on })
        try await printVolume(try sr.requireVolume(volume.vdi), of: sr, json: output.json, quiet: true)
    }
}

public struct VDIUnset: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-unset",
        abstract: "Remove keys from a volume.",
        discussion: "Removing a key that is not set succeeds. Give -- before the SR to remove a key beginning with '-'.")
    public static let examples = [("thinvdi-unset vmstore web01-root clone-on-boot", "Remove a key."),
                                  ("thinvdi-unset -- vmstore web01-root --odd-key", "Remove a key beginning with '-'.")]

    @OptionGroup public var volume: VolumeArgument
    @Argument(help: ArgumentHelp("Keys to remove.", valueName: "key")) var keys: [String]
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        try sr.volumes.setMetadata(volume.vdi, name: nil, description: nil, set: [], unset: keys)
        try await printVolume(try sr.requireVolume(volume.vdi), of: sr, json: output.json, quiet: true)
    }
}

/// `on` or `off`, for flags that can be set either way.
public enum OnOff: String, ExpressibleByArgument, CaseIterable, Sendable {
    case on, off
}

public struct VDIChanged: WholeSRTool {
    public static let access = ToolAccess.read
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-changed",
        abstract: "List the blocks of a volume that changed since an earlier snapshot of it.",
        discussion: """
            FROM is a snapshot, TO a later state of the same data: the volume FROM was taken of, a later \
            snapshot of it, or a clone of one of those. The answer comes from the pool's metadata alone \
            (thin_dump through a metadata snapshot, released afterwards): a block counts as changed if TO \
            maps it with a pool time at or after FROM's creation (written since) or FROM maps it and TO does \
            not (discarded since), rounded out to whole pool blocks, so it never under-reports. Where the \
            lineage cannot be proven (another disk, a revert in between, volumes older than these records) \
            the tool refuses: copy TO in full instead. --json gives byte extents; --bitmap gives xapi's \
            changed-block form, one bit per 64 KiB with the first block in the most significant bit of the \
            first byte, padded to whole 4-byte words; its --offset is a multiple of 64 KiB, and bit 0 is the \
            block that starts there.
            """)
    public static let examples = [("thinvdi-changed vmstore nightly-1 nightly-2 --json", "Extents changed between two snapshots."),
                                  ("thinvdi-changed --bitmap vmstore nightly-2 web01-root",
                                   "xapi's bitmap of what changed on the live volume since a snapshot.")]

    @OptionGroup public var target: SRArgument
    @Argument(help: "The earlier snapshot (key or uuid).", completion: Complete.volumes) var from: String
    @Argument(help: "The later volume, snapshot or clone (key or uuid).", completion: Complete.volumes) var to: String
    @Flag(help: "Print {\"granularity\": 65536, \"bitmap\": \"<base64>\"}, as xapi's list_changed_blocks returns it.")
    var bitmap = false
    @Option(help: ArgumentHelp("With --bitmap: the first byte to cover, a multiple of 65536 (bit 0 is the block there).",
                               valueName: "bytes"))
    var offset: UInt64 = 0
    @Option(help: ArgumentHelp("With --bitmap: how many bytes to cover; negative: to the end (xapi's -1).",
                               valueName: "bytes"))
    var length: Int64 = -1
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func checkArguments() throws(ThinError) {
        // xapi-storage defines bit 0 as the block at the offset: an unaligned one has no such block.
        let granularity = ChangedBlocks.granularity
        guard offset % granularity == 0 else {
            throw .init(.invalidArgument, "--offset \(offset) is not a multiple of \(granularity) (the bitmap's block); "
                        + "give \(offset / granularity * granularity) or \((offset / granularity + 1) * granularity)")
        }
    }

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let changes = try await sr.lineage.changedBlocks(from: from, to: to)
        if bitmap {
            let bytes = changes.bitmap(offset: offset, length: length < 0 ? nil : UInt64(length))
            return Console.printJSON(BitmapJSON(granularity: ChangedBlocks.granularity,
                                                bitmap: Data(bytes).base64EncodedString()))
        }
        let total = changes.extents.reduce(0) { $0 + $1.length }
        if output.json {
            return Console.printJSON(ChangesJSON(virtual_size: changes.virtualSize, changed_bytes: total,
                                                 extents: changes.extents.map { .init(offset: $0.offset, length: $0.length) }))
        }
        for extent in changes.extents { Console.out("\(extent.offset) \(extent.length)") }
        Console.out("changed: \(ByteSize.format(total)) of \(ByteSize.format(changes.virtualSize)) in "
                    + "\(changes.extents.count) extent(s)")
    }
}

public struct VDIDataDestroy: VolumeTool {
    public static let access = ToolAccess.write
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-data-destroy",
        abstract: "Free a snapshot's data, keeping it as the base of changed-block queries.",
        discussion: """
            After a backup has copied a snapshot, its blocks are no longer needed, only the answer to \
            "what changed since it". This deletes the snapshot's thin device and keeps, in its catalog row, \
            what thinvdi-changed needs (the pool time it was made at and the blocks it mapped). It stays \
            listed, of kind cbt_metadata and using no space, until thinvdi-destroy; it can no longer be \
            attached, cloned, snapshotted or reverted to. xapi's VDI.data_destroy comes here. Refuses \
            anything but a snapshot, and an attached one; a second call changes nothing.
            """)
    public static let examples = [("thinvdi-data-destroy vmstore nightly-1",
                                   "Free the snapshot's data; thinvdi-changed from it still works.")]

    @OptionGroup public var volume: VolumeArgument
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let record = try await sr.lineage.destroyData(volume.vdi)
        try await printVolume(record, of: sr, json: output.json, quiet: true)
    }
}

struct BitmapJSON: Encodable {
    var granularity: UInt64
    var bitmap: String
}

struct ChangesJSON: Encodable {
    struct Extent: Encodable {
        var offset: UInt64
        var length: UInt64
    }
    var virtual_size: UInt64
    var changed_bytes: UInt64
    var extents: [Extent]
}

public struct VDITree: WholeSRTool {
    public static let access = ToolAccess.read
    public static let configuration = CommandConfiguration(
        commandName: "thinvdi-tree",
        abstract: "Show the snapshot and clone lineage as a tree.",
        discussion: """
            Each node shows its key, name, kind, virtual size, and the data it holds alone (exclusive) and \
            shares with other nodes, from thin_ls on a metadata snapshot of the live pool. When a node is \
            destroyed its children move up to its parent.
            """)
    public static let examples = [("thinvdi-tree vmstore", "The whole SR."),
                                  ("thinvdi-tree --json vmstore web01-root", "One volume's subtree as JSON.")]

    @OptionGroup public var target: SRArgument
    @Argument(help: "Show only this volume's subtree.", completion: Complete.volumes) var vdi: String?
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let forest = try await sr.lineage.tree(vdi)
        if output.json { return Console.printJSON(forest.map(TreeJSON.init)) }
        func draw(_ node: LineageNode, prefix: String, last: Bool, root: Bool) {
            let volume = node.volume
            let label = String(volume.name.terminalSafe.prefix(40))
            let line = "\(volume.key) \"\(label)\" \(volume.kind.rawValue) \(ByteSize.format(volume.virtualSize)) "
                + "exclusive \(ByteSize.format(node.exclusiveBytes)) shared \(ByteSize.format(node.sharedBytes))"
            Console.out(root ? line : prefix + (last ? "└── " : "├── ") + line)
            let childPrefix = root ? "" : prefix + (last ? "    " : "│   ")
            for (index, child) in node.children.enumerated() {
                draw(child, prefix: childPrefix, last: index == node.children.count - 1, root: false)
            }
        }
        for tree in forest { draw(tree, prefix: "", last: true, root: true) }
    }
}

struct TreeJSON: Encodable {
    var key: String
    var uuid: String
    var name: String
    var kind: String
    var read_write: Bool
    var virtual_size: UInt64
    var mapped_bytes: UInt64
    var exclusive_bytes: UInt64
    var shared_bytes: UInt64
    var children: [TreeJSON]

    init(_ node: LineageNode) {
        key = node.volume.key
        uuid = node.volume.uuid.uuidString.lowercased()
        name = node.volume.name
        kind = node.volume.dataDestroyed ? "cbt_metadata" : node.volume.kind.rawValue
        read_write = node.volume.readWrite
        virtual_size = node.volume.virtualSize
        mapped_bytes = node.mappedBytes
        exclusive_bytes = node.exclusiveBytes
        shared_bytes = node.sharedBytes
        children = node.children.map(TreeJSON.init)
    }
}

/// `thinvdi-snapshot` and `thinvdi-clone`: one command in two kinds.
public protocol VolumeCopyTool: VolumeTool {
    static var kind: VolumeKind { get }
    var name: String? { get }
}

extension VolumeCopyTool {
    public func execute(on sr: AttachedSR) async throws(ThinError) {
        let copy = try sr.volumes.copyVolume(volume.vdi, kind: Self.kind, name: name)
        try await printVolume(copy, of: sr, json: output.json)
    }
}
