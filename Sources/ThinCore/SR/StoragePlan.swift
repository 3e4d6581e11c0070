import ThinDeviceMapper
import ThinLVM
import ThinTools

/// How big an SR's LVs are: the catalog and its copy, metadata and its spare, and data.
struct StoragePlan: Equatable {
    /// The catalog's (and its copy's) starting size: 64 MiB, or 32 MiB in a
    /// VG under 4 GiB, which should not spend a quarter of itself on two
    /// catalogs; `thinsr-extend` doubles them once half full.
    static let catalogBytes: UInt64 = 64 << 20
    static func catalogBytes(vgBytes: UInt64) -> UInt64 { vgBytes < 4 << 30 ? 32 << 20 : catalogBytes }
    static let defaultBlockBytes: UInt64 = 64 << 10
    /// dm-thin uses at most ~15.9 GiB of metadata; LVM caps at 15.81 GiB.
    static let maximumMetadataBytes: UInt64 = 16_189 << 20
    static let minimumMetadataBytes: UInt64 = 8 << 20
    /// The smallest metadata `--metadata-size` accepts (as lvcreate's --poolmetadatasize).
    static let smallestMetadataBytes: UInt64 = 2 << 20

    var metadataBytes: UInt64
    var dataBytes: UInt64
    var catalogBytes: UInt64 = StoragePlan.catalogBytes

    /// Metadata is sized for this many thin devices (volumes, snapshots and
    /// clones): 1,000 per GiB of VG, between 10,000 and 100,000, so a small SR
    /// does not spend most of its space on metadata it cannot use.
    static func plannedThins(vgBytes: UInt64) -> UInt64 {
        min(max(vgBytes / (1 << 30) * 1000, 10_000), 100_000)
    }

    /// Metadata for a pool that may grow to `vgBytes`, from `thin_metadata_size`.
    static func plannedMetadataBytes(vgBytes: UInt64, blockBytes: UInt64,
                              programs: any HelperPrograms) async throws(ThinError) -> UInt64 {
        let metadata: UInt64
        do {
            metadata = try await programs.metadataSize(blockBytes: blockBytes, poolBytes: vgBytes,
                                                       maximumThins: plannedThins(vgBytes: vgBytes))
        } catch {
            throw .backend("thin_metadata_size failed", error)
        }
        return min(max(metadata, minimumMetadataBytes), maximumMetadataBytes)
    }

    static func validateMetadataSize(_ bytes: UInt64) throws(ThinError) {
        guard (smallestMetadataBytes...maximumMetadataBytes).contains(bytes) else {
            throw .invalid("metadata size \(ByteSize.format(bytes)) is out of range; give 2M to 15G")
        }
    }

    /// The share of an own-the-world VG (after catalog and metadata) its pool
    /// starts with: the rest stays free extents, for the pool monitor to grow
    /// into (online, in a table reload) and for preallocated volumes. A pool
    /// can grow at any time but never shrink, so it starts at half.
    static let ownTheWorldPoolPercent: UInt64 = 50

    /// Sizes metadata for the largest the pool could grow to (the whole VG) and
    /// the data LV as asked, or `ownTheWorldPoolPercent` of what is left in an own-the-world VG.
    static func make(vg: VolumeGroupReport, poolBytes: UInt64?, blockBytes: UInt64, metadataBytes asked: UInt64?,
                     programs: any HelperPrograms) async throws(ThinError) -> StoragePlan {
        let extent = max(vg.extentBytes, 512)
        var metadata: UInt64
        if let asked {
            try validateMetadataSize(asked)
            metadata = asked
        } else {
            metadata = try await plannedMetadataBytes(vgBytes: vg.sizeBytes, blockBytes: blockBytes, programs: programs)
        }
        metadata = ByteSize.roundUp(metadata, to: extent)
        let catalog = ByteSize.roundUp(catalogBytes(vgBytes: vg.sizeBytes), to: extent)
        let overhead = 2 * catalog + 2 * metadata  // the catalog and its copy
        guard vg.freeBytes > overhead else {
            throw ThinError(.noSpace, "volume group \(vg.name) has \(ByteSize.format(vg.freeBytes)) free; the SR "
                            + "needs \(ByteSize.format(overhead)) for its catalog and metadata before any data")
        }
        let available = (vg.freeBytes - overhead) / extent * extent
        var data: UInt64
        if let poolBytes {
            data = ByteSize.roundUp(ByteSize.roundUp(poolBytes, to: blockBytes), to: extent)
            guard data <= available else {
                throw ThinError(.noSpace, "pool size \(ByteSize.format(poolBytes)) does not fit: volume group "
                                + "\(vg.name) has \(ByteSize.format(available)) left after catalog and metadata")
            }
        } else {
            data = available / extent * ownTheWorldPoolPercent / 100 * extent
        }
        data = data / blockBytes * blockBytes
        guard data >= blockBytes else { throw ThinError(.noSpace, "volume group \(vg.name) leaves no room for pool data") }
        return StoragePlan(metadataBytes: metadata, dataBytes: data, catalogBytes: catalog)
    }

    func bytes(of role: LVRole) -> UInt64 {
        switch role {
        case .catalog, .catalogCopy: return catalogBytes
        case .metadata, .spare: return metadataBytes
        case .data: return dataBytes
        }
    }
}
