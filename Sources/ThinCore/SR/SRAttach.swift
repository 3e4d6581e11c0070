import ThinLVM
import ThinTools

extension SRLifecycle {
    /// Attaches the SR: activates its LVs, checks the pool metadata, mounts the
    /// catalog, assembles the pool and settles any open transaction. Attaching
    /// an attached SR succeeds and changes nothing.
    public func attach(_ reference: String, takeOver: Bool = false) async throws(ThinError) -> AttachedSR {
        var (sr, lock) = try lockedFind(reference)
        defer { withExtendedLifetime(lock) {} }  // held through any undo; the returned SR holds it after
        let names = sr.names
        do {
            try discovery.requireOwned(sr)
        } catch where error.code == .activatedOnAnotherHost && takeOver {
            try take(sr)
            sr = try discovery.find(names.uuidString)
        }
        // A metadata repair killed half way left names apart from roles: finish it.
        if !sr.attached && !sr.metadataPairIsNormal { sr = try normalizeMetadataPair(sr.uuid) }
        if sr.attached {
            if try Pool(names: names, deviceMapper: host.deviceMapper).exists() {
                return try AttachedSR.open(names, for: .write, lock: lock, host: host)
            }
            // A catalog left mounted without its pool (an interrupted attach or
            // detach): start the attach again from the beginning.
            try unmountCatalog(names)
            try unmountCatalogCopy(names)
        }
        guard !sr.isIncomplete || !sr.isComplete else {
            throw ThinError(.catalogInconsistent, "SR \(names.uuidString) was not completely created (thinsr-create "
                            + "was interrupted); run thinsr-create --uuid \(names.uuidString) again, or remove it "
                            + "with thinsr-destroy \(names.uuidString)")
        }
        guard sr.volumes[.catalog] != nil else { throw Self.catalogMissing(sr) }
        guard sr.isComplete else {
            throw ThinError(.catalogInconsistent, "SR \(names.uuidString) in VG \(sr.volumeGroup) is missing some "
                            + "of its LVs (has: \(sr.volumes.keys.map(\.rawValue).sorted().joined(separator: ", ")))")
        }
        let attached = try await assemble(sr, lock: lock, recover: true)
        // Only an attach publishes rrdd's figures: an offline check assembles the pool too, then tears it down.
        attached.administration.publishMetrics()
        return attached
    }

    /// Activates the LVs, checks the metadata, mounts the catalog and
    /// assembles the pool, undoing every step if a later one fails. With
    /// `recover` it finishes what a crash left (attach); without, catalog and
    /// pool stay as they are, for the offline repair to repair them online.
    func assemble(_ sr: DiscoveredSR, lock: FileLock, recover: Bool) async throws(ThinError) -> AttachedSR {
        let names = sr.names
        var undo = UndoStack()
        do throws(ThinError) {
            try clearInspectionMounts(names)
            try activate(sr, undo: &undo)
            try await checkMetadata(sr)
            try await preenCatalog(sr)
            try mountCatalog(sr.mapperPath(.catalog), names: names, undo: &undo)
            await mountUsableCatalogCopy(sr, undo: &undo)
            let attached = try openAttachedCatalog(sr, lock: lock)
            undo.push { _ = attached.closeKeepingLock() }
            try attached.pool.assemble(Pool.Layout(
                metadataDevice: sr.mapperPath(.metadata), dataDevice: sr.mapperPath(.data),
                dataBytes: sr.volumes[.data]?.sizeBytes ?? 0, blockBytes: try attached.record.blockSizeBytes,
                onFull: try attached.record.onFull, lowWaterPercent: try attached.record.autoextend.lowWaterPercent))
            let pool = attached.pool
            undo.push { try? pool.disassemble() }
            FaultInjection.point("pool-assembled")
            if recover {
                try attached.recovered()
                FaultInjection.point("recovered")
            }
            attached.devices.removeStaleLinks()
            undo.discard()
            return attached
        } catch {
            undo.run()
            throw error
        }
    }

    /// Gives the SR's VG, which another host owns, to this host.
    private func take(_ sr: DiscoveredSR) throws(ThinError) {
        let local: String
        do { local = try host.lvm.localSystemID() } catch { throw .backend("cannot read this host's LVM system ID", error) }
        guard !local.isEmpty else {
            throw ThinError(.invalidArgument, "this host has no LVM system ID to take SR \(sr.names.uuidString) over "
                            + "with; set system_id_source in lvm.conf (see lvmsystemid(7))")
        }
        do { try host.lvm.takeOver(group: sr.volumeGroup, from: sr.owner, to: local) } catch {
            throw .backend("taking over VG \(sr.volumeGroup) failed", error)
        }
    }

