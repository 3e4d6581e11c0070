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
}

/// A volume's largest size: dm tables are limited to 2^63 bytes of sectors.
public let maximumVolumeBytes: UInt64 = 1 << 62

extension AttachedSR {
    // MARK: create / destroy

    public func createVolume(name: String, description: String, sizeBytes: UInt64,
                             sharable: Bool) throws(ThinError) -> VolumeRecord {
        try Naming.validateLabel(name, what: "volume name")
        try Naming.validateLabel(description, what: "volume description")
        guard sizeBytes > 0 else { throw .invalid("size 0 is not allowed; give a size such as 10G") }
        guard sizeBytes <= maximumVolumeBytes else {
            throw .invalid("size \(ByteSize.format(sizeBytes)) exceeds the largest volume, \(ByteSize.format(maximumVolumeBytes))")
        }
        let usage = try recover()
        try requireSpaceForNewDevice(usage)
        let record = try self.record
        let thinID = try allocateThinID(after: record.nextThinID)
        let volume = VolumeRecord(
            uuid: UUID(), key: Naming.deriveKey(fromName: name, existing: try catalog.allKeys()), name: name,
            description: description, thinID: thinID, virtualSize: ByteSize.roundUp(sizeBytes, to: 512),
            kind: .volume, readWrite: true, sharable: sharable, createdAt: System.currentTime(), keys: [:],
            parentUUID: nil, snapshotOf: nil, state: .creating)
        try transact([.createThin(thinID)], recovered: usage) { catalog throws(ThinError) in
            try catalog.insert(volume)
            try catalog.setNextThinID(thinID + 1)
        }
        guard let created = try catalog.volume(matching: volume.key) else {
            throw ThinError(.catalogInconsistent, "volume \(volume.key) vanished after creation")
        }
        return created
    }

    public func destroyVolume(_ reference: String) throws(ThinError) {
        let usage = try recover()
        let volume = try requireVolume(reference)
        if try DeviceMapper.infoOrThrow(names.volumeDevice(volume.uuid)) != nil {
            throw ThinError(.volumeInUse, "volume \(volume.key) is attached; detach it with thinvdi-detach first",
                            parameters: [volume.key])
        }
        try transact([.delete(volume.thinID)], recovered: usage) { catalog throws(ThinError) in
            try catalog.setState(.destroying, volume: volume.uuid)
        }
    }

    /// The lowest unused id at or above `start`, wrapping within the 24-bit space.
    func allocateThinID(after start: UInt32) throws(ThinError) -> UInt32 {
        let used = try catalog.thinIDs()
        var candidate = max(start, 1)
        for _ in 0..<ThinTable.maximumDeviceID {
            if candidate > ThinTable.maximumDeviceID { candidate = 1 }
            if !used.contains(candidate) { return candidate }
            candidate += 1
        }
        throw ThinError(.noSpace, "all \(ThinTable.maximumDeviceID) thin device ids are in use")
    }

    // MARK: queries

    public func requireVolume(_ reference: String) throws(ThinError) -> VolumeRecord {
        guard let volume = try catalog.volume(matching: reference) else {
            throw ThinError(.volumeDoesNotExist, "no volume \"\(reference)\" in SR \(names.uuidString); list them "
                            + "with thinvdi-ls \(names.uuidString)", parameters: [reference])
        }
        return volume
    }

    public func volumeViews(_ reference: String? = nil) async throws(ThinError) -> [VolumeView] {
        let volumes: [VolumeRecord]
        if let reference { volumes = [try requireVolume(reference)] } else { volumes = try catalog.volumes() }
        let active = try activeVolumeDevices()
        let usage = try await mappedBytesByThinID(volumes: volumes, active: active)
        return volumes.map { volume in
            VolumeView(record: volume, srUUID: names.uuid, physicalUtilisation: usage[volume.thinID] ?? 0,
                       devicePath: active[volume.uuid] != nil ? names.devicePath(key: volume.key) : nil,
                       attachedReadOnly: active[volume.uuid]?.readOnly)
        }
    }

    /// Bytes mapped per thin id: from the live device's status when every
    /// volume asked about is attached, otherwise from `thin_ls` on a metadata
    /// snapshot of the live pool.
    func mappedBytesByThinID(volumes: [VolumeRecord],
                             active: [UUID: DeviceInfo]) async throws(ThinError) -> [UInt32: UInt64] {
        guard !volumes.isEmpty else { return [:] }
        if volumes.allSatisfy({ active[$0.uuid] != nil }) {
            var result: [UInt32: UInt64] = [:]
            for volume in volumes {
                let status = try DeviceMapper.statusOrThrow(names.volumeDevice(volume.uuid))
                if let line = status?.first, case .active(let mapped, _)? = ThinStatus(parameters: line.parameters) {
                    result[volume.thinID] = mapped * 512
                }
            }
            return result
        }
        return try await thinUsage().mapValues(\.mappedBytes)
    }

    // MARK: attach / detach

    /// Attaches a volume and returns its device path. Attaching an attached
    /// volume in the same mode succeeds and changes nothing.
    public func attachVolume(_ reference: String, readOnly: Bool) throws(ThinError) -> String {
        try recover()
        let volume = try requireVolume(reference)
        let readOnly = readOnly || !volume.readWrite
        if let info = try DeviceMapper.infoOrThrow(names.volumeDevice(volume.uuid)) {
            guard info.readOnly == readOnly else {
                let mode = info.readOnly ? "read-only" : "read-write"
                throw ThinError(.volumeInUse, "volume \(volume.key) is already attached \(mode); detach it first "
                                + "to attach it \(readOnly ? "read-only" : "read-write")", parameters: [volume.key])
            }
            let link = names.devicePath(key: volume.key)
            try System.makeDirectories(names.deviceDirectory)
            try System.symlink(target: "/dev/mapper/\(names.volumeDevice(volume.uuid))", at: link)
            return link
        }
        return try VolumeDevices.activate(names: names, volume: volume, readOnly: readOnly)
    }

    /// Detaches a volume; detaching a detached volume succeeds.
    public func detachVolume(_ reference: String) throws(ThinError) {
        let volume = try requireVolume(reference)
        try VolumeDevices.deactivate(names: names, volume: volume.uuid, key: volume.key)
    }
}

extension DeviceMapper {
    static func infoOrThrow(_ name: String) throws(ThinError) -> DeviceInfo? {
        do { return try info(name: name) } catch { throw .backend("cannot query \(name)", error) }
    }

    static func tableOrThrow(_ name: String) throws(ThinError) -> [TableLine]? {
        do { return try table(name: name) } catch { throw .backend("cannot read the table of \(name)", error) }
    }

    static func statusOrThrow(_ name: String) throws(ThinError) -> [TableLine]? {
        do { return try status(name: name) } catch { throw .backend("cannot read status of \(name)", error) }
    }
}
