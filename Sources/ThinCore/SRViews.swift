public import FoundationEssentials
public import ThinDeviceMapper

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
}

extension SRLifecycle {
    public static func list() throws(ThinError) -> [SRSummary] {
        try System.requireRoot("thinsr-ls")
        return try Discovery.all().map {
            SRSummary(uuid: $0.uuid, name: $0.name, mode: $0.mode, volumeGroup: $0.volumeGroup,
                      dataBytes: $0.dataBytes, attached: $0.attached)
        }
    }

    public static func status(_ reference: String) throws(ThinError) -> SRStatus {
        try System.requireRoot("thinsr-stat")
        return try AttachedSR.open(reference, exclusive: false).status()
    }
}
