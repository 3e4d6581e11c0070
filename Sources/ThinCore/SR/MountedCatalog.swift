import FoundationEssentials

/// A mounted catalog, open, with its SR record and the readers lock held.
struct MountedCatalog {
    let names: SRNames
    let catalog: Catalog
    let record: SRRecord
    let readersLock: FileLock

    func close() {
        catalog.close()
        readersLock.release()
    }

    /// Catalogs mounted under the run directory, open. One being unmounted
    /// (its readers lock held exclusively) is skipped, not waited for.
    static func all(host: Host) -> [MountedCatalog] {
        System.directoryEntries(Paths.runRoot).compactMap { entry in
            guard let uuid = UUID(uuidString: entry) else { return nil }
            let names = SRNames(uuid: uuid)
            guard let readersLock = try? FileLock.attempt(path: names.readersLockFile, mode: .shared) else { return nil }
            guard host.system.isMounted(names.catalogMount),
                  let catalog = try? Catalog(path: names.catalogDatabase) else { readersLock.release(); return nil }
            guard let record = try? catalog.srRecord() else {
                catalog.close()
                readersLock.release()
                return nil
            }
            return MountedCatalog(names: names, catalog: catalog, record: record, readersLock: readersLock)
        }
    }
}
