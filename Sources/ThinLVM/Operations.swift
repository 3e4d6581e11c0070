import FoundationEssentials

/// A volume group as `vgs` reports it. Reports are made in this module
/// alone (the core's tests build them through `@testable import`).
public struct VolumeGroupReport: Equatable, Sendable {
    public var name: String
    public var sizeBytes: UInt64
    public var freeBytes: UInt64
    public var extentBytes: UInt64
    public var tags: [String]
    public var systemID: String = ""
}

/// A logical volume as `lvs` reports it.
public struct LogicalVolumeReport: Equatable, Sendable {
    public var volumeGroup: String
    public var name: String
    public var sizeBytes: UInt64
    public var tags: [String]
    public var active: Bool
    /// The node of the LV's `<vg>-<lv>` dm device (as lvs reports it): valid while the LV is active.
    public var mapperPath: String
    /// The LVM system ID of the LV's VG: the host that owns it, or empty.
    public var systemID: String = ""
}

/// A physical volume as `pvs` reports it.
public struct PhysicalVolumeReport: Equatable, Sendable {
    public var device: String
    public var volumeGroup: String
}

public enum LVMFailure: Error, CustomStringConvertible {
    case validation(LVMValidationError)
    case command(LVMError)
    case report(String)

    public var description: String {
        switch self {
        case .validation(let error): return error.description
        case .command(let error): return error.description
        case .report(let detail): return "unexpected LVM report: \(detail)"
        }
    }
}

/// The LVM operations the core needs. `LVM` runs them through liblvm2cmd;
/// tests of the core's own logic use a recording double.
public protocol LogicalVolumeManager: Sendable {
    func removePhysicalVolumes(_ devices: [String]) throws(LVMFailure)
    func createVolumeGroup(_ name: String, devices: [String], tags: [String]) throws(LVMFailure)
    func removeVolumeGroup(_ name: String) throws(LVMFailure)
    func extendVolumeGroup(_ name: String, devices: [String]) throws(LVMFailure)
    func createLinearVolume(group: String, name: String, sizeBytes: UInt64, tags: [String]) throws(LVMFailure)
    func extendLogicalVolume(group: String, name: String, sizeBytes: UInt64) throws(LVMFailure)
    func retag(group: String, name: String, remove: [String], add: [String]) throws(LVMFailure)
    func renameLogicalVolume(group: String, from old: String, to new: String) throws(LVMFailure)
    func removeLogicalVolumes(group: String, names: [String]) throws(LVMFailure)
    func setActive(_ active: Bool, group: String, names: [String]) throws(LVMFailure)
    func volumeGroups() throws(LVMFailure) -> [VolumeGroupReport]
    func logicalVolumes() throws(LVMFailure) -> [LogicalVolumeReport]
    func physicalVolumes() throws(LVMFailure) -> [PhysicalVolumeReport]
    func localSystemID() throws(LVMFailure) -> String
    func takeOver(group: String, from owner: String, to local: String) throws(LVMFailure)
}

/// Each operation is one validated command line.
extension LVM: LogicalVolumeManager {
    public func removePhysicalVolumes(_ devices: [String]) throws(LVMFailure) {
        try execute(["pvremove", "--yes"], devices.map { .device($0) })
    }

    public func createVolumeGroup(_ name: String, devices: [String], tags: [String]) throws(LVMFailure) {
        try execute(["vgcreate", "--yes"], tags.flatMap { [.word("--addtag"), .tag($0)] }
            + [.vg(name)] + devices.map { .device($0) })
    }

    public func removeVolumeGroup(_ name: String) throws(LVMFailure) {
        try execute(["vgremove", "--yes", "--force"], [.vg(name)])
    }

    /// Creates a linear LV; its first 4 KiB are zeroed and old signatures wiped.
    public func createLinearVolume(group: String, name: String, sizeBytes: UInt64,
                                   tags: [String]) throws(LVMFailure) {
        try execute(["lvcreate", "--yes", "--type", "linear", "--zero", "y", "--wipesignatures", "y",
                     "--setactivationskip", "n"],
                    [.word("--name"), .lv(name), .word("--size"), .bytes(sizeBytes)]
                        + tags.flatMap { [.word("--addtag"), .tag($0)] } + [.vg(group)])
    }

    /// Grows an LV to `sizeBytes` (LVM rounds up to whole extents).
    public func extendLogicalVolume(group: String, name: String, sizeBytes: UInt64) throws(LVMFailure) {
        try execute(["lvextend", "--yes"], [.word("--size"), .bytes(sizeBytes), .lvPath(group: group, name: name)])
    }

