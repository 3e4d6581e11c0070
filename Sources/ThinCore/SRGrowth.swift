import ThinDeviceMapper
import ThinLVM

/// Space policy: what writes do when the pool is full, the metadata reserve
/// thinsr keeps, and growing an SR's pool.
extension AttachedSR {
    /// Blocks of pool metadata new thin devices may not use: the kernel's own
    /// reserve (a tenth, at most 16 MiB, below which it turns the pool
    /// read-only) plus an eighth of the metadata, so writes that break sharing
    /// after snapshots still have room.
    static func metadataReserveBlocks(totalBlocks: UInt64) -> UInt64 {
        min(4096, totalBlocks / 10) + max(totalBlocks / 8, 64)
    }

    /// Refuses to add a thin device when the pool's metadata is down to the
    /// reserve or its data is full, so thinsr never pushes the pool read-only.
    func requireSpaceForNewDevice(_ usage: ThinPoolUsage) throws(ThinError) {
        let reserve = Self.metadataReserveBlocks(totalBlocks: usage.totalMetadataBlocks)
        let free = usage.totalMetadataBlocks - min(usage.usedMetadataBlocks, usage.totalMetadataBlocks)
        if free < reserve {
            let percent = usage.usedMetadataBlocks * 100 / max(usage.totalMetadataBlocks, 1)
            throw ThinError(.noSpace, "SR \(names.uuidString)'s pool metadata is \(percent)% used and thinsr keeps "
                            + "\(ByteSize.format(reserve * ThinPoolUsage.metadataBlockBytes)) free for writes; grow "
                            + "the SR with thinsr-extend or destroy unneeded snapshots")
        }
        switch usage.mode {
        case .readWrite: break
        case .outOfDataSpace:
            throw ThinError(.noSpace, "SR \(names.uuidString)'s pool is out of data space; grow it with thinsr-extend")
        case .readOnly:
            throw ThinError(.metadataCheckFailed, "SR \(names.uuidString)'s pool is read-only; detach it and run "
                            + "thinsr-check --repair \(names.uuidString)")
        }
    }

    /// Records the policy and reloads the live pool with it.
    public func setOnFull(_ policy: OnFullPolicy) throws(ThinError) {
        try catalog.setOnFull(policy)
        FaultInjection.point("policy-recorded")
        try reloadPool(dataBytes: nil, onFull: policy)
    }

    /// Reloads the pool's table; `dataBytes` nil keeps the current length.
    func reloadPool(dataBytes: UInt64?, onFull: OnFullPolicy) throws(ThinError) {
        let record = try self.record
        let length: UInt64
        if let dataBytes {
            length = dataBytes
        } else {
            guard let line = try DeviceMapper.tableOrThrow(pool.device)?.first else {
                throw ThinError(.srNotAttached, "pool device \(pool.device) does not exist; attach the SR")
            }
            length = line.lengthSectors * 512
        }
        try pool.reload(metadataDevice: SRLifecycle.mapperPath(record.volumeGroup, names.metadataLV),
                        dataDevice: SRLifecycle.mapperPath(record.volumeGroup, names.dataLV), dataBytes: length,
                        blockBytes: record.blockSizeBytes, onFull: onFull)
    }
}

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

