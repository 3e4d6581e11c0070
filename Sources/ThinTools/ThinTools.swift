/// thin-provisioning-tools, run as processes.
public enum ThinTools {
    /// The outcome of `thin_check`.
    public struct CheckResult: Equatable, Sendable {
        public var clean: Bool
        public var report: String
    }

    /// Checks pool metadata. Offline only (the pool must not be assembled), unless
    /// `metadataSnapshot` is set and the pool holds a metadata snapshot.
    public static func check(metadataDevice: String, skipMappings: Bool = false, clearNeedsCheckFlag: Bool = false,
                             metadataSnapshot: Bool = false) async throws(ExternalCommandError) -> CheckResult {
        var arguments = ["-q"]
        if metadataSnapshot { arguments.append("--metadata-snap") }
        if skipMappings { arguments.append("--skip-mappings") }
        if clearNeedsCheckFlag { arguments.append("--clear-needs-check-flag") }
        arguments.append(metadataDevice)
        let result = try await ExternalCommand.run("thin_check", arguments)
        switch result.exitStatus {
        case 0: return CheckResult(clean: true, report: result.standardError)
        case 1: return CheckResult(clean: false, report: result.standardError + result.standardOutput)
        default:
            throw ExternalCommandError(program: "thin_check", arguments: arguments, exitStatus: result.exitStatus,
                                       standardError: result.standardError)
        }
    }

    /// Rebuilds damaged metadata from `input` into the (preallocated) `output`
    /// device; the input is only read.
    public static func repair(input: String, output: String) async throws(ExternalCommandError) {
        _ = try await ExternalCommand.check("thin_repair", ["-i", input, "-o", output])
    }

    /// The metadata size (bytes) a pool of `poolBytes` with `blockBytes` blocks
    /// and up to `maximumThins` thin devices needs, from `thin_metadata_size`.
    public static func metadataSize(blockBytes: UInt64, poolBytes: UInt64,
                                    maximumThins: UInt64) async throws(ExternalCommandError) -> UInt64 {
        let arguments = ["-b", "\(blockBytes / 512)s", "-s", "\(poolBytes / 512)s", "-m", "\(maximumThins)",
                         "-u", "b", "-n"]
        let output = try await ExternalCommand.check("thin_metadata_size", arguments)
        guard let bytes = parseMetadataSize(output) else {
            throw ExternalCommandError(program: "thin_metadata_size", arguments: arguments, exitStatus: 0,
                                       standardError: "unexpected output \"\(output)\"")
        }
        return bytes
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
    }

    /// Per-device usage from `thin_ls`; on a live pool pass `metadataSnapshot`
    /// after reserving one with the pool's `reserve_metadata_snap` message.
    public static func list(metadataDevice: String,
                            metadataSnapshot: Bool) async throws(ExternalCommandError) -> [DeviceUsage] {
        var arguments = ["--no-headers", "-o", "DEV,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES"]
        if metadataSnapshot { arguments.append("-m") }
        arguments.append(metadataDevice)
        let output = try await ExternalCommand.check("thin_ls", arguments)
        return parseList(output)
    }

    public static func parseList(_ output: String) -> [DeviceUsage] {
        output.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard words.count == 4, let id = UInt32(words[0]), let mapped = UInt64(words[1]),
                  let exclusive = UInt64(words[2]), let shared = UInt64(words[3]) else { return nil }
            return DeviceUsage(deviceID: id, mappedBytes: mapped, exclusiveBytes: exclusive, sharedBytes: shared)
        }
    }
}