    /// Adds PVs to a VG (own-the-world SRs grow this way).
    public func extendVolumeGroup(_ name: String, devices: [String]) throws(LVMFailure) {
        try execute(["vgextend", "--yes"], [.vg(name)] + devices.map { .device($0) })
    }

    /// Replaces tags on an LV in one metadata commit.
    public func retag(group: String, name: String, remove: [String], add: [String]) throws(LVMFailure) {
        try execute(["lvchange", "--yes"], remove.flatMap { [.word("--deltag"), .tag($0)] }
            + add.flatMap { [.word("--addtag"), .tag($0)] } + [.lvPath(group: group, name: name)])
    }

    public func renameLogicalVolume(group: String, from old: String, to new: String) throws(LVMFailure) {
        try execute(["lvrename", "--yes"], [.vg(group), .lv(old), .lv(new)])
    }

    public func removeLogicalVolumes(group: String, names: [String]) throws(LVMFailure) {
        guard !names.isEmpty else { return }
        try execute(["lvremove", "--yes", "--force"], names.map { .lvPath(group: group, name: $0) })
    }

    public func setActive(_ active: Bool, group: String, names: [String]) throws(LVMFailure) {
        guard !names.isEmpty else { return }
        try execute(["lvchange", "--yes"], [.word("--activate"), .word(active ? "y" : "n")]
            + names.map { .lvPath(group: group, name: $0) })
    }

    public func volumeGroups() throws(LVMFailure) -> [VolumeGroupReport] {
        let rows = try report("vgs", key: "vg",
                              fields: "vg_name,vg_size,vg_free,vg_extent_size,vg_tags,vg_systemid")
        return try rows.map { row throws(LVMFailure) in
            VolumeGroupReport(name: row["vg_name"] ?? "", sizeBytes: try number(row, "vg_size"),
                              freeBytes: try number(row, "vg_free"), extentBytes: try number(row, "vg_extent_size"),
                              tags: splitTags(row["vg_tags"]), systemID: row["vg_systemid"] ?? "")
        }
    }

    public func logicalVolumes() throws(LVMFailure) -> [LogicalVolumeReport] {
        // --foreign: VGs other hosts own are listed too, so thinsr can name their owner.
        let rows = try report("lvs", key: "lv", fields: "vg_name,lv_name,lv_size,lv_tags,lv_active,lv_dm_path,vg_systemid",
                              extra: ["--foreign"])
        return try rows.map { row throws(LVMFailure) in
            LogicalVolumeReport(volumeGroup: row["vg_name"] ?? "", name: row["lv_name"] ?? "",
                                sizeBytes: try number(row, "lv_size"), tags: splitTags(row["lv_tags"]),
                                active: row["lv_active"] == "active", mapperPath: row["lv_dm_path"] ?? "",
                                systemID: row["vg_systemid"] ?? "")
        }
    }

    /// This host's LVM system ID (`lvm systemid`), empty when lvm.conf sets none.
    public func localSystemID() throws(LVMFailure) -> String {
        let printed = try runValidated(["systemid"], [])
        for line in printed {
            let trimmed = line.trimmingPrefixSpaces
            if trimmed.hasPrefix("system ID:") {
                return String(trimmed.dropFirst("system ID:".count).drop(while: { $0 == " " }))
            }
        }
        return ""
    }

    /// Gives a VG another host owns to this host: `vgchange --systemid`, with
    /// the old owner's id accepted for this one command.
    public func takeOver(group: String, from owner: String, to local: String) throws(LVMFailure) {
        let config: LVMArgument
        do { config = try LVMArgument(extraSystemID: owner) } catch { throw .validation(error) }
        guard LVMNames.isValidSystemID(local) else {
            throw .validation(LVMValidationError(what: "system ID", value: local))
        }
        try execute(["vgchange", "--yes", "--config"], [.argument(config), .word("--systemid"), .systemID(local), .vg(group)])
    }

    public func physicalVolumes() throws(LVMFailure) -> [PhysicalVolumeReport] {
        try report("pvs", key: "pv", fields: "pv_name,vg_name").map {
            PhysicalVolumeReport(device: $0["pv_name"] ?? "", volumeGroup: $0["vg_name"] ?? "")
        }
    }

    // MARK: - Building and parsing

    enum Word {
        case word(StaticString)
        case vg(String)
        case lv(String)
        case lvPath(group: String, name: String)
        case tag(String)
        case device(String)
        case bytes(UInt64)
        case systemID(String)
        case argument(LVMArgument)
    }

