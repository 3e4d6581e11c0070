import FoundationEssentials
import Testing
import ThinDeviceMapper
@testable import ThinCore
#if canImport(Glibc)
import Glibc
#endif

@Suite("catalog")
struct CatalogTests {
    let directory: String

    init() {
        var template = Array("/tmp/thinsr-catalog-XXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template))
    }

    func makeCatalog() throws -> Catalog {
        try Catalog.create(path: "\(directory)/catalog.db", record: SRRecord(
            uuid: UUID(), name: "store", description: "d", mode: .ownTheWorld, volumeGroup: "vg",
            blockSizeBytes: 65536, transactionID: 0, nextThinID: 1, createdAt: 1_700_000_000))
    }

    func volume(_ key: String, thinID: ThinDeviceID, state: VolumeState = .ready) -> VolumeRecord {
        VolumeRecord(uuid: UUID(), key: key, name: "name of \(key)", description: "", thinID: thinID,
                     virtualSize: 1 << 30, kind: .volume, readWrite: true, sharable: false, createdAt: 1,
                     keys: ["vdi-type": "user", "content_id": "abc"], parentUUID: nil, snapshotOf: nil, state: state)
    }

    @Test("the SR record round-trips")
    func srRecord() throws {
        let catalog = try makeCatalog()
        let record = try catalog.srRecord()
        #expect(record.name == "store" && record.mode == .ownTheWorld && record.blockSizeBytes == 65536)
        try catalog.setTransactionID(5)
        try catalog.setNextThinID(9)
        #expect(try catalog.srRecord().transactionID == 5)
        #expect(try catalog.srRecord().nextThinID == 9)
    }

    @Test("volumes are found by key, then by uuid, and only when ready")
    func lookup() throws {
        let catalog = try makeCatalog()
        let ready = volume("a", thinID: 1)
        try catalog.insert(ready)
        try catalog.insert(volume("b", thinID: 2, state: .creating))
        #expect(try catalog.volume(matching: "a") == ready)
        #expect(try catalog.volume(matching: ready.uuid.uuidString)?.key == "a")
        #expect(try catalog.volume(matching: ready.uuid.uuidString.lowercased())?.key == "a")
        #expect(try catalog.volume(matching: "b") == nil, "a volume being created is not visible")
        #expect(try catalog.volumes().map(\.key) == ["a"])
        #expect(try catalog.volumes(includingUnfinished: true).count == 2)
        #expect(try catalog.allKeys() == ["a", "b"])
        #expect(try catalog.referencedThinIDs() == [1, 2])
        #expect(try catalog.volume(matching: "a")?.keys == ["vdi-type": "user", "content_id": "abc"])
    }

    @Test("keys and thin ids are unique")
    func uniqueness() throws {
        let catalog = try makeCatalog()
        try catalog.insert(volume("a", thinID: 1))
        #expect(throws: ThinError.self) { try catalog.insert(volume("a", thinID: 2)) }
        #expect(throws: ThinError.self) { try catalog.insert(volume("c", thinID: 1)) }
    }

    @Test("a pending transaction round-trips and clears")
    func pending() throws {
        let catalog = try makeCatalog()
        #expect(try catalog.pending() == nil)
        let pending = PendingTransaction(from: 3, messages: [.createSnapshot(5, origin: 2), .delete(2)])
        #expect(pending.newTransactionID == 4 && pending.mustComplete)
        #expect(!PendingTransaction(from: 3, messages: [.createThin(5)]).mustComplete)
        try catalog.setPending(pending)
        #expect(try catalog.pending() == pending)
        #expect(throws: ThinError.self, "only one transaction may be open") { try catalog.setPending(pending) }
        try catalog.rollBack()
        #expect(try catalog.pending() == nil)
    }

    @Test("an open transaction with a message thinsr never records is refused, not skipped")
    func unknownPendingMessage() throws {
        let catalog = try makeCatalog()
        try catalog.database.query("INSERT INTO pending VALUES (1, 3, 4, 'create_thin 5\nreserve_metadata_snap', 0)")
        #expect { try catalog.pending() } throws: { ($0 as? ThinError)?.code == .catalogInconsistent }
    }

    @Test("a failed body rolls the SQLite transaction back")
    func rollback() throws {
        let catalog = try makeCatalog()
        #expect(throws: ThinError.self) {
            try catalog.transaction { () throws(ThinError) in
                try catalog.insert(volume("x", thinID: 7))
                throw ThinError(.backendFailure, "boom")
            }
        }
        #expect(try catalog.volumes(includingUnfinished: true).isEmpty)
    }

    @Test("deleting a volume deletes its keys")
    func cascade() throws {
        let catalog = try makeCatalog()
        let record = volume("a", thinID: 1)
        try catalog.insert(record)
        try catalog.database.query("DELETE FROM volume WHERE uuid = ?", [.text(record.uuid.uuidString.lowercased())])
        #expect(try catalog.database.query("SELECT count(*) FROM volume_key").first?.int(0) == 0)
    }

