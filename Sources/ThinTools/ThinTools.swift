/// The helper programs the core runs: thin-provisioning-tools for pool
/// metadata, mkfs.ext4 for the catalog, blkid to refuse a disk in use.
/// `ThinTools` runs the installed programs; tests use a recording double.
public protocol HelperPrograms: Sendable {
    /// `thin_check`: offline, or through the pool's held metadata snapshot.
    func checkMetadata(device: String, metadataSnapshot: Bool,
                       clearNeedsCheckFlag: Bool) async throws(ExternalCommandError) -> ThinTools.CheckResult
    /// `thin_repair` from `input` into the (preallocated) `output`; the input is only read.
    func repairMetadata(input: String, output: String) async throws(ExternalCommandError)
    /// `thin_metadata_size`: bytes of metadata a pool needs.
    func metadataSize(blockBytes: UInt64, poolBytes: UInt64,
                      maximumThins: UInt64) async throws(ExternalCommandError) -> UInt64
    /// `thin_ls`: per-device usage.
    func listDevices(metadataDevice: String,
                     metadataSnapshot: Bool) async throws(ExternalCommandError) -> [ThinTools.DeviceUsage]
    /// The transaction id in the superblock of an inactive pool's metadata
    /// (`thin_dump --skip-mappings`: the superblock and device lines only).
    func transactionID(metadataDevice: String) async throws(ExternalCommandError) -> UInt64
    /// `thin_dump` of some thin devices' mappings, with each mapping's pool time.
    func dumpMappings(metadataDevice: String, metadataSnapshot: Bool,
                      deviceIDs: [UInt32]) async throws(ExternalCommandError) -> ThinMappingsDump
    /// `mkfs.ext4` for a catalog volume, fully initialised (no lazy writes later).
    func makeCatalogFilesystem(device: String) async throws(ExternalCommandError)
    /// `e2fsck` of the catalog's filesystem (unmounted): `.preen` (-p) before
    /// attach mounts it, `.report` (-fn) changes nothing, `.fix` (-fy).
    func checkCatalogFilesystem(device: String, mode: FilesystemCheck) async throws(ExternalCommandError) -> FilesystemCheckResult
    /// `resize2fs` of the (mounted) catalog filesystem to its LV's size.
    func growCatalogFilesystem(device: String) async throws(ExternalCommandError)
    /// `blkid -p`: the filesystem, RAID and partition-table types on `device`
    /// (empty when it has none). `skippingRAID` leaves out RAID and LVM
    /// labels, which otherwise hide the filesystems under them.
    func signatures(of device: String, skippingRAID: Bool) async throws(ExternalCommandError) -> [String]
    /// thin-provisioning-tools' version (`thin_check -V`), nil when it cannot tell.
    func thinToolsVersion() async -> ToolVersion?
    /// `modprobe NAME`: false when the module cannot be loaded.
    func loadModule(_ name: String) async -> Bool
}

/// How `e2fsck` may treat the catalog's filesystem.
public enum FilesystemCheck: Sendable {
    case preen, report, fix

    var arguments: [String] {
        switch self {
        case .preen: return ["-p"]
        case .report: return ["-f", "-n"]
        case .fix: return ["-f", "-y"]
        }
    }
}

/// What `e2fsck` found (its exit status, e2fsck(8)) and said.
public struct FilesystemCheckResult: Sendable, Equatable {
    public var exitStatus: Int32
    public var output: String

    /// No errors (0), or errors corrected (1, 2).
    public var usable: Bool { exitStatus >= 0 && exitStatus <= 2 }
    public var clean: Bool { exitStatus == 0 }
    /// `-n` found what an unreplayed journal explains (after a crash), which
    /// the next mount's replay settles: not damage.
    public var onlyJournalUnreplayed: Bool { !clean && output.contains("skipping journal recovery") }
}

/// thin-provisioning-tools and the other installed helpers, run as processes.
public struct ThinTools: HelperPrograms {
    /// Where probes that cost a process keep their answers (see `ProbeCache`); nil: probe every time.
    let probeCache: String?

    public init(probeCache: String? = nil) { self.probeCache = probeCache }

    /// The outcome of `thin_check`.
    public struct CheckResult: Equatable, Sendable {
        public var clean: Bool
        public var report: String
    }

    public func checkMetadata(device: String, metadataSnapshot: Bool,
                              clearNeedsCheckFlag: Bool) async throws(ExternalCommandError) -> CheckResult {
        var arguments = ["-q"]
        if metadataSnapshot { arguments.append("--metadata-snap") }
        if clearNeedsCheckFlag { arguments.append("--clear-needs-check-flag") }
        arguments.append(device)
        let result = try await ExternalCommand.run(Program.thinCheck, arguments)
        switch result.exitStatus {
        case 0: return CheckResult(clean: true, report: result.standardError)
        case 1: return CheckResult(clean: false, report: result.standardError + result.standardOutput)
        default:
            throw ExternalCommandError(program: Program.thinCheck.name, arguments: arguments, exitStatus: result.exitStatus,
                                       standardError: result.standardError)
        }
    }

    public func thinToolsVersion() async -> ToolVersion? { await ProgramProbes.thinToolsVersion(cacheDirectory: probeCache) }

    public func loadModule(_ name: String) async -> Bool { await ProgramProbes.loadModule(name) }

    public func repairMetadata(input: String, output: String) async throws(ExternalCommandError) {
        _ = try await ExternalCommand.check(Program.thinRepair, ["-i", input, "-o", output])
    }

