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

    /// Catalog space new volumes may not use: an eighth of the catalog's
    /// filesystem, at least 4 MiB, so that renames, keys and every operation's
    /// transaction record (destroys included) still fit.
    static func catalogReserveBytes(totalBytes: UInt64) -> UInt64 { max(totalBytes / 8, 4 << 20) }

    /// Refuses to add a volume when the catalog's filesystem is down to its reserve.
    static func requireRoomInCatalog(_ sr: SRNames) throws(ThinError) {
        guard let space = System.filesystemSpace(sr.catalogMount) else { return }
        let reserve = catalogReserveBytes(totalBytes: space.totalBytes)
        guard space.freeBytes >= reserve else {
            throw ThinError(.noSpace, "SR \(sr.uuidString)'s catalog has \(ByteSize.format(space.freeBytes)) free and "
                            + "thinsr keeps \(ByteSize.format(reserve)) for changes to existing volumes; grow it "
                            + "with thinsr-extend (it grows the catalog with the pool) or destroy unneeded volumes")
        }
    }

    /// Refuses to add a thin device when the metadata or the catalog is down
    /// to its reserve, the data is full, or the pool is read-only.
    static func requireRoomForNewDevice(_ usage: ThinPoolUsage, sr: SRNames) throws(ThinError) {
        try requireRoomInCatalog(sr)
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
