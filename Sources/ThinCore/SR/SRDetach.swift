import ThinLVM
import FoundationEssentials
import ThinDeviceMapper

extension SRLifecycle {
    /// Detaches the SR. Refuses while volumes are attached unless `force`,
    /// which detaches them first (refusing any that a process holds open, so
    /// no written data is lost). Detaching a detached SR succeeds.
    public func detach(_ reference: String, force: Bool) throws(ThinError) {
        let attached: AttachedSR
        let sr: DiscoveredSR
        let (located, lock) = try locate(reference)
        defer { lock.release() }
        switch located {
        case .detached(let detached): return try finishDetach(detached)
        case .attached(let open, let discovered): (attached, sr) = (open, discovered)
        }
        let names = sr.names
        try detachVolumes(of: attached, force: force)
        // A detach interrupted after removing the pool finds no pool: carry on.
        if try attached.pool.exists() {
            try attached.recovered()
            try attached.pool.disassemble()
            FaultInjection.point("pool-removed")
        }
        _ = attached.closeKeepingLock()
        try unmountCatalog(names)
        FaultInjection.point("catalog-unmounted")
        System.removeDirectory(names.catalogMount)
        System.removeDirectory(names.runDirectory)
        System.removeDirectory(names.deviceDirectory)
        do {
            try host.lvm.setActive(false, group: sr.volumeGroup, names: LVRole.allCases.compactMap { sr.volumes[$0]?.name })
        } catch {
            throw .backend("the SR is detached but its LVs could not be deactivated", error)
        }
    }

    /// A detach killed after unmounting left LVs active: finish it.
    private func finishDetach(_ sr: DiscoveredSR) throws(ThinError) {
        let active = LVRole.allCases.compactMap { sr.volumes[$0] }.filter(\.active)
        guard !active.isEmpty, try !Pool(names: sr.names, deviceMapper: host.deviceMapper).exists() else { return }
        do { try host.lvm.setActive(false, group: sr.volumeGroup, names: active.map(\.name)) } catch {
            throw .backend("cannot deactivate the SR's LVs", error)
        }
    }

    /// Refuses attached volumes unless `force`; with it, detaches them all
    /// after checking that no process holds one open.
    private func detachVolumes(of attached: AttachedSR, force: Bool) throws(ThinError) {
        let active = try attached.devices.active()
        guard !active.isEmpty else { return }
        let volumes = try attached.catalog.volumes(includingUnfinished: true)
        let key = { (uuid: UUID) in volumes.first { $0.uuid == uuid }?.key }
        let keys = active.keys.map { key($0) ?? $0.lowercased }.sorted()
        guard force else {
            throw ThinError(.volumeInUse, "SR \(attached.names.uuidString) has attached volumes "
                            + "(\(keys.joined(separator: ", "))); detach them with thinvdi-detach or use --force",
                            parameters: keys)
        }
        for (uuid, info) in active where info.openCount > 0 {
            let label = key(uuid) ?? uuid.lowercased
            throw ThinError(.volumeInUse, "volume \(label) is open by a process; close it before detaching the SR",
                            parameters: [label])
        }
        for uuid in active.keys { try attached.devices.deactivate(uuid, key: key(uuid)) }
        FaultInjection.point("volumes-detached")
    }
}
