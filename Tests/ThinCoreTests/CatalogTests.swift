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
        try catalog.setPendingSwitch(volume: record.uuid, thinID: 9, virtualSize: 4096)
        #expect(try catalog.referencedThinIDs() == [1, 9])
    }

    @Test("a catalog of another format version is refused")
    func formatVersion() throws {
        let catalog = try makeCatalog()
        try catalog.database.execute("UPDATE sr SET format_version = 99")
        #expect { try catalog.srRecord() } throws: { ($0 as? ThinError)?.code == .catalogInconsistent }
    }
}
