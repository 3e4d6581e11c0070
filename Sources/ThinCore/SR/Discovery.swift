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
    /// The LVM system ID of the SR's VG: the host that owns it (empty: none).
    public var owner: String
    /// The physical volumes of the SR's VG (filled in by `SRLifecycle.list`).
    public var devices: [String] = []
    var volumes: [LVRole: LogicalVolumeReport]

    var names: SRNames { SRNames(uuid: uuid) }

    var isComplete: Bool { LVRole.allCases.allSatisfy { volumes[$0] != nil } }
    /// Left by a `thinsr-create` that did not finish: it holds no volumes.
    var isIncomplete: Bool { volumes[.catalog].map { $0.tags.contains(SRNames.incompleteTag) } ?? true }

    func mapperPath(_ role: LVRole) -> String { names.mapperPath(role, group: volumeGroup) }
}

/// Finds SRs: through the LVM tags on their LVs (every SR, attached or not),
/// or through the catalogs mounted on this host (attached SRs, without LVM).
struct Discovery {
    let host: Host

    /// Every SR whose LVs this host's LVM sees.
    func all() throws(ThinError) -> [DiscoveredSR] {
        let logicalVolumes: [LogicalVolumeReport]
        do { logicalVolumes = try host.lvm.logicalVolumes() } catch {
            throw .backend("cannot list logical volumes", error)
        }
        var found: [UUID: DiscoveredSR] = [:]
        for volume in logicalVolumes {
            guard let uuid = volume.tags.lazy.compactMap(Self.srUUID(fromTag:)).first,
                  let role = volume.tags.lazy.compactMap(Self.role(fromTag:)).first else { continue }
            var entry = found[uuid] ?? DiscoveredSR(uuid: uuid, name: "", mode: .beNice,
                                                    volumeGroup: volume.volumeGroup, dataBytes: 0,
                                                    attached: false, owner: volume.systemID, volumes: [:])
            entry.volumes[role] = volume
            if role == .data { entry.dataBytes = volume.sizeBytes }
            if role == .catalog { Self.readCatalogTags(volume.tags, into: &entry) }
            found[uuid] = entry
        }
        return found.values.map { sr in
            var sr = sr
            sr.attached = host.system.isMounted(sr.names.catalogMount)
            return sr
        }.sorted { ($0.name, $0.uuid.uuidString) < ($1.name, $1.uuid.uuidString) }
    }

    /// The SR `reference` (uuid or unique name) names.
    func find(_ reference: String) throws(ThinError) -> DiscoveredSR {
        try Self.match(reference, in: try all(), uuid: \.uuid, name: \.name)
    }

    /// Refuses an SR whose VG another host owns, naming the owner and the takeover.
    func requireOwned(_ sr: DiscoveredSR, takeOverHint: Bool = true) throws(ThinError) {
        guard !sr.owner.isEmpty else { return }
        let local: String
        do { local = try host.lvm.localSystemID() } catch { throw .backend("cannot read this host's LVM system ID", error) }
        guard sr.owner != local else { return }
        throw ThinError(.activatedOnAnotherHost, "SR \(sr.names.uuidString) belongs to host \"\(sr.owner)\" (the LVM "
                        + "system ID of VG \(sr.volumeGroup))" + (takeOverHint ? "; if that host is down or has let it "
                        + "go, take it over with thinsr-attach --take-over \(sr.names.uuidString)" : ""),
                        parameters: [sr.owner])
    }

    /// Picks the one candidate whose uuid is `reference`, or else whose name is.
    static func match<T>(_ reference: String, in candidates: [T], uuid: (T) -> UUID,
                         name: (T) -> String) throws(ThinError) -> T {
        // A uuid-shaped reference is a uuid only: falling back to names could act on another SR.
        if let parsed = UUID(uuidString: reference) {
            guard let hit = candidates.first(where: { uuid($0) == parsed }) else { throw notFound(reference) }
            return hit
        }
        let named = candidates.filter { name($0) == reference }
        if named.count > 1 {
            let uuids = named.map { uuid($0).lowercased }.joined(separator: ", ")
            throw ThinError(.invalidArgument, "SR name \"\(reference)\" is ambiguous (\(uuids)); give the uuid")
        }
        guard let hit = named.first else { throw notFound(reference) }
        return hit
    }

    static func notFound(_ reference: String) -> ThinError {
        ThinError(.srDoesNotExist, "no SR \"\(reference)\" on this host; list SRs with thinsr-ls", parameters: [reference])
    }

    private static func srUUID(fromTag tag: String) -> UUID? {
        tag.hasPrefix(SRNames.tagPrefix) ? UUID(uuidString: String(tag.dropFirst(SRNames.tagPrefix.count))) : nil
    }

    private static func role(fromTag tag: String) -> LVRole? {
        tag.hasPrefix(LVRole.tagPrefix) ? LVRole(rawValue: String(tag.dropFirst(LVRole.tagPrefix.count))) : nil
    }

    private static func readCatalogTags(_ tags: [String], into entry: inout DiscoveredSR) {
        for tag in tags {
            if tag.hasPrefix(SRNames.nameTagPrefix) {
                entry.name = TagText.decode(String(tag.dropFirst(SRNames.nameTagPrefix.count))) ?? ""
            } else if tag.hasPrefix(SRNames.modeTagPrefix) {
                entry.mode = SRMode(rawValue: String(tag.dropFirst(SRNames.modeTagPrefix.count))) ?? .beNice
            }
        }
    }
}
