import ThinTools
import FoundationEssentials

/// Which state came from which: the lineage tree, changed blocks between
/// two states, and a snapshot's data destroyed down to its history.
public struct SRLineage: SRConcern {
    let sr: AttachedSR
}

/// One node of the lineage tree, with space figures from `thin_ls`.
public struct LineageNode: Sendable {
    public var volume: VolumeRecord
    public var mappedBytes: UInt64
    public var exclusiveBytes: UInt64
    public var sharedBytes: UInt64
    public var children: [LineageNode]
}

extension SRLineage {
    /// The lineage forest of the SR, or the subtree rooted at `reference`.
    public func tree(_ reference: String? = nil) async throws(ThinError) -> [LineageNode] {
        let volumes = try catalog.volumes()
        let usage = try await sr.volumes.thinUsage()
        let known = Set(volumes.map(\.uuid))
        var children: [UUID: [VolumeRecord]] = [:]
        for volume in volumes {
            if let parent = volume.parentUUID, known.contains(parent) { children[parent, default: []].append(volume) }
        }
        func node(_ volume: VolumeRecord) -> LineageNode {
            let use = volume.isPreallocated ? nil : usage[volume.thinID]
            let raw = volume.isPreallocated ? volume.virtualSize : 0   // all of a raw LV is its own
            return LineageNode(volume: volume, mappedBytes: use?.mappedBytes ?? raw,
                               exclusiveBytes: use?.exclusiveBytes ?? raw, sharedBytes: use?.sharedBytes ?? 0,
                               children: (children[volume.uuid] ?? []).sorted { $0.createdAt < $1.createdAt }
                                   .map(node))
        }
        if let reference { return [node(try sr.requireVolume(reference, allowingTemplate: true))] }
        return volumes.filter { $0.parentUUID.map { !known.contains($0) } ?? true }
            .sorted { ($0.createdAt, $0.key) < ($1.createdAt, $1.key) }.map(node)
    }
}
