public import FoundationEssentials
import ThinDeviceMapper

/// An SR that is attached on this host: its catalog is mounted and its pool
/// assembled. Mutating operations hold the SR-wide lock for their whole run.
public final class AttachedSR {
    public let names: SRNames
    let catalog: Catalog
    let pool: Pool
    private var lock: FileLock?

    public var record: SRRecord { get throws(ThinError) { try catalog.srRecord() } }

    init(names: SRNames, catalog: Catalog, lock: FileLock?) {
        self.names = names
        self.catalog = catalog
        self.pool = Pool(names: names)
        self.lock = lock
    }

    /// Opens the attached SR `reference` names. `exclusive` takes the SR lock
    /// (for mutating operations); readers rely on SQLite's WAL snapshots.
    public static func open(_ reference: String, exclusive: Bool) throws(ThinError) -> AttachedSR {
        if exclusive { try System.requireRoot("this operation") }
        let attached = attachedCatalogs()
        let hit: (names: SRNames, record: SRRecord)
        do {
            hit = try Discovery.match(reference, in: attached, uuid: { $0.names.uuid }, name: { $0.record.name })
        } catch let error where error.code == .srDoesNotExist {
            // Not attached here: tell a detached SR from a missing one.
            if let detached = try? Discovery.find(reference) {
                throw ThinError(.srNotAttached, "SR \(detached.names.uuidString) is not attached; "
                                + "attach it with thinsr-attach \(detached.names.uuidString)",
                                parameters: [reference])
            }
            throw error
        }
        let lock = exclusive ? try FileLock(path: hit.names.lockFile) : nil
        let catalog = try Catalog(path: hit.names.catalogDatabase)
        return AttachedSR(names: hit.names, catalog: catalog, lock: lock)
    }

    /// Catalogs mounted under the run directory, with their SR records.
    public static func attachedCatalogs() -> [(names: SRNames, record: SRRecord)] {
        System.directoryEntries(Paths.runRoot).compactMap { entry in
            guard let uuid = UUID(uuidString: entry) else { return nil }
            let names = SRNames(uuid: uuid)
            guard Mounts.isMounted(names.catalogMount),
                  let catalog = try? Catalog(path: names.catalogDatabase),
                  let record = try? catalog.srRecord() else { return nil }
            return (names, record)
        }
    }

    /// Closes the catalog and releases the lock, so the catalog can be unmounted.
    func close() {
        catalog.database.close()
        lock?.release()
        lock = nil
    }

    /// dm devices of this SR's volumes that exist now, by volume uuid.
    func activeVolumeDevices() throws(ThinError) -> [UUID: DeviceInfo] {
        let all: [String]
        do { all = try DeviceMapper.list() } catch { throw .backend("cannot list dm devices", error) }
        var found: [UUID: DeviceInfo] = [:]
        for name in all where name.hasPrefix(names.volumeDevicePrefix) {
            let hex = name.dropFirst(names.volumeDevicePrefix.count)
            guard hex.count == 32 else { continue }
            let chars = Array(hex)
            let text = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(chars[$0]) }.joined(separator: "-")
            guard let uuid = UUID(uuidString: text) else { continue }
            do {
                if let info = try DeviceMapper.info(name: name) { found[uuid] = info }
            } catch {
                throw .backend("cannot query \(name)", error)
            }
        }
        return found
    }
}

extension AttachedSR {
    public func volumeKeys() throws(ThinError) -> [String] { try catalog.volumes().map(\.key) }
}

public enum Privileges {
    /// Throws `Permission_denied` unless running as root.
    public static func requireRoot(_ tool: String) throws(ThinError) { try System.requireRoot(tool) }
}

extension System {
    /// Writes a text file (used by the generators of man pages and completions).
    public static func writeText(_ path: String, _ text: String) throws(ThinError) { try writeFile(path, text) }
}
