import FoundationEssentials
import ThinDeviceMapper

/// Block devices for volumes: a dm `thin` device per attached volume (a
/// `linear` one over a preallocated volume's LV) and a readable link
/// `/dev/thinsr/<sr-uuid>/<key>` to it.
struct VolumeDevices {
    let names: SRNames
    let pool: Pool
    let deviceMapper: any DeviceMapperControl
    let volumeGroup: String

    /// The volume's table: its thin device (with its template's origin
    /// device as external origin), or `linear` over its raw LV, or while
    /// `thinvdi-hydrate` runs, `linear` over the hydration's dm-clone device
    /// (so every write goes through dm-clone, which orders it with the copying).
    func table(for volume: VolumeRecord, sizeBytes: UInt64? = nil) -> TableLine {
        let sectors = (sizeBytes ?? volume.virtualSize) / 512
        if let lv = volume.rawLV {
            return LinearTable(device: Paths.mapperPath(group: volumeGroup, volume: lv)).line(lengthSectors: sectors)
        }
        // (Only a volume the catalog marks as hydrating costs the lookup: an attach keeps its ioctl count.)
        let clone = names.hydrationDevice(volume.uuid, .clone)
        if volume.hydrateOwner != nil, (try? deviceMapper.info(name: clone.name)) != nil {
            return LinearTable(device: clone.path).line(lengthSectors: sectors)
        }
        return thinTable(for: volume, sectors: sectors)
    }

    /// The volume's own thin device, reading its template's image where it
    /// has no block (`withOrigin: false` once every block is its own).
    func thinTable(for volume: VolumeRecord, sectors: UInt64? = nil, withOrigin: Bool = true) -> TableLine {
        let origin = withOrigin ? volume.originTemplate.map { names.originDevice($0).path } : nil
        return ThinTable(poolDevice: pool.path, deviceID: volume.thinID, externalOrigin: origin)
            .line(lengthSectors: sectors ?? volume.virtualSize / 512)
    }

    /// The device's info, or nil if the volume is not attached.
    func info(_ volume: UUID) throws(ThinError) -> DeviceInfo? {
        let device = names.volumeDevice(volume)
        do { return try deviceMapper.info(name: device.name) } catch { throw .backend("cannot query \(device.name)", error) }
    }

    /// The dm devices of this SR's volumes that exist now, by volume uuid.
    func active() throws(ThinError) -> [UUID: DeviceInfo] {
        var found: [UUID: DeviceInfo] = [:]
        for (uuid, name) in try activeNames() {
            do {
                if let info = try deviceMapper.info(name: name) { found[uuid] = info }
            } catch {
                throw .backend("cannot query \(name)", error)
            }
        }
        return found
    }

    /// The names of this SR's volume devices, from one device-mapper list.
    func activeNames() throws(ThinError) -> [(UUID, String)] {
        try owned().compactMap { name, device in
            guard case .volume(let uuid) = device else { return nil }
            return (uuid, name)
        }
    }

    /// Every dm device this SR owns, by what its name says it is, from one
    /// device-mapper list.
    func owned() throws(ThinError) -> [(name: String, device: SRNames.OwnedDevice)] {
        let all: [String]
        do { all = try deviceMapper.list() } catch { throw .backend("cannot list dm devices", error) }
        return all.compactMap { name in
            DmName(validating: name).flatMap(names.owned).map { (name, $0) }
        }
    }

    /// The link's path, made to point at the volume's device.
    func link(_ volume: VolumeRecord) throws(ThinError) -> String {
        let link = names.devicePath(key: volume.key)
        try System.makeDirectories(names.deviceDirectory)
        try System.symlink(target: names.volumeDevice(volume.uuid).path, at: link)
        return link
    }

    func activate(_ volume: VolumeRecord, readOnly: Bool) throws(ThinError) -> String {
        try create(volume, table: [table(for: volume)], readOnly: readOnly, failure: "cannot activate volume")
    }

    /// Creates the volume's device with an `error` table of the volume's
    /// size: a real block device (its size is right, every I/O fails) that
    /// opens no thin device. Datapath.attach makes this half, so the path it
    /// returns exists; `load` (at activate) makes it the volume. A 0-byte
    /// volume gets a node without a table (a table cannot be 0 long), which
    /// the kernel does not let anyone open.
    func createNode(_ volume: VolumeRecord) throws(ThinError) -> String {
        let table = volume.virtualSize == 0 ? [] : [Self.errorTable(sectors: volume.virtualSize / 512)]
        return try create(volume, table: table, readOnly: false, failure: "cannot create the device of volume")
    }