    private func execute(_ fixed: [StaticString], _ words: [Word]) throws(LVMFailure) {
        _ = try runValidated(fixed, words)
    }

    private func runValidated(_ fixed: [StaticString], _ words: [Word]) throws(LVMFailure) -> [String] {
        var arguments = fixed.map { LVMArgument(option: $0) }
        do {
            for word in words { arguments.append(try Self.argument(word)) }
        } catch {
            throw .validation(error)
        }
        do {
            return try run(arguments)
        } catch {
            throw .command(error)
        }
    }

    static func argument(_ word: Word) throws(LVMValidationError) -> LVMArgument {
        switch word {
        case .word(let text): return LVMArgument(option: text)
        case .vg(let name):
            guard LVMNames.isValidVGName(name) else { throw LVMValidationError(what: "volume group name", value: name) }
            return try LVMArgument(validated: name)
        case .lv(let name):
            guard LVMNames.isValidLVName(name) else { throw LVMValidationError(what: "logical volume name", value: name) }
            return try LVMArgument(validated: name)
        case .lvPath(let group, let name):
            guard LVMNames.isValidVGName(group) else { throw LVMValidationError(what: "volume group name", value: group) }
            guard LVMNames.isValidLVName(name) else { throw LVMValidationError(what: "logical volume name", value: name) }
            return try LVMArgument(validated: "\(group)/\(name)")
        case .tag(let tag):
            guard LVMNames.isValidTag(tag) else { throw LVMValidationError(what: "tag", value: tag) }
            return try LVMArgument(validated: tag)
        case .device(let path):
            guard LVMNames.isValidDevicePath(path) else { throw LVMValidationError(what: "device path", value: path) }
            return try LVMArgument(validated: path)
        case .bytes(let bytes):
            return try LVMArgument(validated: "\(bytes)b")
        case .systemID(let id):
            guard LVMNames.isValidSystemID(id) else { throw LVMValidationError(what: "system ID", value: id) }
            return try LVMArgument(validated: id)
        case .argument(let argument):
            return argument
        }
    }

    private struct Report: Decodable {
        var report: [[String: [[String: String]]]]
    }

    /// Runs a reporting command with JSON output in bytes and returns its rows.
    private func report(_ command: StaticString, key: String, fields: StaticString,
                        extra: [StaticString] = []) throws(LVMFailure) -> [[String: String]] {
        let printed = try runValidated([command, "--reportformat", "json", "--units", "b", "--nosuffix",
                                        "--options", fields] + extra, [])
        let text = Self.reportText(printed)
        do {
            let decoded = try JSONDecoder().decode(Report.self, from: Data(text.utf8))
            return decoded.report.flatMap { $0[key] ?? [] }
        } catch {
            throw .report("\(command): \(error)")
        }
    }

    /// liblvm2cmd hands report lines and its other messages to the log
    /// callback at the same level, interleaved (e.g. `Clear pvid and info for
    /// no lvm header /dev/loop0` inside an empty `pvs` report after a
    /// `pvremove`). LVM prints its JSON one structural token or one row per
    /// line, so the document is the lines of that shape between the first `{`
    /// and the last `}`; every other line is a message.
    static func reportText(_ printed: [String]) -> String {
        guard let start = printed.firstIndex(where: { $0.trimmingPrefixSpaces.hasPrefix("{") }),
              let end = printed.lastIndex(where: { $0.trimmingPrefixSpaces.hasPrefix("}") }), start <= end
        else { return "" }
        return printed[start...end].filter(isReportLine).joined(separator: "\n")
    }

    /// `{`, `}`, `]` (each maybe with a `,`), a row `{"field":...}`, or a
    /// section opening such as `"report": [` or `"pv": [`.
    static func isReportLine(_ line: String) -> Bool {
        let text = line.trimmingPrefixSpaces
        guard let first = text.first else { return false }
        switch first {
        case "{", "}", "]": return true
        case "\"": return text.hasSuffix("[") && text.dropFirst().prefix(while: { $0 != "\"" }).allSatisfy {
            $0.isLetter || $0 == "_" }
        default: return false
        }
    }

    private func number(_ row: [String: String], _ field: String) throws(LVMFailure) -> UInt64 {
        guard let text = row[field], let value = UInt64(text) else {
            throw .report("field \(field) is \"\(row[field] ?? "missing")\"")
        }
        return value
    }

    private func splitTags(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map(String.init)
    }
}


extension String {
    var trimmingPrefixSpaces: Substring { drop(while: { $0 == " " }) }
}