    public func metadataSize(blockBytes: UInt64, poolBytes: UInt64,
                             maximumThins: UInt64) async throws(ExternalCommandError) -> UInt64 {
        let arguments = ["-b", "\(blockBytes / 512)s", "-s", "\(poolBytes / 512)s", "-m", "\(maximumThins)",
                         "-u", "b", "-n"]
        return try await Self.parsedOutput(Program.thinMetadataSize, arguments, parse: Self.parseMetadataSize) { output in
            "unexpected output \"\(output)\""
        }
    }

    /// Runs a program that must succeed and parses its output; output that
    /// does not parse is the program's failure, described by `unexpected`.
    private static func parsedOutput<T>(_ program: Program, _ arguments: [String], parse: (String) -> T?,
                                        unexpected: (String) -> String) async throws(ExternalCommandError) -> T {
        let output = try await ExternalCommand.check(program, arguments)
        guard let value = parse(output) else {
            throw ExternalCommandError(program: program.name, arguments: arguments, exitStatus: 0,
                                       standardError: unexpected(output))
        }
        return value
    }

    /// `thin_metadata_size -n` prints a bare number, possibly with a fraction.
    public static func parseMetadataSize(_ output: String) -> UInt64? {
        let text = output.split(whereSeparator: { $0 == " " || $0 == "\n" }).first.map(String.init) ?? ""
        let integer = text.split(separator: ".", maxSplits: 1).first.map(String.init) ?? ""
        guard let value = UInt64(integer) else { return nil }
        return text.contains(".") ? value + 1 : value
    }

    /// One device from `thin_ls`.
    public struct DeviceUsage: Equatable, Sendable {
        public var deviceID: UInt32
        public var mappedBytes: UInt64
        public var exclusiveBytes: UInt64
        public var sharedBytes: UInt64

        public init(deviceID: UInt32, mappedBytes: UInt64, exclusiveBytes: UInt64, sharedBytes: UInt64) {
            self.deviceID = deviceID
            self.mappedBytes = mappedBytes
            self.exclusiveBytes = exclusiveBytes
            self.sharedBytes = sharedBytes
        }
    }

    /// On a live pool pass `metadataSnapshot` after reserving one with the
    /// pool's `reserve_metadata_snap` message.
    public func listDevices(metadataDevice: String,
                            metadataSnapshot: Bool) async throws(ExternalCommandError) -> [DeviceUsage] {
        var arguments = ["--no-headers", "-o", "DEV,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES"]
        if metadataSnapshot { arguments.append("-m") }
        arguments.append(metadataDevice)
        return Self.parseList(try await ExternalCommand.check(Program.thinList, arguments))
    }

    public func transactionID(metadataDevice: String) async throws(ExternalCommandError) -> UInt64 {
        try await Self.parsedOutput(Program.thinDump, ["--skip-mappings", metadataDevice], parse: Self.parseTransactionID) { _ in
            "no transaction id in the superblock line"
        }
    }

    /// The `transaction="N"` attribute of thin_dump's `<superblock ...>` line.
    public static func parseTransactionID(_ output: String) -> UInt64? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("<superblock") }) else { return nil }
        let attribute = " transaction=\""
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        guard let word = words.first(where: { $0.hasPrefix(attribute.dropFirst()) }) else { return nil }
        return UInt64(word.dropFirst(attribute.count - 1).prefix { $0 != "\"" })
    }

    public static func parseList(_ output: String) -> [DeviceUsage] {
        output.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard words.count == 4, let id = UInt32(words[0]), let mapped = UInt64(words[1]),
                  let exclusive = UInt64(words[2]), let shared = UInt64(words[3]) else { return nil }
            return DeviceUsage(deviceID: id, mappedBytes: mapped, exclusiveBytes: exclusive, sharedBytes: shared)
        }
    }

    public func makeCatalogFilesystem(device: String) async throws(ExternalCommandError) {
        try await ExternalCommand.check(Program.makeExt4, ["-q", "-F", "-L", "thinsr-catalog", "-E",
                                                      "lazy_itable_init=0,lazy_journal_init=0", device])
    }

    public func checkCatalogFilesystem(device: String,
                                       mode: FilesystemCheck) async throws(ExternalCommandError) -> FilesystemCheckResult {
        let result = try await ExternalCommand.run(Program.checkExt4, mode.arguments + [device])
        return FilesystemCheckResult(exitStatus: result.exitStatus,
                                     output: (result.standardOutput + result.standardError)
                                         .split(whereSeparator: \.isNewline).joined(separator: "\n"))
    }

    public func growCatalogFilesystem(device: String) async throws(ExternalCommandError) {
        try await ExternalCommand.check(Program.resizeExt4, [device])
    }

    public func signatures(of device: String, skippingRAID: Bool) async throws(ExternalCommandError) -> [String] {
        let arguments = ["-p"] + (skippingRAID ? ["-u", "noraid"] : []) + ["-o", "export", device]
        let result = try await ExternalCommand.run(Program.blockID, arguments)
        switch result.exitStatus {
        case 0: return Self.parseSignatures(result.standardOutput)
        case 2: return []  // nothing found
        case 8: return [Self.ambivalent]  // more than one filesystem: blkid names none
        default:
            throw ExternalCommandError(program: Program.blockID.name, arguments: arguments, exitStatus: result.exitStatus,
                                       standardError: result.standardError)
        }
    }

    /// What `signatures` reports when blkid finds more than one filesystem.
    public static let ambivalent = "more than one filesystem"

    /// The TYPE and PTTYPE of `blkid -o export` output; "unknown" when it names neither.
    public static func parseSignatures(_ output: String) -> [String] {
        let fields = output.split(separator: "\n")
        let found = ["TYPE=", "PTTYPE="].compactMap { key in
            fields.first(where: { $0.hasPrefix(key) }).map { String($0.dropFirst(key.count)) }
        }
        return found.isEmpty ? ["unknown"] : found
    }
}
