import ThinTools
import ThinDeviceMapper
import ThinLVM

/// How `thinsr-extend` is asked to grow an SR.
public struct SRExtendRequest: Sendable {
    public enum Size: Sendable {
        case to(UInt64)
        case by(UInt64)
    }
    public var size: Size?
    public var devices: [String]

    public init(size: Size?, devices: [String]) {
        self.size = size
        self.devices = devices
    }
}

extension SRAdministration {
    /// Grows the pool: adds devices to an own-the-world SR's VG, doubles the
    /// catalog once it is half full, grows metadata (and the spare) to what
    /// the larger pool needs, grows the data LV and reloads the pool, which
    /// leaves out-of-data-space mode.
    public func extend(_ request: SRExtendRequest) async throws(ThinError) -> SRStatus {
        let record = try self.record
        try await addDevices(request, record: record)
        let (vg, data, metadata, catalogLV, copyLV) = try storage(record.volumeGroup)
        let extent = max(vg.extentBytes, 512)
        let usage = try pool.usage()
        let catalogGrowth = Self.catalogGrowth(catalogLV, space: System.filesystemSpace(names.catalogMount), extent: extent)
        // The copy is kept as large as the catalog (a killed extend may have grown only the catalog).
        let catalogTarget = catalogLV.sizeBytes + catalogGrowth
        let copyGrowth = copyLV.map { $0.sizeBytes < catalogTarget ? catalogTarget - $0.sizeBytes : 0 } ?? 0

        let metadataTarget = try await metadataTarget(vg: vg, metadata: metadata, usage: usage,
                                                      blockBytes: record.blockSizeBytes, extent: extent)
        let metadataGrowth = (metadataTarget - metadata.sizeBytes) * 2  // the spare grows with it

        let dataTarget: UInt64
        switch request.size {
        case .to(let bytes)?: dataTarget = bytes
        case .by(let bytes)?: dataTarget = data.sizeBytes + bytes
        case nil:
            let overhead = metadataGrowth + catalogGrowth + copyGrowth
            dataTarget = data.sizeBytes + (vg.freeBytes > overhead ? vg.freeBytes - overhead : 0)
        }
        let dataBytes = ByteSize.roundUp(dataTarget, to: extent) / record.blockSizeBytes * record.blockSizeBytes
        guard dataBytes >= data.sizeBytes else {
            throw .invalid("the pool is \(ByteSize.format(data.sizeBytes)); shrinking it to "
                           + "\(ByteSize.format(dataBytes)) is not supported")
        }
        let needed = (ByteSize.roundUp(dataTarget, to: extent) - data.sizeBytes) + metadataGrowth + catalogGrowth
            + copyGrowth
        guard needed <= vg.freeBytes else {
            throw ThinError(.noSpace, "growing the pool to \(ByteSize.format(dataTarget)) needs "
                            + "\(ByteSize.format(needed)) but volume group \(vg.name) has \(ByteSize.format(vg.freeBytes)) "
                            + "free; add a device with --device (own-the-world SRs) or vgextend")
        }
        // An extend killed before its reload left the LVs grown: reloading finishes it.
        let poolBytes = try pool.liveBytes() ?? 0
        guard dataBytes > data.sizeBytes || metadataGrowth > 0 || catalogGrowth > 0 || copyGrowth > 0
                || poolBytes < data.sizeBytes / record.blockSizeBytes * record.blockSizeBytes else {
            throw ThinError(.noSpace, "volume group \(vg.name) has no free space to grow SR \(names.uuidString) into; "
                            + "add a device with --device (own-the-world SRs) or vgextend")
        }
        try System.touch(names.poolGrowingMarker)
        try grow(group: vg.name, metadataTo: metadataGrowth > 0 ? metadataTarget : nil,
                 dataTo: dataBytes > data.sizeBytes ? dataBytes : nil,
                 catalogTo: catalogGrowth > 0 ? catalogTarget : nil, copyTo: copyGrowth > 0 ? catalogTarget : nil)
        // Always: a resize2fs that a killed extend missed is done by the next one.
        try await growCatalogFilesystems(copy: copyLV != nil)
        try reloadPool(dataBytes: max(dataBytes, data.sizeBytes), onFull: record.onFull)
        FaultInjection.point("pool-reloaded")
        System.removeFile(names.poolGrowingMarker)
        return try status()
    }

    /// Metadata for the pool the VG could now hold; doubled when over half used.
    private func metadataTarget(vg: VolumeGroupReport, metadata: LogicalVolumeReport, usage: ThinPoolUsage,
                                blockBytes: UInt64, extent: UInt64) async throws(ThinError) -> UInt64 {
        var target = try await StoragePlan.plannedMetadataBytes(vgBytes: vg.sizeBytes, blockBytes: blockBytes,
                                                                programs: host.programs)
        if usage.usedMetadataBlocks * 2 > usage.totalMetadataBlocks { target = max(target, metadata.sizeBytes * 2) }
        return ByteSize.roundUp(min(max(target, metadata.sizeBytes), StoragePlan.maximumMetadataBytes), to: extent)
    }

