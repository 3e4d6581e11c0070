public import FoundationEssentials
import ThinDeviceMapper
import ThinTools

/// A volume as the tools report it: the catalog record plus live facts.
public struct VolumeView: Sendable {
    public var record: VolumeRecord
    public var srUUID: UUID
    public var physicalUtilisation: UInt64
    public var devicePath: String?
    public var attachedReadOnly: Bool?
    /// A `thinvdi-hydrate` process is copying its template data in.
    public var hydrating = false
}

extension SRVolumes {
    /// Every ready volume, or the one `reference` names.
    public func volumeViews(_ reference: String? = nil) async throws(ThinError) -> [VolumeView] {
        guard let reference else { return try await views(of: try catalog.volumes(), active: try devices.active()) }
        return [try await view(of: try sr.requireVolume(reference, allowingTemplate: true))]
    }

    /// One volume's view: one device query, and its status if it is attached.
    public func view(of volume: VolumeRecord) async throws(ThinError) -> VolumeView {
        var active: [UUID: DeviceInfo] = [:]
        if let info = try devices.info(volume.uuid) { active[volume.uuid] = info }
        return try await views(of: [volume], active: active)[0]
    }

    private func views(of volumes: [VolumeRecord], active: [UUID: DeviceInfo]) async throws(ThinError) -> [VolumeView] {
        let usage = try await mappedBytesByThinID(volumes: volumes, active: active)
        return volumes.map { volume in
            VolumeView(record: volume, srUUID: names.uuid, physicalUtilisation: volume.isPreallocated ? volume.virtualSize : usage[volume.thinID] ?? 0,
                       devicePath: active[volume.uuid] != nil ? names.devicePath(key: volume.key) : nil,
                       attachedReadOnly: active[volume.uuid]?.readOnly,
                       hydrating: ProcessClaim.liveProcess(ofOwner: volume.hydrateOwner) != nil)
        }
    }

    /// Bytes mapped per thin id: from the live devices' status when every
    /// volume asked about is attached, otherwise from `thin_ls` on a metadata
    /// snapshot of the live pool.
    private func mappedBytesByThinID(volumes: [VolumeRecord],
                                     active: [UUID: DeviceInfo]) async throws(ThinError) -> [ThinDeviceID: UInt64] {
        let volumes = volumes.filter { !$0.isPreallocated }
        guard !volumes.isEmpty else { return [:] }
        guard volumes.allSatisfy({ active[$0.uuid] != nil }) else { return try await thinUsage().mapValues(\.mappedBytes) }
        var result: [ThinDeviceID: UInt64] = [:]
        for volume in volumes {
            // A hydrating volume's device is a linear over dm-clone: its thin device below says.
            let devices = [names.volumeDevice(volume.uuid).name]
                + (volume.hydrateOwner != nil ? [names.hydrationDevice(volume.uuid, .destination).name] : [])
            for device in devices where result[volume.thinID] == nil {
                let status: [TableLine]?
                do { status = try host.deviceMapper.status(name: device) } catch {
                    throw .backend("cannot read status of \(device)", error)
                }
                if let line = status?.first, case .active(let mapped, _)? = ThinStatus(parameters: line.parameters) {
                    result[volume.thinID] = mapped * 512
                }
            }
        }
        return result
    }

    /// Per thin id usage from `thin_ls` on a metadata snapshot of the live pool.
    func thinUsage() async throws(ThinError) -> [ThinDeviceID: ThinTools.DeviceUsage] {
        let rows = try await sr.withMetadataSnapshot { metadataPath throws(ThinError) in
            do { return try await host.programs.listDevices(metadataDevice: metadataPath, metadataSnapshot: true) } catch {
                throw .backend("thin_ls failed", error)
            }
        }
        var usage: [ThinDeviceID: ThinTools.DeviceUsage] = [:]
        for row in rows { if let id = ThinDeviceID(row.deviceID) { usage[id] = row } }
        return usage
    }
}
