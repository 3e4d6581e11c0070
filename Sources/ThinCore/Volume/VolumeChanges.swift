import ThinDeviceMapper

/// Changes to one volume that send no pool message: its size and its labels.
extension SRVolumes {
    /// Grows a volume; an attached volume's device grows at once. Shrinking
    /// is refused. A preallocated volume's new part is zeroed here, with
    /// the SR lock held: the tools zero it without the lock instead
    /// (`beginResize`, `finishGrowth`).
    public func resizeVolume(_ reference: String, to newSize: UInt64) throws(ThinError) {
        guard let growth = try beginResize(reference, to: newSize) else { return }
        try BlockZeroing.zero(growth.path, from: growth.from, to: growth.to)
        try sr.preallocated.finishGrowth(growth)
    }

    /// Checks a grow and does it at once for a thin volume (nil). A
    /// preallocated volume's LV is extended and the volume marked as being
    /// grown by this process; the caller zeroes the returned range (beyond
    /// the volume's current end, so nothing it shows changes) and then calls
    /// `finishGrowth`, or `abandonGrowth`.
    public func beginResize(_ reference: String, to newSize: UInt64) throws(ThinError) -> RawGrowth? {
        try sr.recovered()
        let volume = try sr.requireVolume(reference)
        try volume.requireNotImporting(to: "be resized")
        try sr.requireNotHydrating(volume, to: "be resized")
        try sr.mirrors.requireNotMirrored(volume, to: "be resized")
        let size = ByteSize.roundUp(newSize, to: 512)
        guard volume.readWrite else { throw .invalid("\(volume.key) is a read-only snapshot and cannot be resized") }
        guard size >= volume.virtualSize else {
            throw .invalid("\(volume.key) is \(ByteSize.format(volume.virtualSize)); shrinking to "
                           + "\(ByteSize.format(size)) is not supported (it would lose data)")
        }
        try VolumeRecord.requireSize(size)
        guard size > volume.virtualSize else { return nil }
        if volume.isPreallocated { return try sr.preallocated.beginGrowPreallocated(volume, to: size) }
        try applySize(size, to: volume)
        return nil
    }

    /// Gives a volume its new size in the catalog, then on its device if attached.
    func applySize(_ size: UInt64, to volume: VolumeRecord) throws(ThinError) {
        guard let info = try devices.info(volume.uuid), info.hasLiveTable else {
            // Detached, or a 0-byte volume's node without a table: the next attach loads the new size.
            try catalog.setVirtualSize(size, volume: volume.uuid)
            FaultInjection.point("size-recorded")
            return
        }
        // The catalog first: a crash before the reload leaves a device the next operation grows.
        try devices.changing(try sr.devicesRecovered()) { () throws(ThinError) in
            try catalog.setVirtualSize(size, volume: volume.uuid)
            FaultInjection.point("size-recorded")
            let device = names.volumeDevice(volume.uuid).name
            do {
                let table = try devices.isInactive(volume.uuid, info: info)
                    ? VolumeDevices.errorTable(sectors: size / 512) : devices.table(for: volume, sizeBytes: size)
                try host.deviceMapper.reload(name: device, table: [table], readOnly: info.readOnly)
                FaultInjection.point("table-loaded")
                try host.deviceMapper.resume(name: device, udev: .standard)
            } catch {
                try? catalog.setVirtualSize(volume.virtualSize, volume: volume.uuid)
                throw .backend("cannot grow the attached device of \(volume.key)", error)
            }
        }
    }

    /// Changes name, description and keys; the volume's key never changes.
    public func setMetadata(_ reference: String, name: String?, description: String?,
                            set: [(String, String)], unset: [String], cbt: Bool? = nil) throws(ThinError) {
        if let name { try Naming.validateLabel(name, what: "name") }
        if let description { try Naming.validateLabel(description, what: "description") }
        for (key, value) in set {
            try Naming.validateLabel(key, what: "key", maximumBytes: 4096)
            try Naming.validateLabel(value, what: "value of \(key)")
            guard !key.isEmpty else { throw .invalid("an empty key is not allowed (expected KEY=VALUE)") }
        }
        let volume = try sr.requireVolume(reference)
        if cbt == true { try volume.requireThin(to: "track changed blocks") }
        try catalog.transaction { () throws(ThinError) in
            try catalog.setLabel(name: name, description: description, volume: volume.uuid)
            for (key, value) in set { try catalog.setKey(key, value: value, volume: volume.uuid) }
            for key in unset { try catalog.unsetKey(key, volume: volume.uuid) }
            if let cbt { try catalog.setCBTEnabled(cbt, volume: volume.uuid) }
            FaultInjection.point("metadata-written")  // before the commit: nothing is kept
        }
    }
}
