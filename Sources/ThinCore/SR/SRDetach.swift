import ThinLVM
import FoundationEssentials
import ThinDeviceMapper

extension SRLifecycle {
    /// How hard `thinsr-detach` pushes: `--force` once or twice.
    public enum DetachForce: Int, Comparable, Sendable {
        case none, volumes, openVolumes

        public init(count: Int) { self = Self(rawValue: min(max(count, 0), 2)) ?? .none }
        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    /// Detaches the SR. Refuses while volumes are attached unless `force`,
    /// which detaches them first and tears the SR down even when recovery
    /// fails (a failed pool, ids that disagree): those are returned as
    /// warnings. A volume a process holds open is refused unless
    /// `.openVolumes`. Detaching a detached SR succeeds.
    @discardableResult
    public func detach(_ reference: String, force: DetachForce) throws(ThinError) -> [String] {
        let attached: AttachedSR
        let sr: DiscoveredSR
        let (located, lock) = try locate(reference)
        defer { lock.release() }
        switch located {
        case .detached(let detached):
            try finishDetach(detached)
            return []
        case .attached(let open, let discovered): (attached, sr) = (open, discovered)
        }
        let names = sr.names
        var warnings: [String] = []
        do {
            try attached.preallocated.refuseWhileFilling()
        } catch where error.code != .srInUse && force > .none {
            // A catalog that cannot be read does not stop a forced detach.
        }
        try detachVolumes(of: attached, force: force)
        // Templates' images no volume reads any more are released.
        for template in attached.origins.broughtUp() { attached.origins.releaseIfUnused(template) }
        // A detach interrupted after removing the pool finds no pool: carry on.
        let poolExists = try attached.pool.exists()
        if poolExists {
            do {
                try attached.recovered()
            } catch {
                guard force > .none else {
                    throw ThinError(error.code, "\(error.message); thinsr-detach --force detaches it anyway, then "
                                    + "run thinsr-check --repair \(names.uuidString)", parameters: error.parameters)
                }
                warnings.append("\(error.message); detached without finishing it: run thinsr-check --repair "
                                + "\(names.uuidString) before attaching again")
            }
        }
        try tearDown(attached, sr, poolExists: poolExists)
        return warnings
    }

    /// Removes the pool, unmounts the catalog and deactivates the LVs of an
    /// SR whose volumes are detached (the end of a detach, and of an offline
    /// repair that assembled the pool to repair it).
    func tearDown(_ attached: AttachedSR, _ sr: DiscoveredSR, poolExists: Bool = true) throws(ThinError) {
        let names = sr.names
        if poolExists {
            try attached.pool.disassemble()
            FaultInjection.point("pool-removed")
        }
        _ = attached.closeKeepingLock()
        try unmountCatalog(names)
        FaultInjection.point("catalog-unmounted")
        try unmountCatalogCopy(names)
        System.removeDirectory(names.catalogMount)
        for marker in [names.devicesChangingMarker, names.poolGrowingMarker, names.monitorLevelFile] {
            System.removeFile(marker)
        }
        // What holders and transfers left (their volumes are detached now).
        for directory in [names.holdersDirectory, names.transfersDirectory] {
            for entry in System.directoryEntries(directory) {
                let path = "\(directory)/\(entry)"
                for file in System.directoryEntries(path) { System.removeFile("\(path)/\(file)") }
                System.removeDirectory(path)
                System.removeFile(path)
            }
            System.removeDirectory(directory)
        }
        SRMetrics.remove(names)
        System.removeDirectory(names.runDirectory)
        System.removeDirectory(names.deviceDirectory)
        do {
            try host.lvm.setActive(false, group: sr.volumeGroup,
                                   names: LVRole.allCases.compactMap { sr.volumes[$0]?.name } + sr.rawVolumes.map(\.name))
        } catch {
            throw .backend("the SR is detached but its LVs could not be deactivated", error)
        }
    }

    /// A detach killed after unmounting left LVs active (or the copy mounted): finish it.
    private func finishDetach(_ sr: DiscoveredSR) throws(ThinError) {
        try unmountCatalogCopy(sr.names)
        let active = (LVRole.allCases.compactMap { sr.volumes[$0] } + sr.rawVolumes).filter(\.active)
        guard !active.isEmpty, try !Pool(names: sr.names, deviceMapper: host.deviceMapper).exists() else { return }
        do { try host.lvm.setActive(false, group: sr.volumeGroup, names: active.map(\.name)) } catch {
            throw .backend("cannot deactivate the SR's LVs", error)
        }
    }

    /// Refuses attached volumes unless `force`; with it, detaches them all
    /// after checking that no process holds one open (with `.openVolumes`,
    /// those are taken away from their processes instead).
    private func detachVolumes(of attached: AttachedSR, force: DetachForce) throws(ThinError) {
        let active = try attached.devices.active()
        guard !active.isEmpty else { return }
        let volumes = try attached.catalog.volumes(includingUnfinished: true)
        let key = { (uuid: UUID) in volumes.first { $0.uuid == uuid }?.key }
        let keys = active.keys.map { key($0) ?? $0.lowercased }.sorted()
        guard force > .none else {
            throw ThinError(.volumeInUse, "SR \(attached.names.uuidString) has attached volumes "
                            + "(\(keys.joined(separator: ", "))); detach them with thinvdi-detach or use --force",
                            parameters: keys)
        }
        let open = active.filter { $0.value.openCount > 0 }.map { key($0.key) ?? $0.key.lowercased }.sorted()
        guard open.isEmpty || force == .openVolumes else {
            throw ThinError(.volumeInUse, "volume(s) \(open.joined(separator: ", ")) open by a process; close them "
                            + "before detaching the SR, or give --force twice to take them away (their I/O fails)",
                            parameters: open)
        }
        // A mirror goes first: its devices hold the volume's thin device.
        for record in attached.mirrors.list() where !record.state.hasEnded {
            try attached.mirrors.end(record, state: .failed, failure: "the SR was detached with --force")
        }
        for (uuid, info) in active {
            if info.openCount > 0 {
                try attached.devices.yank(uuid, key: key(uuid))
            } else {
                try attached.devices.deactivate(uuid, key: key(uuid))
            }
        }
        FaultInjection.point("volumes-detached")
    }
}