    @Test("keys set, replace and unset exactly; lineage links round-trip")
    func keysAndLineage() throws {
        let catalog = try makeCatalog()
        let origin = volume("origin", thinID: 1)
        try catalog.insert(origin)
        var snapshot = volume("snap", thinID: 2)
        snapshot.keys = [:]
        snapshot.parentUUID = origin.uuid
        snapshot.snapshotOf = origin.uuid
        try catalog.insert(snapshot)
        let stored = try #require(try catalog.volume(matching: "snap"))
        #expect(stored.parentUUID == origin.uuid && stored.snapshotOf == origin.uuid)
        let tricky = "a=b=c; $(x) \n\u{1F600} tags[\"x\"]"
        try catalog.setKey("_sm_config_host", value: tricky, volume: origin.uuid)
        try catalog.setKey("vdi-type", value: "system", volume: origin.uuid)
        try catalog.unsetKey("content_id", volume: origin.uuid)
        try catalog.unsetKey("never-set", volume: origin.uuid)
        #expect(try catalog.volume(matching: "origin")?.keys == ["_sm_config_host": tricky, "vdi-type": "system"])
    }

    @Test("a pending switch counts as a used thin id")
    func pendingSwitch() throws {
        let catalog = try makeCatalog()
        let record = volume("a", thinID: 1)
        try catalog.insert(record)
        try catalog.setPendingSwitch(volume: record.uuid, thinID: 9, virtualSize: 4096, dataSource: record.uuid)
        #expect(try catalog.referencedThinIDs() == [1, 9])
    }

    @Test("a catalog of another format version is refused")
    func formatVersion() throws {
        let catalog = try makeCatalog()
        try catalog.database.execute("UPDATE sr SET format_version = 99")
        #expect { try catalog.srRecord() } throws: { ($0 as? ThinError)?.code == .catalogInconsistent }
    }
}

@Suite("catalog copy")
struct CatalogCopyTests {
    let directory: String

