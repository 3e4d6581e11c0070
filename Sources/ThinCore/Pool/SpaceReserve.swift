import ThinDeviceMapper

/// The room thinsr keeps in a pool so that it never pushes the pool into
/// read-only or out-of-space mode by adding a thin device.
enum SpaceReserve {
    /// Blocks of pool metadata new thin devices may not use: the kernel's own
    /// reserve (a tenth, at most 16 MiB, below which it turns the pool
    /// read-only) plus an eighth of the metadata, so writes that break sharing
    /// after snapshots still have room.
    static func metadataReserveBlocks(totalBlocks: UInt64) -> UInt64 {
        min(4096, totalBlocks / 10) + max(totalBlocks / 8, 64)
    }

    /// Refuses to add a thin device when the metadata is down to the reserve,
    /// the data is full, or the pool is read-only.
    static func requireRoomForNewDevice(_ usage: ThinPoolUsage, sr: SRNames) throws(ThinError) {
        let reserve = metadataReserveBlocks(totalBlocks: usage.totalMetadataBlocks)
        let free = usage.totalMetadataBlocks - min(usage.usedMetadataBlocks, usage.totalMetadataBlocks)
        if free < reserve {
            let percent = usage.usedMetadataBlocks * 100 / max(usage.totalMetadataBlocks, 1)
            throw ThinError(.noSpace, "SR \(sr.uuidString)'s pool metadata is \(percent)% used and thinsr keeps "
                            + "\(ByteSize.format(reserve * ThinPoolUsage.metadataBlockBytes)) free for writes; grow "
                            + "the SR with thinsr-extend or destroy unneeded snapshots")
        }
        switch usage.mode {
        case .readWrite: break
        case .outOfDataSpace:
            throw ThinError(.noSpace, "SR \(sr.uuidString)'s pool is out of data space; grow it with thinsr-extend")
        case .readOnly:
            throw ThinError(.metadataCheckFailed, "SR \(sr.uuidString)'s pool is read-only; detach it and run "
                            + "thinsr-check --repair \(sr.uuidString)")
        }
    }
}
