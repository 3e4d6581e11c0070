import ThinLVM

/// The SR's own settings: its name and description, and its pool-full policy.
extension SRAdministration {
    /// Renames or re-describes the SR: in its catalog, and the name also in
    /// the catalog LV's tag so `thinsr-ls` shows it while detached.
    public func setLabel(name: String?, description: String?) throws(ThinError) {
        if let name { try Naming.validateSRName(name) }
        if let description { try Naming.validateLabel(description, what: "SR description") }
        let record = try self.record
        // The catalog first; the name tag follows from the tags LVM has now,
        // so running the same command again finishes an interrupted rename.
        try catalog.setSRLabel(name: name, description: description)
        FaultInjection.point("catalog-updated")
        guard let name else { return }
        let current: [String]
        do {
            current = try host.lvm.logicalVolumes()
                .first { $0.volumeGroup == record.volumeGroup && $0.name == names.lv(.catalog) }?.tags ?? []
        } catch {
            throw .backend("cannot read the SR's tags", error)
        }
        let old = current.filter { $0.hasPrefix(SRNames.nameTagPrefix) }
        let new = name.isEmpty ? [] : [SRNames.nameTagPrefix + TagText.encode(name)]
        guard Set(old) != Set(new) else { return }
        do {
            try host.lvm.retag(group: record.volumeGroup, name: names.lv(.catalog), remove: old, add: new)
        } catch {
            throw .backend("cannot update the SR's name tag", error)
        }
    }

    /// Records the policy and reloads the live pool with it.
    public func setOnFull(_ policy: OnFullPolicy) throws(ThinError) {
        try catalog.setOnFull(policy)
        FaultInjection.point("policy-recorded")
        try reloadPool(dataBytes: nil, onFull: policy)
    }

    /// Records the pool monitor's policy; the pool's low water mark follows
    /// the threshold, so the live table is reloaded.
    public func setAutoextend(threshold: Int?, step: AutoextendPolicy.Step?, warning: Int?) throws(ThinError) {
        var policy = try record.autoextend
        if let threshold {
            guard AutoextendPolicy.thresholdRange.contains(threshold) else {
                throw .invalid("--autoextend-threshold \(threshold) is out of range; give 50 to 100 (percent used; 100 "
                               + "never grows the pool)")
            }
            policy.thresholdPercent = threshold
        }
        if let step { policy.step = step }
        if let warning {
            guard AutoextendPolicy.warningRange.contains(warning) else {
                throw .invalid("--warning-threshold \(warning) is out of range; give 1 to 100 (percent used)")
            }
            policy.warningPercent = warning
        }
        try catalog.setAutoextend(policy)
        FaultInjection.point("policy-recorded")
        try reloadPool(dataBytes: nil, onFull: try record.onFull)
    }

    /// Reloads the pool's table; `dataBytes` nil keeps the current length.
    func reloadPool(dataBytes: UInt64?, onFull: OnFullPolicy) throws(ThinError) {
        let record = try self.record
        let live: UInt64?
        if let dataBytes { live = dataBytes } else { live = try pool.liveBytes() }
        guard let length = live else {
            throw ThinError(.srNotAttached, "pool device \(pool.name) does not exist; attach the SR")
        }
        let group = record.volumeGroup
        try pool.reload(Pool.Layout(metadataDevice: names.mapperPath(.metadata, group: group),
                                    dataDevice: names.mapperPath(.data, group: group),
                                    dataBytes: length, blockBytes: record.blockSizeBytes, onFull: onFull,
                                    lowWaterPercent: record.autoextend.lowWaterPercent))
    }
}
