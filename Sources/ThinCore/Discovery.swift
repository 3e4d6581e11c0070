public import FoundationEssentials
import ThinLVM

/// An SR found through its LVM tags, attached or not.
public struct DiscoveredSR: Sendable {
    public var uuid: UUID
    public var name: String
    public var mode: SRMode
    public var volumeGroup: String
    public var dataBytes: UInt64
    public var attached: Bool
    /// Role (`data`, `meta`, `spare`, `catalog`) to LV report.
    var volumes: [String: LogicalVolumeReport]

    /// The LVM system ID of the SR's VG: the host that owns it (empty: none).
    public var owner: String = ""

    var names: SRNames { SRNames(uuid: uuid) }

    /// Refuses an SR whose VG another host owns, naming the owner and the takeover.
    func requireOwned(takeOverHint: Bool = true) throws(ThinError) {
        guard !owner.isEmpty else { return }
        let local: String
        do { local = try LVM.shared.localSystemID() } catch { throw .backend("cannot read this host's LVM system ID", error) }
        guard owner != local else { return }
        throw ThinError(.activatedOnAnotherHost, "SR \(names.uuidString) belongs to host \"\(owner)\" (the LVM system ID "
                        + "of VG \(volumeGroup))" + (takeOverHint ? "; if that host is down or has let it go, take it "
                        + "over with thinsr-attach --take-over \(names.uuidString)" : ""),
                        parameters: [names.uuidString, owner])
    }
    var isComplete: Bool { ["data", "meta", "spare", "catalog"].allSatisfy { volumes[$0] != nil } }
    /// Left by a `thinsr-create` that did not finish: it holds no volumes.
    var isIncomplete: Bool {
        volumes["catalog"].map { $0.tags.contains(SRNames.incompleteTag) } ?? true
    }
}

enum Discovery {
    /// Every SR whose LVs this host's LVM sees.
    static func all() throws(ThinError) -> [DiscoveredSR] {
        let logicalVolumes: [LogicalVolumeReport]
        do { logicalVolumes = try LVM.shared.logicalVolumes() } catch {
            throw .backend("cannot list logical volumes", error)
        }
        var found: [UUID: DiscoveredSR] = [:]
        for volume in logicalVolumes {
            guard let srTag = volume.tags.first(where: { $0.hasPrefix(SRNames.tagPrefix) }),
                  let uuid = UUID(uuidString: String(srTag.dropFirst(SRNames.tagPrefix.count))),
                  let roleTag = volume.tags.first(where: { $0.hasPrefix("thinsr.role=") })
            else { continue }
            let role = String(roleTag.dropFirst("thinsr.role=".count))
            var entry = found[uuid] ?? DiscoveredSR(uuid: uuid, name: "", mode: .beNice,
                                                    volumeGroup: volume.volumeGroup, dataBytes: 0,
                                                    attached: false, volumes: [:])
            entry.volumes[role] = volume
            entry.owner = volume.systemID
            if role == "data" { entry.dataBytes = volume.sizeBytes }
            if role == "catalog" {
                for tag in volume.tags {
                    if tag.hasPrefix(SRNames.nameTagPrefix) {
                        entry.name = TagText.decode(String(tag.dropFirst(SRNames.nameTagPrefix.count))) ?? ""
                    } else if tag.hasPrefix(SRNames.modeTagPrefix) {
                        entry.mode = SRMode(rawValue: String(tag.dropFirst(SRNames.modeTagPrefix.count))) ?? .beNice
                    }
                }
            }
            found[uuid] = entry
        }
        return found.values.map { sr in
            var sr = sr
            sr.attached = Mounts.isMounted(sr.names.catalogMount)
            return sr
        }.sorted { ($0.name, $0.uuid.uuidString) < ($1.name, $1.uuid.uuidString) }
    }

    /// The SR `reference` (uuid or unique name) names.
    static func find(_ reference: String) throws(ThinError) -> DiscoveredSR {
        try match(reference, in: try all(), uuid: \.uuid, name: \.name)
    }

    /// Picks the one candidate whose uuid is `reference`, or else whose name is.
    static func match<T>(_ reference: String, in candidates: [T], uuid: (T) -> UUID,
                         name: (T) -> String) throws(ThinError) -> T {
        if let parsed = UUID(uuidString: reference), let hit = candidates.first(where: { uuid($0) == parsed }) {
            return hit
        }
        let named = candidates.filter { name($0) == reference }
        if named.count > 1 {
            let uuids = named.map { uuid($0).uuidString.lowercased() }.joined(separator: ", ")
            throw ThinError(.invalidArgument, "SR name \"\(reference)\" is ambiguous (\(uuids)); give the uuid")
        }
        guard let hit = named.first else {
            throw ThinError(.srDoesNotExist, "no SR \"\(reference)\" on this host; list SRs with thinsr-ls",
                            parameters: [reference])
        }
        return hit
    }
}
