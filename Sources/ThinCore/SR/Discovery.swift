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
    /// The LVs of its preallocated raw volumes.
    var rawVolumes: [LogicalVolumeReport] = []

    var names: SRNames { SRNames(uuid: uuid) }

    var isComplete: Bool { LVRole.required.allSatisfy { volumes[$0] != nil } }
    /// Left by a `thinsr-create` that did not finish: it holds no volumes.
    /// Only thinsr's own mark says so (create makes the catalog LV first,
    /// with the mark): an SR whose catalog LV is missing is damaged instead.
    var isIncomplete: Bool { volumes[.catalog]?.tags.contains(SRNames.incompleteTag) ?? false }

    /// The node of the LV that has `role` now (found by tags, not by name).
    func mapperPath(_ role: LVRole) -> String {
        Paths.mapperPath(group: volumeGroup, volume: volumes[role]?.name ?? names.lv(role))
    }

    /// Whether the metadata pair's names and role tags match their roles (a
    /// swap killed half way leaves them apart until `normalizeMetadataPair`).
    var metadataPairIsNormal: Bool {
        guard let metadata = volumes[.metadata], let spare = volumes[.spare] else { return true }
        return metadata.name == names.lv(.metadata) && spare.name == names.lv(.spare)
            && metadata.tags.contains(LVRole.metadata.tag) && !metadata.tags.contains(LVRole.spare.tag)
            && spare.tags.contains(LVRole.spare.tag) && !spare.tags.contains(LVRole.metadata.tag)
    }
}

/// Which of the two metadata-sized LVs is the pool's metadata: the one with
/// the higher generation tag (`thinsr.metagen=N`), else the one tagged with
/// the metadata role. A repair's swap is one `lvchange` giving the repaired
/// copy the next generation; renames and role tags follow, and can be
/// finished from any point, because roles never depend on them.
enum MetadataGeneration {
    static let tagPrefix = "thinsr.metagen="

    static func of(_ volume: LogicalVolumeReport) -> UInt64 {
        volume.tags.compactMap { $0.hasPrefix(tagPrefix) ? UInt64($0.dropFirst(tagPrefix.count)) : nil }.max() ?? 0
    }

    static func tags(of volume: LogicalVolumeReport) -> [String] { volume.tags.filter { $0.hasPrefix(tagPrefix) } }

    /// The metadata and the spare among the LVs tagged with either role.
    static func resolve(_ candidates: [LogicalVolumeReport]) -> (metadata: LogicalVolumeReport?, spare: LogicalVolumeReport?) {
        let ranked = candidates.sorted { a, b in
            let (ga, gb) = (of(a), of(b))
            if ga != gb { return ga > gb }
            let (ma, mb) = (a.tags.contains(LVRole.metadata.tag), b.tags.contains(LVRole.metadata.tag))
            if ma != mb { return ma }
            return a.name < b.name
        }
        guard let first = ranked.first else { return (nil, nil) }
        if ranked.count == 1 && !first.tags.contains(LVRole.metadata.tag) && of(first) == 0 {
            return (nil, first)  // only the spare is left
        }
        return (first, ranked.count > 1 ? ranked[1] : nil)
    }
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
        var metadataPairs: [UUID: [LogicalVolumeReport]] = [:]
        var rawVolumes: [UUID: [LogicalVolumeReport]] = [:]
        for volume in logicalVolumes {
            guard let uuid = volume.tags.lazy.compactMap(Self.srUUID(fromTag:)).first else { continue }
            if volume.tags.contains(SRNames.rawRoleTag) {
                rawVolumes[uuid, default: []].append(volume)
                continue
            }
            guard let role = volume.tags.lazy.compactMap(Self.role(fromTag:)).first else { continue }
            var entry = found[uuid] ?? DiscoveredSR(uuid: uuid, name: "", mode: .beNice,
                                                    volumeGroup: volume.volumeGroup, dataBytes: 0,
                                                    attached: false, owner: volume.systemID, volumes: [:])
            switch role {
            case .metadata, .spare: metadataPairs[uuid, default: []].append(volume)
            case .data:
                entry.volumes[role] = volume
                entry.dataBytes = volume.sizeBytes
            case .catalogCopy:
                entry.volumes[role] = volume
            case .catalog:
                entry.volumes[role] = volume
                Self.readCatalogTags(volume.tags, into: &entry)
            }
            found[uuid] = entry
        }
        return found.values.map { sr in
            var sr = sr
            sr.rawVolumes = (rawVolumes[sr.uuid] ?? []).sorted { $0.name < $1.name }
            let (metadata, spare) = MetadataGeneration.resolve(metadataPairs[sr.uuid] ?? [])
            sr.volumes[.metadata] = metadata
            sr.volumes[.spare] = spare
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
