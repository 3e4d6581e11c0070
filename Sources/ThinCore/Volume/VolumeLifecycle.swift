import FoundationEssentials
import ThinDeviceMapper

/// A volume's largest size: dm tables are limited to 2^63 bytes of sectors.
public let maximumVolumeBytes: UInt64 = 1 << 62

/// Creating, destroying, resizing, copying (snapshot, clone, revert) and
/// viewing thin volumes.
public struct SRVolumes: SRConcern {
    let sr: AttachedSR
}

/// Creating and destroying volumes; each is one pool transaction.
extension SRVolumes {
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
        try VolumeRecord.requireSize(sizeBytes)
        let usage = try sr.recovered()
        try SpaceReserve.requireRoomForNewDevice(usage, sr: names)
        return try insertWithNewThinDevice(label: name) { key, thinID in
            var volume = VolumeRecord(
                uuid: UUID(), key: key, name: name,
                description: description, thinID: thinID, virtualSize: ByteSize.roundUp(sizeBytes, to: 512),
                kind: .volume, readWrite: true, sharable: sharable, createdAt: System.currentTime(), keys: [:],
                parentUUID: nil, snapshotOf: nil, state: .creating)
            volume.importOwner = importOwner
            return volume
        }
    }

    /// Makes the row `make` builds (from a key derived from `label` and a
    /// free thin id) with a new, empty thin device, in one pool transaction:
    /// a volume's creation and a template's introduction alike.
    func insertWithNewThinDevice(label: String, _ make: (_ key: String, _ thinID: ThinDeviceID) -> VolumeRecord)
        throws(ThinError) -> VolumeRecord {
        let thinID = try sr.allocateThinID()
        var volume = make(Naming.deriveKey(fromName: label, existing: try catalog.allKeys()), thinID)
        try sr.transact([.createThin(thinID)]) { catalog throws(ThinError) in
            try catalog.insert(volume)
            try catalog.setNextThinID(thinID.successor)
        }
        volume.state = .ready
        return volume
    }

    /// Keys of the SR's ready volumes (shell completion).
    public func volumeKeys() throws(ThinError) -> [String] { try catalog.readyKeys() }

    public func destroyVolume(_ reference: String) throws(ThinError) {
        // A volume whose filling process died is removed by recovery itself: destroying it then succeeds.
        let beingFilled = try catalog.volume(matching: reference).map { $0.importOwner != nil } ?? false
        try sr.recovered()
        if beingFilled, try catalog.volume(matching: reference) == nil { return }
        let volume = try sr.requireVolume(reference)
        if let pid = sr.preallocated.fillingProcess(of: volume) {
            throw ThinError(.volumeInUse, "\(volume.key) is being filled (imported or zeroed) by process \(pid); "
                            + "cancel it (thinvdi-destroy signals it), or wait", parameters: [volume.key])
        }
        try sr.requireDetached(volume, "detach it with thinvdi-detach first")
        try sr.requireNotHydrating(volume, to: "be destroyed")
        if let pid = sr.preallocated.growingProcess(of: volume) {
            throw ThinError(.volumeInUse, "\(volume.key) is being grown by process \(pid); wait for it",
                            parameters: [volume.key])
        }
        if volume.isPreallocated { return try sr.preallocated.removePreallocated(volume) }
        // A data-destroyed snapshot has no thin device left: only its row goes.
        try sr.transact(volume.dataDestroyed ? [] : [.delete(volume.thinID)]) { catalog throws(ThinError) in
            try catalog.setState(.destroying, volume: volume.uuid)
        }
    }
}
