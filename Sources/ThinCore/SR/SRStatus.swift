import FoundationEssentials
public import ThinDeviceMapper

/// An attached SR's state as `thinsr-stat` reports it.
public struct SRStatus: Sendable {
    public var record: SRRecord
    public var pool: ThinPoolStatus
    public var volumeCount: Int
    public var attachedVolumeCount: Int
    public var poolDevice: String
    /// The LVs of its preallocated volumes, and its VG's free extents (`lvs`, `vgs`).
    public var rawBytes: UInt64 = 0
    public var groupFreeBytes: UInt64 = 0

    /// SMAPIv3 health: Healthy, or why not. A pool out of data space is
    /// degraded, not unavailable: reads, destroys and thinsr-extend still
    /// work, and xapi's sr-scan fails on anything but Healthy, so it is
    /// Healthy with the reason in the detail.
    public var health: (state: String, detail: String) {
        switch pool {
        case .failed, .error: return ("Unavailable", "the pool has failed")
        case .active(let usage):
            if usage.needsCheck { return ("Unavailable", "the pool metadata needs checking") }
            switch usage.mode {
            case .readWrite: return ("Healthy", "")
            case .readOnly: return ("Unavailable", "the pool is read-only")
            case .outOfDataSpace:
                return ("Healthy", "degraded: the pool is out of data space; writes to unprovisioned blocks wait or "
                        + "fail (the on-full policy) until thinsr-extend adds space")
            }
        }
    }
}

/// The SR as a whole: its status, settings, growth, check and repair, the
/// pool monitor's watch and rrdd's figures.
public struct SRAdministration: SRConcern {
    let sr: AttachedSR
}

extension SRAdministration {
    /// The record, the pool's status, the volume counts and the space beside
    /// the pool: one catalog read, one pool status, one device list, `lvs` and `vgs`.
    public func status() throws(ThinError) -> SRStatus {
        let space = try sr.preallocated.rawSpace()
        return SRStatus(record: try record, pool: try pool.status(), volumeCount: try catalog.volumeCount(),
                        attachedVolumeCount: try devices.activeNames().count, poolDevice: pool.path,
                        rawBytes: space.rawBytes, groupFreeBytes: space.groupFreeBytes)
    }
}