    /// Creates the volume's device with `table` and links it; a link that
    /// cannot be made removes the device again.
    private func create(_ volume: VolumeRecord, table: [TableLine], readOnly: Bool,
                        failure: String) throws(ThinError) -> String {
        let device = names.volumeDevice(volume.uuid)
        do {
            try deviceMapper.create(name: device.name, uuid: device.dmUUID, table: table, readOnly: readOnly,
                                    udev: .standard)
        } catch {
            throw .backend("\(failure) \(volume.key)", error)
        }
        FaultInjection.point("device-created")
        do {
            return try link(volume)
        } catch {
            try? deviceMapper.remove(name: device.name)
            throw error
        }
    }

    /// The table of a device that exists but is not active (yet, or any
    /// more): every I/O fails.
    static func errorTable(sectors: UInt64) -> TableLine {
        ErrorTable().line(lengthSectors: sectors)
    }

    /// Whether the device `createNode` made is waiting for `load`: no table
    /// yet, or its `error` table.
    func isInactive(_ volume: UUID, info: DeviceInfo) throws(ThinError) -> Bool {
        guard info.hasLiveTable else { return true }
        let name = names.volumeDevice(volume).name
        do { return try deviceMapper.table(name: name)?.first?.targetType == .error } catch {
            throw .backend("cannot read the table of \(name)", error)
        }
    }

    /// Loads the volume's table into a device `createNode` made, and resumes it.
    func load(_ volume: VolumeRecord, readOnly: Bool, _ recovered: DevicesRecovered) throws(ThinError) {
        guard volume.virtualSize > 0 else { return }
        let name = names.volumeDevice(volume.uuid).name
        try changing(recovered) { () throws(ThinError) in
            do {
                try deviceMapper.reload(name: name, table: [table(for: volume)], readOnly: readOnly)
                FaultInjection.point("table-loaded")
                try deviceMapper.resume(name: name, udev: .standard)
            } catch {
                throw .backend("cannot activate volume \(volume.key)", error)
            }
        }
    }

    /// Removes the volume's device and its link. A volume held open is
    /// refused with `Volume_in_use`; a detached one is left as it is.
    func deactivate(_ volume: UUID, key: String?) throws(ThinError) {
        let device = names.volumeDevice(volume)
        let label = key ?? volume.lowercased
        let current: DeviceInfo?
        do { current = try deviceMapper.info(name: device.name) } catch {
            throw .backend("cannot deactivate volume \(label)", error)
        }
        if let info = current {
            guard info.openCount == 0 else {
                throw ThinError(.volumeInUse, "volume \(label) is open by a process; close it first", parameters: [label])
            }
            do { try deviceMapper.remove(name: device.name) } catch {
                if error.reason == .busy {
                    throw ThinError(.volumeInUse, "volume \(label) is busy; close it first", parameters: [label])
                }
                throw .backend("cannot deactivate volume \(label)", error)
            }
            FaultInjection.point("device-removed")
        }
        if let key { System.removeFile(names.devicePath(key: key)) }
    }

    /// Takes a device that a process holds open away from it: its table
    /// becomes `error` (that process's I/O fails from now on), it is renamed
    /// out of the SR's names (so no later attach can hand it back to that
    /// process) and goes when the process closes it. The pool under it is
    /// free at once.
    func yank(_ volume: UUID, key: String?) throws(ThinError) {
        let device = names.volumeDevice(volume)
        let label = key ?? volume.lowercased
        let taken = "\(names.takenDevicePrefix)\(SRNames.hex(volume))"
        do {
            let length = try deviceMapper.table(name: device.name)?.first?.lengthSectors ?? 0
            if length > 0 {
                try deviceMapper.reload(name: device.name, table: [Self.errorTable(sectors: length)], readOnly: false)
                try deviceMapper.resume(name: device.name, udev: .standard)
            }
            if try deviceMapper.info(name: taken) != nil { try deviceMapper.removeDeferred(name: taken) }
            try deviceMapper.rename(name: device.name, to: taken)
            try deviceMapper.removeDeferred(name: taken)
        } catch {
            throw .backend("cannot take volume \(label) away from the process holding it", error)
        }
        if let key { System.removeFile(names.devicePath(key: key)) }
    }

    /// Links left from before a reboot or crash point at nothing: remove them.
    func removeStaleLinks() {
        for entry in System.directoryEntries(names.deviceDirectory) {
            let path = "\(names.deviceDirectory)/\(entry)"
            if !System.exists(path) { System.removeFile(path) }
        }
    }