    /// Activates the catalog, metadata, data and raw volume LVs (the spare stays inactive).
    private func activate(_ sr: DiscoveredSR, undo: inout UndoStack) throws(ThinError) {
        let lvNames = [LVRole.catalog, .catalogCopy, .metadata, .data].compactMap { sr.volumes[$0]?.name }
            + sr.rawVolumes.map(\.name)
        do { try host.lvm.setActive(true, group: sr.volumeGroup, names: lvNames) } catch {
            throw ThinError.backend("cannot activate the SR's LVs", error)
        }
        let lvm = host.lvm
        undo.push { try? lvm.setActive(false, group: sr.volumeGroup, names: lvNames) }
        FaultInjection.point("volumes-activated")
    }

    /// Refuses to assemble a pool whose metadata fails `thin_check`.
    private func checkMetadata(_ sr: DiscoveredSR) async throws(ThinError) {
        let check: ThinTools.CheckResult
        do {
            check = try await host.programs.checkMetadata(device: sr.mapperPath(.metadata), metadataSnapshot: false,
                                                          clearNeedsCheckFlag: true)
        } catch {
            throw ThinError.backend("thin_check could not run", error)
        }
        guard check.clean else {
            throw ThinError(.metadataCheckFailed, "pool metadata of SR \(sr.names.uuidString) fails thin_check; "
                            + "repair it with thinsr-check --repair \(sr.names.uuidString), then attach again")
        }
        FaultInjection.point("metadata-checked")
    }

    /// `e2fsck -p` of the catalog's filesystem before it is mounted (after a
    /// crash it replays the journal and fixes what is safe); refuses one it
    /// cannot fix.
    private func preenCatalog(_ sr: DiscoveredSR) async throws(ThinError) {
        let result: FilesystemCheckResult
        do { result = try await host.programs.checkCatalogFilesystem(device: sr.mapperPath(.catalog), mode: .preen) } catch {
            throw ThinError.backend("e2fsck could not run", error)
        }
        guard result.usable else {
            throw ThinError(.catalogInconsistent, "the catalog filesystem of SR \(sr.names.uuidString) has errors "
                            + "e2fsck -p cannot fix (\(CheckReport.filesystemProblem(result.output))); repair it with "
                            + "thinsr-check --repair \(sr.names.uuidString)")
        }
        FaultInjection.point("catalog-checked")
    }

    /// Mounts the catalog copy after `e2fsck -p`; a filesystem e2fsck cannot
    /// fix, or that will not mount, is made anew: the copy is derived data,
    /// rebuilt from the catalog (checked just before) when the writer opens it.
    /// Never fails the attach: an SR without a usable copy works, and
    /// thinsr-check reports it.
    private func mountUsableCatalogCopy(_ sr: DiscoveredSR, undo: inout UndoStack) async {
        guard sr.volumes[.catalogCopy] != nil else { return }
        try? unmountCatalogCopy(sr.names)  // left mounted by a killed detach: never e2fsck a mounted filesystem
        let device = sr.mapperPath(.catalogCopy)
        let programs = host.programs
        if !((try? await programs.checkCatalogFilesystem(device: device, mode: .preen))?.usable ?? false) {
            guard (try? await programs.makeCatalogFilesystem(device: device)) != nil else { return }
            FaultInjection.point("catalog-copy-formatted")
        }
        do { try mountCatalogCopy(device, names: sr.names, undo: &undo) } catch {
            guard (try? await programs.makeCatalogFilesystem(device: device)) != nil else { return }
            try? mountCatalogCopy(device, names: sr.names, undo: &undo)
        }
    }

    /// Opens the freshly mounted catalog under the SR lock, checking it is this SR's.
    private func openAttachedCatalog(_ sr: DiscoveredSR, lock: FileLock) throws(ThinError) -> AttachedSR {
        let lost = { (what: String) in
            ThinError(.catalogInconsistent, "the catalog of SR \(sr.names.uuidString) \(what); run thinsr-check "
                      + "--repair \(sr.names.uuidString)" + (sr.volumes[.catalogCopy] != nil
                                                              ? ", which rebuilds it from its copy," : "")
                      + " then attach again")
        }
        guard System.exists(sr.names.catalogDatabase) else { throw lost("holds no catalog.db") }
        let attached = try AttachedSR.open(sr.names, for: .write, lock: lock, host: host)
        guard attached.catalog.mainIsSound() else {
            attached.close()
            throw lost("fails PRAGMA quick_check")
        }
        let record = try attached.record
        guard record.uuid == sr.uuid else {
            attached.close()
            throw ThinError(.catalogInconsistent, "catalog on \(sr.names.lv(.catalog)) belongs to SR "
                            + "\(record.uuid.lowercased), not \(sr.names.uuidString)")
        }
        return attached
    }
}