    init() {
        var template = Array("/tmp/thinsr-copy-XXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template))
    }

    var mainPath: String { "\(directory)/catalog.db" }
    var copyPath: String { "\(directory)/copy.db" }

    func makeCatalog() throws -> Catalog {
        let catalog = try Catalog.create(path: mainPath, record: SRRecord(
            uuid: UUID(), name: "store", description: "d", mode: .beNice, volumeGroup: "vg",
            blockSizeBytes: 65536, transactionID: 0, nextThinID: 1, createdAt: 1_700_000_000))
        try catalog.copy.attach(at: copyPath)
        return catalog
    }

    func volume(_ key: String, thinID: ThinDeviceID, parent: UUID? = nil) -> VolumeRecord {
        VolumeRecord(uuid: UUID(), key: key, name: "name \(key) = -x \"q\"\nü", description: "about \(key)",
                     thinID: thinID, virtualSize: 1 << 30, kind: parent == nil ? .volume : .snapshot, readWrite: true,
                     sharable: false, createdAt: 1, keys: ["k=1": "v", "--description": "-"], parentUUID: parent,
                     snapshotOf: parent, state: .ready)
    }

    /// Every row of the catalog, as a rebuild must reproduce it.
    func contents(_ catalog: Catalog) throws -> [String] {
        try CatalogCopy.copiedTables.flatMap { table in
            try catalog.database.query("SELECT * FROM main.\(table) ORDER BY 1, 2").map { "\(table) \($0)" }
        }
    }

    @Test("every commit reaches the copy, and a catalog rebuilt from it holds every row")
    func replication() throws {
        let catalog = try makeCatalog()
        let base = volume("base", thinID: 1)
        try catalog.insert(base)
        var parent = base.uuid
        for index in 2...20 {
            let snapshot = volume("s\(index)", thinID: ThinDeviceID(UInt32(index))!, parent: parent)
            try catalog.insert(snapshot)
            parent = snapshot.uuid
        }
        try catalog.setKey("k=1", value: "replaced", volume: base.uuid)   // INSERT OR REPLACE
        try catalog.unsetKey("--description", volume: base.uuid)
        try catalog.setLabel(name: "renamed", description: nil, volume: base.uuid)
        try catalog.setPending(PendingTransaction(from: 0, messages: [.delete(20)]))
        try catalog.setState(.destroying, volume: parent)
        try catalog.settle(PendingTransaction(from: 0, messages: [.delete(20)]))   // a cascade of key deletes
        try catalog.setSRLabel(name: "store2", description: "again")
        #expect(try catalog.copy.isCurrent())
        let before = try contents(catalog)
        catalog.close()

        let rebuilt = "\(directory)/rebuilt.db"
        try CatalogCopy.rebuild(at: rebuilt, fromCopy: copyPath)
        let summary = try CatalogCopy.inspect(at: copyPath)
        #expect(summary.volumeCount == 19 && summary.record.name == "store2")
        let again = try Catalog(path: rebuilt)
        #expect(try contents(again) == before)
        #expect(try again.volume(matching: "base")?.keys == ["k=1": "replaced"])
        #expect(try again.integrityProblems().isEmpty)
    }

    @Test("a copy a commit behind, or not a database, is rebuilt when a writer attaches it")
    func staleCopy() throws {
        let catalog = try makeCatalog()
        try catalog.insert(volume("a", thinID: 1))
        catalog.copy.detach()
        try catalog.insert(volume("b", thinID: 2))   // as if the copy's commit was lost
        let rows = try contents(catalog)
        catalog.close()

        let reopened = try Catalog(path: mainPath)
        try reopened.database.query("ATTACH DATABASE ? AS copy", [.text(copyPath)])
        #expect(try reopened.copy.isCurrent() == false)
        try reopened.database.execute("DETACH DATABASE copy")
        try reopened.copy.attach(at: copyPath)
        #expect(try reopened.copy.isCurrent())
        reopened.close()
        try CatalogCopy.rebuild(at: "\(directory)/r1.db", fromCopy: copyPath)
        #expect(try contents(try Catalog(path: "\(directory)/r1.db")) == rows)

        try System.writeFile(copyPath, String(repeating: "not a database ", count: 400))
        for suffix in ["-wal", "-shm"] { System.removeFile(copyPath + suffix) }
        let third = try Catalog(path: mainPath)
        try third.copy.attach(at: copyPath)
        #expect(try third.copy.isCurrent())
        third.close()
        try CatalogCopy.rebuild(at: "\(directory)/r2.db", fromCopy: copyPath)
        #expect(try contents(try Catalog(path: "\(directory)/r2.db")) == rows)
    }

    @Test("a copy ahead of the catalog stops writers; a damaged or missing catalog never overwrites its copy")
    func catalogNeverOverwritesABetterCopy() throws {
        let catalog = try makeCatalog()
        try catalog.insert(volume("a", thinID: 1))
        try catalog.insert(volume("b", thinID: 2))
        catalog.close()
        let copyRows = { () throws -> [[SQLValue]] in
            let reader = try Catalog(path: ":memory:", create: true)
            defer { reader.close() }
            try reader.database.query("ATTACH DATABASE ? AS copy", [.text(self.copyPath)])
            return try reader.database.query("SELECT * FROM copy.copy_volume ORDER BY key")
        }
        let rows = try copyRows()
        #expect(rows.count == 2)

        // The catalog lost its last commit (its log), the copy has it.
        let older = try Catalog(path: mainPath)
        try older.database.execute("UPDATE sr SET revision = revision - 1")
        #expect(throws: ThinError.self) { try older.copy.attach(at: copyPath) }
        #expect(!older.copyAttached)
        older.close()
        #expect(try copyRows() == rows)

        // A catalog whose pages past the header are garbage leaves the copy as it is.
        let descriptor = open(mainPath, O_WRONLY)
        let garbage = [UInt8](repeating: 0x5a, count: 3 * 4096)
        #expect(pwrite(descriptor, garbage, garbage.count, 4096) == garbage.count)
        close(descriptor)
        let damaged = try Catalog(path: mainPath)
        #expect(try damaged.copy.attach(at: copyPath) == false)
        damaged.close()
        #expect(try copyRows() == rows)

        // A catalog that is gone is not made anew as an empty one.
        System.removeFile(mainPath)
        #expect(throws: ThinError.self) { try Catalog(path: mainPath) }
    }

    @Test("a copy that fails mid-commit is dropped and the commit goes through without it")
    func failingCopy() throws {
        let catalog = try makeCatalog()
        try catalog.insert(volume("a", thinID: 1))
        let other = try Catalog(path: ":memory:", create: true)
        try other.database.query("ATTACH DATABASE ? AS copy", [.text(copyPath)])
        try other.database.execute("DROP TABLE copy.copy_volume")   // the copy breaks under the writer
        other.close()
        try catalog.insert(volume("b", thinID: 2))
        #expect(!catalog.copyAttached)
        #expect(try catalog.volumes().map(\.key) == ["a", "b"])
        #expect(try catalog.copy.attach(at: copyPath), "the next writer rebuilds it")
        #expect(try catalog.copy.isCurrent())
    }

    @Test("a damaged copy is refused for a rebuild")
    func damagedCopy() throws {
        let catalog = try makeCatalog()
        try catalog.insert(volume("a", thinID: 1))
        catalog.close()
        try System.writeFile(copyPath, "garbage")
        #expect(throws: ThinError.self) { try CatalogCopy.inspect(at: copyPath) }
        #expect(throws: ThinError.self) { try CatalogCopy.rebuild(at: "\(directory)/r.db", fromCopy: copyPath) }
    }
}