    /// Runs `body`, which suspends a device or changes a table, with the
    /// marker set that makes the next operation reconcile the devices if this
    /// process dies before the change is whole.
    /// Only a recovered SR hands out `DevicesRecovered`: a change that did
    /// not first finish a killed process's change would take its marker away.
    func changing<T>(_ recovered: DevicesRecovered, _ body: () throws(ThinError) -> T) throws(ThinError) -> T {
        try recovered.changing(body)
    }

    /// A device a killed change left half done: suspended, or shorter than
    /// its volume (`growTo` is then the volume whose size it must take;
    /// `inactive`: its live table is the `error` table `createNode` loads).
    struct Unfinished {
        let info: DeviceInfo
        let growTo: VolumeRecord?
        var inactive = false
    }

    /// The active devices a killed change left half done, by volume uuid.
    func unfinished(_ volumes: [VolumeRecord], active: [UUID: DeviceInfo]) throws(ThinError) -> [UUID: Unfinished] {
        let byUUID = Dictionary(volumes.map { ($0.uuid, $0) }, uniquingKeysWith: { first, _ in first })
        var found: [UUID: Unfinished] = [:]
        // A device without a table (a 0-byte volume's) has nothing to finish.
        for (uuid, info) in active where info.hasLiveTable {
            var short: VolumeRecord?
            var inactive = false
            if let volume = byUUID[uuid] {
                let device = names.volumeDevice(uuid).name
                let live: [TableLine]?
                do { live = try deviceMapper.table(name: device) } catch {
                    throw .backend("cannot read the table of \(device)", error)
                }
                // (An inactive device's error table is grown like a thin one.)
                if let line = live?.first, line.lengthSectors < volume.virtualSize / 512 { short = volume }
                inactive = live?.first?.targetType == .error
            }
            if short != nil || info.suspended { found[uuid] = Unfinished(info: info, growTo: short, inactive: inactive) }
        }
        return found
    }

    /// Finishes what `unfinished` found. Only thinsr suspends our volume
    /// devices, and only while it holds the SR lock the caller now holds, so a
    /// suspended one was left by a process that died: resume it. A device
    /// shorter than its catalog size was being grown: grow it.
    func finish(_ unfinished: [UUID: Unfinished]) throws(ThinError) {
        for (uuid, device) in unfinished {
            let name = names.volumeDevice(uuid).name
            if let volume = device.growTo {
                do {
                    let grown = device.inactive ? Self.errorTable(sectors: volume.virtualSize / 512) : table(for: volume)
                    try deviceMapper.reload(name: name, table: [grown], readOnly: device.info.readOnly)
                    try deviceMapper.resume(name: name, udev: .standard)
                } catch {
                    throw .backend("recovery: cannot grow the device of \(volume.key)", error)
                }
            } else {
                do { try deviceMapper.resume(name: name, udev: .standard) } catch {
                    throw .backend("recovery: cannot resume \(name)", error)
                }
            }
        }
    }

    /// Finds and finishes device changes a killed process left half done on
    /// every device the SR owns: volume devices (resumed, or grown to their
    /// catalog size), then the devices under them (a hydration's dm-clone
    /// stack, template origins), resumed. Returns whether there was one.
    @discardableResult
    func reconcile(with volumes: [VolumeRecord]) throws(ThinError) -> Bool {
        let owned = try owned()
        var active: [UUID: DeviceInfo] = [:]
        for case let (name, .volume(uuid)) in owned {
            do { if let info = try deviceMapper.info(name: name) { active[uuid] = info } } catch {
                throw .backend("cannot query \(name)", error)
            }
        }
        let unfinished = try unfinished(volumes, active: active)
        try finish(unfinished)
        let resumed = try resumeStacked(owned)
        return resumed || !unfinished.isEmpty
    }

    /// Resumes the SR's hydration and origin devices a killed change left
    /// suspended; returns whether there was one.
    @discardableResult
    func resumeStacked(_ owned: [(name: String, device: SRNames.OwnedDevice)]? = nil) throws(ThinError) -> Bool {
        var resumed = false
        let devices: [(name: String, device: SRNames.OwnedDevice)]
        if let owned { devices = owned } else { devices = try self.owned() }
        for (name, device) in devices {
            switch device {
            case .hydration, .origin, .mirrorSource: break
            // A volume device is finished by `finish`; a taken one goes with its last opener.
            case .volume, .taken: continue
            }
            let info: DeviceInfo?
            do { info = try deviceMapper.info(name: name) } catch { throw .backend("cannot query \(name)", error) }
            guard let info, info.suspended, info.hasLiveTable else { continue }
            do { try deviceMapper.resume(name: name, udev: .standard) } catch {
                throw .backend("recovery: cannot resume \(name)", error)
            }
            resumed = true
        }
        return resumed
    }
}
