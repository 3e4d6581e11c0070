public import FoundationEssentials
import ThinDeviceMapper
#if canImport(Glibc)
import Glibc
#endif

/// Block devices for volumes: a dm `thin` device per attached volume and a
/// readable link `/dev/thinsr/<sr-uuid>/<key>` to it.
enum VolumeDevices {
    static func activate(names: SRNames, volume: VolumeRecord, readOnly: Bool) throws(ThinError) -> String {
        let device = names.volumeDevice(volume.uuid)
        let table = ThinTable(poolDevice: "/dev/mapper/\(names.poolDevice)", deviceID: volume.thinID)
        do {
            try DeviceMapper.create(name: device, uuid: names.volumeDeviceUUID(volume.uuid),
                                    table: [table.line(lengthSectors: volume.virtualSize / 512)], readOnly: readOnly)
        } catch {
            throw .backend("cannot activate volume \(volume.key)", error)
        }
        FaultInjection.point("device-created")
        let link = names.devicePath(key: volume.key)
        do {
            try System.makeDirectories(names.deviceDirectory)
            try System.symlink(target: "/dev/mapper/\(device)", at: link)
        } catch {
            try? DeviceMapper.remove(name: device)
            throw error
        }
        return link
    }

    /// Removes the volume's device (suspend flushes outstanding writes first)
    /// and its link. A volume held open is refused with `Volume_in_use`.
    static func deactivate(names: SRNames, volume: UUID, key: String?) throws(ThinError) {
        let device = names.volumeDevice(volume)
        let label = key ?? volume.uuidString.lowercased()
        do {
            if let info = try DeviceMapper.info(name: device) {
                guard info.openCount == 0 else {
                    throw ThinError(.volumeInUse, "volume \(label) is open by a process; close it first",
                                    parameters: [label])
                }
                try DeviceMapper.remove(name: device)
                FaultInjection.point("device-removed")
            }
        } catch let error as DeviceMapperError {
            if error.errno == EBUSY {
                throw ThinError(.volumeInUse, "volume \(label) is busy; close it first", parameters: [label])
            }
            throw .backend("cannot deactivate volume \(label)", error)
        } catch let error as ThinError {
            throw error
        } catch {
            throw .backend("cannot deactivate volume \(label)", error)
        }
        if let key { System.removeFile(names.devicePath(key: key)) }
    }

    /// Links left from before a reboot or crash point at nothing: remove them.
    static func removeStaleLinks(names: SRNames) throws(ThinError) {
        for entry in System.directoryEntries(names.deviceDirectory) {
            let path = "\(names.deviceDirectory)/\(entry)"
            if access(path, F_OK) != 0 { System.removeFile(path) }
        }
    }
}
