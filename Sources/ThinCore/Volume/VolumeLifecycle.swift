import FoundationEssentials
import ThinDeviceMapper

/// A volume's largest size: dm tables are limited to 2^63 bytes of sectors.
public let maximumVolumeBytes: UInt64 = 1 << 62

/// Creating and destroying volumes; each is one pool transaction.
extension AttachedSR {
    @discardableResult
    public func createVolume(name: String, description: String, sizeBytes: UInt64,
                             sharable: Bool) throws(ThinError) -> VolumeRecord {
        try createVolume(name: name, description: description, sizeBytes: sizeBytes, sharable: sharable, importOwner: nil)
    }

    /// Creates a volume; with `importOwner`, marked (in the same commit) as
    /// being filled by that import.
    func createVolume(name: String, description: String, sizeBytes: UInt64, sharable: Bool,
                      importOwner: String?) throws(ThinError) -> VolumeRecord {
        try Naming.validateLabel(name, what: "volume name")
        try Naming.validateLabel(description, what: "volume description")
        try Self.requireVolumeSize(sizeBytes)
        let usage = try recovered()
        try SpaceReserve.requireRoomForNewDevice(usage, sr: names)
        let thinID = try allocateThinID()
        var volume = VolumeRecord(
            uuid: UUID(), key: Naming.deriveKey(fromName: name, existing: try catalog.allKeys()), name: name,
            description: description, thinID: thinID, virtualSize: ByteSize.roundUp(sizeBytes, to: 512),
            kind: .volume, readWrite: true, sharable: sharable, createdAt: System.currentTime(), keys: [:],
            parentUUID: nil, snapshotOf: nil, state: .creating)
        volume.importOwner = importOwner
        try transact([.createThin(thinID)]) { catalog throws(ThinError) in
            try catalog.insert(volume)
            try catalog.setNextThinID(thinID.successor)
        }
        volume.state = .ready
        return volume
    }

    public func destroyVolume(_ reference: String) throws(ThinError) {
        // A volume whose filling process died is removed by recovery itself: destroying it then succeeds.
        let beingFilled = try catalog.volume(matching: reference).map { $0.importOwner != nil } ?? false
        try recovered()
        if beingFilled, try catalog.volume(matching: reference) == nil { return }
        let volume = try requireVolume(reference)
        if let pid = fillingProcess(of: volume) {
            throw ThinError(.volumeInUse, "\(volume.key) is being filled (imported or zeroed) by process \(pid); "
                            + "cancel it (thinvdi-destroy signals it), or wait", parameters: [volume.key])
        }
        try requireDetached(volume, "detach it with thinvdi-detach first")
        try requireNotHydrating(volume, to: "be destroyed")
        if let pid = growingProcess(of: volume) {
            throw ThinError(.volumeInUse, "\(volume.key) is being grown by process \(pid); wait for it",
                            parameters: [volume.key])
        }
        if volume.isPreallocated { return try removePreallocated(volume) }
        // A data-destroyed snapshot has no thin device left: only its row goes.
        try transact(volume.dataDestroyed ? [] : [.delete(volume.thinID)]) { catalog throws(ThinError) in
            try catalog.setState(.destroying, volume: volume.uuid)
        }
    }

    /// The lowest unused id at or after the catalog's next id, wrapping within the 24-bit space.
    func allocateThinID() throws(ThinError) -> ThinDeviceID {
        let used = try catalog.reservedThinIDs()
        var candidate = max(try record.nextThinID, .first)
        for _ in 0..<ThinDeviceID.maximum.value {
            if !used.contains(candidate) { return candidate }
            candidate = candidate.successor
        }
        throw ThinError(.noSpace, "all \(ThinDeviceID.maximum) thin device ids are in use")
    }

    /// The ready volume `reference` names. A template is refused with
    /// `VDI_IS_TEMPLATE` unless `allowingTemplate` (stat, ls, tree, clone,
    /// snapshot and forget are all a template allows).
    public func requireVolume(_ reference: String, allowingTemplate: Bool = false) throws(ThinError) -> VolumeRecord {
        guard let volume = try catalog.volume(matching: reference) else {
            throw ThinError(.volumeDoesNotExist, "no volume \"\(reference)\" in SR \(names.uuidString); list them "
                            + "with thinvdi-ls \(names.uuidString)", parameters: [reference])
        }
        guard allowingTemplate || !volume.isTemplate else {
            throw ThinError(.volumeIsTemplate, "\(volume.key) is a read-only template (\(volume.templateURI ?? "?")): "
                            + "only stat, ls, tree, clone, snapshot and forget apply; clone it with thinvdi-clone "
                            + "and use the clone", parameters: [volume.key])
        }
        return volume
    }

    /// Refuses a volume an import is still filling, unless this process is that import.
    func requireNotImporting(_ volume: VolumeRecord, to action: String) throws(ThinError) {
        guard let owner = volume.importOwner, owner != ProcessClaim.current.ownerMark else { return }
        let filling = volume.isPreallocated ? "being zeroed or imported" : "being imported (thinvdi-import)"
        throw ThinError(.volumeInUse, "\(volume.key) is \(filling); it cannot \(action) until that is done",
                        parameters: [volume.key])
    }

    /// Refuses a snapshot whose data `thinvdi-data-destroy` freed.
    func requireData(_ volume: VolumeRecord, to action: String) throws(ThinError) {
        guard volume.dataDestroyed else { return }
        throw .invalid("\(volume.key)'s data was destroyed (thinvdi-data-destroy): it cannot \(action); it serves "
                       + "only as the base of thinvdi-changed")
    }

    /// Refuses an attached volume with `Volume_in_use`, saying what to do.
    func requireDetached(_ volume: VolumeRecord, _ advice: String) throws(ThinError) {
        guard try devices.info(volume.uuid) == nil else {
            throw ThinError(.volumeInUse, "volume \(volume.key) is attached; \(advice)", parameters: [volume.key])
        }
    }

    static func requireVolumeSize(_ bytes: UInt64) throws(ThinError) {
        guard bytes <= maximumVolumeBytes else {
            throw .invalid("size \(ByteSize.format(bytes)) exceeds the largest volume, \(ByteSize.format(maximumVolumeBytes))")
        }
    }
}
