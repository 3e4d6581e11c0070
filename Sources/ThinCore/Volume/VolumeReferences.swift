import FoundationEssentials
import ThinDeviceMapper

/// Resolving what a caller names, once per call: every concern takes the
/// record from here and passes the record on (never its key or uuid, to be
/// looked up again).
extension AttachedSR {
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

    /// The template row a volume's origin names.
    func requireTemplate(_ template: UUID) throws(ThinError) -> VolumeRecord {
        guard let record = try catalog.volume(matching: template.lowercased), record.isTemplate else {
            throw ThinError(.catalogInconsistent, "the template \(template.lowercased) a volume reads is not in the "
                            + "catalog; run thinsr-check")
        }
        return record
    }

    /// Refuses an attached volume with `Volume_in_use`, saying what to do.
    func requireDetached(_ volume: VolumeRecord, _ advice: String) throws(ThinError) {
        guard try devices.info(volume.uuid) == nil else {
            throw ThinError(.volumeInUse, "volume \(volume.key) is attached; \(advice)", parameters: [volume.key])
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
}

/// What a volume's own row allows, whichever concern asks.
extension VolumeRecord {
    /// Refuses a volume an import is still filling, unless this process is that import.
    func requireNotImporting(to action: String) throws(ThinError) {
        guard let owner = importOwner, owner != ProcessClaim.current.ownerMark else { return }
        let filling = isPreallocated ? "being zeroed or imported" : "being imported (thinvdi-import)"
        throw ThinError(.volumeInUse, "\(key) is \(filling); it cannot \(action) until that is done",
                        parameters: [key])
    }

    /// Refuses a snapshot whose data `thinvdi-data-destroy` freed.
    func requireData(to action: String) throws(ThinError) {
        guard dataDestroyed else { return }
        throw .invalid("\(key)'s data was destroyed (thinvdi-data-destroy): it cannot \(action); it serves "
                       + "only as the base of thinvdi-changed")
    }

    /// Refuses a preallocated raw volume for what only thin volumes do.
    func requireThin(to action: String) throws(ThinError) {
        guard isPreallocated else { return }
        throw .invalid("\(key) is a preallocated raw volume: it cannot \(action) (it shares no blocks); copy it "
                       + "into a thin volume with thinvdi-export and thinvdi-import first")
    }

    /// Refuses a size larger than a dm table can hold.
    static func requireSize(_ bytes: UInt64) throws(ThinError) {
        guard bytes <= maximumVolumeBytes else {
            throw .invalid("size \(ByteSize.format(bytes)) exceeds the largest volume, \(ByteSize.format(maximumVolumeBytes))")
        }
    }
}