    /// The catalog doubles once its filesystem is half full, unless its LV
    /// already outgrew the filesystem (an extend killed before its
    /// resize2fs: this one only resizes). The filesystem's usable size is
    /// its LV's less ext4's overhead (a fifth to a quarter on a small one),
    /// so an LV twice that size has been doubled already.
    static func catalogGrowth(_ catalog: LogicalVolumeReport, space: (totalBytes: UInt64, freeBytes: UInt64)?,
                              extent: UInt64) -> UInt64 {
        guard let space, space.totalBytes - space.freeBytes > space.totalBytes / 2,
              catalog.sizeBytes < space.totalBytes * 2 else { return 0 }
        return ByteSize.roundUp(catalog.sizeBytes, to: extent)
    }

    /// resize2fs of the mounted catalog (and its mounted copy) to its LV's
    /// size (nothing to do when it is that size).
    private func growCatalogFilesystems(copy: Bool) async throws(ThinError) {
        do { try await host.programs.growCatalogFilesystem(device: try sr.mapperPath(.catalog)) } catch {
            throw .backend("resize2fs of the catalog failed", error)
        }
        FaultInjection.point("catalog-resized")
        guard copy, host.system.isMounted(names.catalogCopyMount) else { return }
        do { try await host.programs.growCatalogFilesystem(device: try sr.mapperPath(.catalogCopy)) } catch {
            throw .backend("resize2fs of the catalog copy failed", error)
        }
    }

    /// A `thinsr-extend` killed between its lvextends and the pool's reload
    /// left LVs the pool does not span: reload it at the data LV's size (a
    /// resume also takes in grown metadata; a catalog LV grown without its
    /// resize2fs only wastes its new space until the next thinsr-extend).
    func finishGrowingPool() throws(ThinError) {
        let record = try self.record
        let data = try storage(record.volumeGroup).data
        try reloadPool(dataBytes: data.sizeBytes / record.blockSizeBytes * record.blockSizeBytes, onFull: record.onFull)
    }

    /// `--device`: only an SR that owns its VG takes new disks.
    private func addDevices(_ request: SRExtendRequest, record: SRRecord) async throws(ThinError) {
        guard !request.devices.isEmpty else {
            if request.size == nil && record.mode == .beNice {
                throw .invalid("give --size: a be-nice SR takes only the space it is given")
            }
            return
        }
        guard record.mode == .ownTheWorld else {
            throw .invalid("SR \(names.uuidString) lives in your volume group \(record.volumeGroup); add disks to it "
                           + "with vgextend, then run thinsr-extend --size")
        }
        try await FreeDeviceCheck(host: host).validate(request.devices)
        do { try host.lvm.extendVolumeGroup(record.volumeGroup, devices: request.devices) } catch {
            throw .backend("vgextend failed", error)
        }
        FaultInjection.point("volume-group-extended")
    }

    /// The VG and the data and metadata LVs, as LVM reports them now.
    func storage(_ group: String) throws(ThinError)
        -> (VolumeGroupReport, data: LogicalVolumeReport, metadata: LogicalVolumeReport, catalog: LogicalVolumeReport,
            copy: LogicalVolumeReport?) {
        let groups: [VolumeGroupReport]
        let volumes: [LogicalVolumeReport]
        do {
            groups = try host.lvm.volumeGroups()
            volumes = try host.lvm.logicalVolumes().filter { $0.volumeGroup == group }
        } catch {
            throw .backend("cannot read the volume group", error)
        }
        guard let vg = groups.first(where: { $0.name == group }),
              let data = volumes.first(where: { $0.name == names.lv(.data) }),
              let metadata = volumes.first(where: { $0.name == names.lv(.metadata) }),
              let catalog = volumes.first(where: { $0.name == names.lv(.catalog) }) else {
            throw ThinError(.catalogInconsistent, "SR \(names.uuidString)'s LVs are missing from \(group)")
        }
        return (vg, data, metadata, catalog, volumes.first(where: { $0.name == names.lv(.catalogCopy) }))
    }

    /// lvextend of the catalog and its copy, of the metadata and its spare, then of the data.
    private func grow(group: String, metadataTo metadataBytes: UInt64?, dataTo dataBytes: UInt64?,
                      catalogTo catalogBytes: UInt64?, copyTo copyBytes: UInt64?) throws(ThinError) {
        do {
            if let catalogBytes {
                try host.lvm.extendLogicalVolume(group: group, name: names.lv(.catalog), sizeBytes: catalogBytes)
                FaultInjection.point("catalog-extended")
            }
            if let copyBytes {
                try host.lvm.extendLogicalVolume(group: group, name: names.lv(.catalogCopy), sizeBytes: copyBytes)
                FaultInjection.point("catalog-copy-extended")
            }
            if let metadataBytes {
                try host.lvm.extendLogicalVolume(group: group, name: names.lv(.metadata), sizeBytes: metadataBytes)
                try host.lvm.extendLogicalVolume(group: group, name: names.lv(.spare), sizeBytes: metadataBytes)
                FaultInjection.point("metadata-extended")
            }
            if let dataBytes {
                try host.lvm.extendLogicalVolume(group: group, name: names.lv(.data), sizeBytes: dataBytes)
                FaultInjection.point("data-extended")
            }
        } catch {
            throw .backend("lvextend failed", error)
        }
    }
}
