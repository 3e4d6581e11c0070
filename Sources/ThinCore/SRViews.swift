public import FoundationEssentials
public import ThinDeviceMapper
import ThinLVM

/// An attached SR's state as `thinsr-stat` reports it.
public struct SRStatus: Sendable {
    public var record: SRRecord
    public var pool: ThinPoolStatus
    public var volumeCount: Int
    public var attachedVolumeCount: Int
    public var poolDevice: String

    /// SMAPIv3 health: Healthy, or why not.
    public var health: (state: String, detail: String) {
        switch pool {
        case .failed, .error: return ("Unavailable", "the pool has failed")
        case .active(let usage):
            if usage.needsCheck { return ("Unavailable", "the pool metadata needs checking") }
            switch usage.mode {
            case .readWrite: return ("Healthy", "")
            case .readOnly: return ("Unavailable", "the pool is read-only")
            case .outOfDataSpace: return ("Unavailable", "the pool is out of data space")
            }
        }
    }
}

extension AttachedSR {
    public func status() throws(ThinError) -> SRStatus {
        let volumes = try catalog.volumes()
        let active = try activeVolumeDevices()
        return SRStatus(record: try record, pool: try pool.status(), volumeCount: volumes.count,
                        attachedVolumeCount: active.count, poolDevice: pool.path)
    }
}

/// One SR in `thinsr-ls`.
public struct SRSummary: Sendable {
    public var uuid: UUID
    public var name: String
    public var mode: SRMode
    public var volumeGroup: String
    public var dataBytes: UInt64
    public var attached: Bool
    /// The physical volumes of the SR's volume group.
    public var devices: [String]
    /// The LVM system ID of the SR's VG (the owning host), or empty.
    public var owner: String
}

extension SRLifecycle {
    public static func list() throws(ThinError) -> [SRSummary] {
        try System.requireRoot("thinsr-ls")
        let physicalVolumes: [PhysicalVolumeReport]
        do { physicalVolumes = try LVM.shared.physicalVolumes() } catch { throw .backend("pvs failed", error) }
        return try Discovery.all().map { sr in
            SRSummary(uuid: sr.uuid, name: sr.name, mode: sr.mode, volumeGroup: sr.volumeGroup,
                      dataBytes: sr.dataBytes, attached: sr.attached,
                      devices: physicalVolumes.filter { $0.volumeGroup == sr.volumeGroup }.map(\.device).sorted(),
                      owner: sr.owner)
        }
    }

    public static func status(_ reference: String) throws(ThinError) -> SRStatus {
        try System.requireRoot("thinsr-stat")
        return try AttachedSR.open(reference, exclusive: false).status()
    }
}

extension AttachedSR {
    /// Renames or re-describes the SR: in its catalog, and the name also in
    /// the catalog LV's tag so `thinsr-ls` shows it while detached.
    public func setLabel(name: String?, description: String?) throws(ThinError) {
        if let name { try Naming.validateLabel(name, what: "SR name", maximumBytes: TagText.maximumBytes) }
        if let description { try Naming.validateLabel(description, what: "SR description") }
        let record = try self.record
        // The catalog first; the name tag follows from the tags LVM has now,
        // so running the same command again finishes an interrupted rename.
        try catalog.setSRLabel(name: name, description: description)
        FaultInjection.point("catalog-updated")
        guard let name else { return }
        let current: [String]
        do {
            current = try LVM.shared.logicalVolumes()
                .first { $0.volumeGroup == record.volumeGroup && $0.name == names.catalogLV }?.tags ?? []
        } catch {
            throw .backend("cannot read the SR's tags", error)
        }
        let old = current.filter { $0.hasPrefix(SRNames.nameTagPrefix) }
        let new = name.isEmpty ? [] : [SRNames.nameTagPrefix + TagText.encode(name)]
        guard Set(old) != Set(new) else { return }
        do {
            try LVM.shared.retag(group: record.volumeGroup, name: names.catalogLV, remove: old, add: new)
        } catch {
            throw .backend("cannot update the SR's name tag", error)
        }
    }
}