extension SRLifecycle {
    /// Grows an attached SR's pool: adds devices to an own-the-world SR's VG,
    /// grows metadata (and the spare) to what the larger pool needs, grows the
    /// data LV and reloads the pool, which leaves out-of-data-space mode.
    public static func extend(_ reference: String, _ request: SRExtendRequest) async throws(ThinError) -> SRStatus {
        try System.requireRoot("thinsr-extend")
        let attached = try AttachedSR.open(reference, exclusive: true)
        defer { attached.close() }
        let names = attached.names
        let record = try attached.record
        let group = record.volumeGroup
        if !request.devices.isEmpty {
            guard record.mode == .ownTheWorld else {
                throw .invalid("SR \(names.uuidString) lives in your volume group \(group); add disks to it with "
                               + "vgextend, then run thinsr-extend --size")
            }
            try await DeviceChecks.validateFreeDevices(request.devices)
            do { try LVM.shared.extendVolumeGroup(group, devices: request.devices) } catch {
                throw .backend("vgextend failed", error)
            }
            FaultInjection.point("volume-group-extended")
        } else if request.size == nil && record.mode == .beNice {
            throw .invalid("give --size: a be-nice SR takes only the space it is given")
        }
        let groups: [VolumeGroupReport]
        let volumes: [LogicalVolumeReport]
        do {
            groups = try LVM.shared.volumeGroups()
            volumes = try LVM.shared.logicalVolumes().filter { $0.volumeGroup == group }
        } catch {
            throw .backend("cannot read the volume group", error)
        }
        guard let vg = groups.first(where: { $0.name == group }),
              let data = volumes.first(where: { $0.name == names.dataLV }),
              let metadata = volumes.first(where: { $0.name == names.metadataLV }) else {
            throw ThinError(.catalogInconsistent, "SR \(names.uuidString)'s LVs are missing from \(group)")
        }
        let extent = max(vg.extentBytes, 512)
        let usage = try attached.pool.usage()

        // Metadata for the pool the VG could now hold; doubled when over half used.
        var metadataTarget = try await plannedMetadataBytes(vgBytes: vg.sizeBytes, blockBytes: record.blockSizeBytes)
        if usage.usedMetadataBlocks * 2 > usage.totalMetadataBlocks { metadataTarget = max(metadataTarget, metadata.sizeBytes * 2) }
        metadataTarget = ByteSize.roundUp(min(max(metadataTarget, metadata.sizeBytes), maximumMetadataBytes), to: extent)
        let metadataGrowth = (metadataTarget - metadata.sizeBytes) * 2  // the spare grows with it

        let dataTarget: UInt64
        switch request.size {
        case .to(let bytes)?: dataTarget = bytes
        case .by(let bytes)?: dataTarget = data.sizeBytes + bytes
        case nil: dataTarget = data.sizeBytes + (vg.freeBytes > metadataGrowth ? vg.freeBytes - metadataGrowth : 0)
        }
        let dataBytes = ByteSize.roundUp(dataTarget, to: extent) / record.blockSizeBytes * record.blockSizeBytes
        guard dataBytes >= data.sizeBytes else {
            throw .invalid("the pool is \(ByteSize.format(data.sizeBytes)); shrinking it to "
                           + "\(ByteSize.format(dataBytes)) is not supported")
        }
        let needed = (ByteSize.roundUp(dataTarget, to: extent) - data.sizeBytes) + metadataGrowth
        guard needed <= vg.freeBytes else {
            throw ThinError(.noSpace, "growing the pool to \(ByteSize.format(dataTarget)) needs "
                            + "\(ByteSize.format(needed)) but volume group \(group) has \(ByteSize.format(vg.freeBytes)) "
                            + "free; add a device with --device (own-the-world SRs) or vgextend")
        }
        let poolBytes = (try DeviceMapper.tableOrThrow(attached.pool.device)?.first?.lengthSectors ?? 0) * 512
        // An extend killed before its reload left the LVs grown: reloading finishes it.
        guard dataBytes > data.sizeBytes || metadataGrowth > 0 || poolBytes < data.sizeBytes / record.blockSizeBytes
                * record.blockSizeBytes else {
            throw ThinError(.noSpace, "volume group \(group) has no free space to grow SR \(names.uuidString) into; "
                            + "add a device with --device (own-the-world SRs) or vgextend")
        }
        do {
            if metadataGrowth > 0 {
                try LVM.shared.extendLogicalVolume(group: group, name: names.metadataLV, sizeBytes: metadataTarget)
                try LVM.shared.extendLogicalVolume(group: group, name: names.spareLV, sizeBytes: metadataTarget)
                FaultInjection.point("metadata-extended")
            }
            if dataBytes > data.sizeBytes {
                try LVM.shared.extendLogicalVolume(group: group, name: names.dataLV, sizeBytes: dataBytes)
                FaultInjection.point("data-extended")
            }
        } catch {
            throw .backend("lvextend failed", error)
        }
        try attached.reloadPool(dataBytes: max(dataBytes, data.sizeBytes), onFull: record.onFull)
        FaultInjection.point("pool-reloaded")
        return try attached.status()
    }
}
