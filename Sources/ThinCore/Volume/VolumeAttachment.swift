import ThinDeviceMapper

/// Attaching and detaching volumes as block devices.
extension AttachedSR {
    /// Attaches a volume and returns it with its device path. With `inactive`
    /// only the device node is made (see `VolumeDevices.createNode`); a later
    /// attach without it loads the table. Attaching an attached volume in the
    /// same mode succeeds and changes nothing.
    public func attachVolume(_ reference: String, readOnly: Bool,
                             inactive: Bool = false) throws(ThinError) -> (VolumeRecord, path: String) {
        try recovered()
        let volume = try requireVolume(reference)
        try requireData(volume, to: "be attached")
        try requireNotImporting(volume, to: "be attached")
        let readOnly = readOnly || !volume.readWrite
        guard let info = try devices.info(volume.uuid) else {
            if inactive || volume.virtualSize == 0 {
                let path = try devices.createNode(volume)
                return (volume, path)
            }
            return (volume, try devices.activate(volume, readOnly: readOnly))
        }
        guard try !devices.isInactive(volume.uuid, info: info) else {
            if !inactive { try devices.load(volume, readOnly: readOnly) }
            return (volume, try devices.link(volume))
        }
        guard inactive || info.readOnly == readOnly else {
            let mode = info.readOnly ? "read-only" : "read-write"
            throw ThinError(.volumeInUse, "volume \(volume.key) is already attached \(mode); detach it first "
                            + "to attach it \(readOnly ? "read-only" : "read-write")", parameters: [volume.key])
        }
        return (volume, try devices.link(volume))
    }

    /// Detaches a volume for every holder; detaching a detached volume succeeds.
    public func detachVolume(_ reference: String) throws(ThinError) {
        let volume = try requireVolume(reference)
        try devices.deactivate(volume.uuid, key: volume.key)
        holders(of: volume).clear()
    }
}
