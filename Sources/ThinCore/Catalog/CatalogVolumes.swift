import FoundationEssentials
import ThinDeviceMapper

/// The volume rows and their keys.
extension Catalog {
    static let volumeColumns = """
        uuid, key, name, description, thin_id, virtual_size, kind, read_write, sharable, created_at, state,
        parent_uuid, snapshot_of, cbt_enabled, data_source, data_since, data_destroyed, cbt_time, cbt_map, import_owner, raw_lv, grow_owner,
        template_uri, template_format, origin_template, hydrate_meta_id, hydrate_owner
        """

    func volumes(includingUnfinished: Bool = false) throws(ThinError) -> [VolumeRecord] {
        let filter = includingUnfinished ? "" : "WHERE state = 'ready'"
        let rows = try database.query("SELECT \(Self.volumeColumns) FROM volume \(filter) ORDER BY key")
        var keys: [String: [String: String]] = [:]
        for row in try database.query("SELECT volume_uuid, k, v FROM volume_key") {
            keys[row.text(0) ?? "", default: [:]][row.text(1) ?? ""] = row.text(2) ?? ""
        }
        return try rows.map { row throws(ThinError) in try volume(from: row, keys: keys[row.text(0) ?? ""] ?? [:]) }
    }

    /// How many volumes are ready (what `thinsr-stat` counts).
    func volumeCount() throws(ThinError) -> Int {
        Int(try database.query("SELECT count(*) FROM volume WHERE state = 'ready'").first?.int(0) ?? 0)
    }

    /// The ready volume whose key, or else uuid, is `reference`.
    func volume(matching reference: String) throws(ThinError) -> VolumeRecord? {
        for column in ["key", "uuid"] {
            let rows = try database.query(
                "SELECT \(Self.volumeColumns) FROM volume WHERE \(column) = ? AND state = 'ready'",
                [.text(column == "uuid" ? reference.lowercased() : reference)])
            if let row = rows.first {
                let keyRows = try database.query("SELECT k, v FROM volume_key WHERE volume_uuid = ?",
                                                 [.text(row.text(0) ?? "")])
                let keys = Dictionary(keyRows.map { ($0.text(0) ?? "", $0.text(1) ?? "") }, uniquingKeysWith: { $1 })
                return try volume(from: row, keys: keys)
            }
        }
        return nil
    }

    /// Every key in use, including volumes being created or destroyed.
    func allKeys() throws(ThinError) -> Set<String> {
        Set(try database.query("SELECT key FROM volume").compactMap { $0.text(0) })
    }

    /// Keys of ready volumes, for shell completion.
    func readyKeys() throws(ThinError) -> [String] {
        try database.query("SELECT key FROM volume WHERE state = 'ready' ORDER BY key").compactMap { $0.text(0) }
    }

    private func volume(from row: [SQLValue], keys: [String: String]) throws(ThinError) -> VolumeRecord {
        guard let uuid = row.text(0).flatMap(UUID.init(uuidString:)),
              let kind = row.text(6).flatMap(VolumeKind.init(rawValue:)),
              let state = row.text(10).flatMap(VolumeState.init(rawValue:)),
              let thinID = row.int(4).flatMap(ThinDeviceID.init(_:)), let size = row.int(5) else {
            throw ThinError(.catalogInconsistent, "catalog \(database.path) has a malformed volume row")
        }
        return VolumeRecord(uuid: uuid, key: row.text(1) ?? "", name: row.text(2) ?? "",
                            description: row.text(3) ?? "", thinID: thinID, virtualSize: UInt64(size),
                            kind: kind, readWrite: row.int(7) == 1, sharable: row.int(8) == 1,
                            createdAt: row.int(9) ?? 0, keys: keys,
                            parentUUID: row.text(11).flatMap(UUID.init(uuidString:)),
                            snapshotOf: row.text(12).flatMap(UUID.init(uuidString:)), state: state,
                            cbtEnabled: row.int(13) == 1, dataSource: row.text(14).flatMap(UUID.init(uuidString:)),
                            dataSince: row.int(15).map { UInt64($0) }, dataDestroyed: row.int(16) == 1,
                            changeBase: ChangeBase(creationTime: row.int(17), text: row.text(18)),
                            importOwner: row.text(19), rawLV: row.text(20), growOwner: row.text(21),
                            templateURI: row.text(22), templateFormat: row.text(23),
                            originTemplate: row.text(24).flatMap(UUID.init(uuidString:)),
                            hydrateMetaID: row.int(25).flatMap(ThinDeviceID.init(_:)), hydrateOwner: row.text(26))
    }

    func insert(_ volume: VolumeRecord) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("INSERT INTO volume (\(Self.volumeColumns)) VALUES (\(Array(repeating: "?", count: 27).joined(separator: ", ")))", [
                .text(volume.uuid.lowercased), .text(volume.key), .text(volume.name),
                .text(volume.description), .integer(Int64(volume.thinID.value)), .integer(Int64(volume.virtualSize)),
                .text(volume.kind.rawValue), .integer(volume.readWrite ? 1 : 0), .integer(volume.sharable ? 1 : 0),
                .integer(volume.createdAt), .text(volume.state.rawValue),
                volume.parentUUID.map { .text($0.lowercased) } ?? .null,
                volume.snapshotOf.map { .text($0.lowercased) } ?? .null,
                .integer(volume.cbtEnabled ? 1 : 0), volume.dataSource.map { .text($0.lowercased) } ?? .null,
                volume.dataSince.map { .integer(Int64($0)) } ?? .null, .integer(volume.dataDestroyed ? 1 : 0),
                volume.changeBase.map { .integer(Int64($0.creationTime)) } ?? .null,
                volume.changeBase.map { .text($0.text) } ?? .null,
                volume.importOwner.map { .text($0) } ?? .null, volume.rawLV.map { .text($0) } ?? .null,
                volume.growOwner.map { .text($0) } ?? .null,
                volume.templateURI.map { .text($0) } ?? .null, volume.templateFormat.map { .text($0) } ?? .null,
                volume.originTemplate.map { .text($0.lowercased) } ?? .null,
                volume.hydrateMetaID.map { .integer(Int64($0.value)) } ?? .null,
                volume.hydrateOwner.map { .text($0) } ?? .null,
            ])
            for (key, value) in volume.keys.sorted(by: { $0.key < $1.key }) {
                try database.query("INSERT INTO volume_key VALUES (?, ?, ?)",
                                   [.text(volume.uuid.lowercased), .text(key), .text(value)])
            }
        }
    }

    /// Preallocated volumes whose removal a killed process left half done.
    func removingRawVolumes() throws(ThinError) -> [(volume: UUID, lv: String)] {
        try database.query("SELECT uuid, raw_lv FROM volume WHERE state = 'removing'").compactMap { row in
            guard let uuid = row.text(0).flatMap(UUID.init(uuidString:)), let lv = row.text(1) else { return nil }
            return (uuid, lv)
        }
    }

    /// The raw LV names every row holds, in any state.
    func rawLVNames() throws(ThinError) -> Set<String> {
        Set(try database.query("SELECT raw_lv FROM volume WHERE raw_lv IS NOT NULL").compactMap { $0.text(0) })
    }

    /// Volumes (in any state) whose external origin is `template`'s image.
    func dependents(ofTemplate template: UUID) throws(ThinError) -> [String] {
        try database.query("SELECT key FROM volume WHERE origin_template = ? AND data_destroyed = 0 ORDER BY key",
                           [.text(template.lowercased)]).compactMap { $0.text(0) }
    }

    /// Records (or clears) the hidden thin device of a volume's hydration.
    func setHydrateMetaID(_ id: ThinDeviceID?, volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE volume SET hydrate_meta_id = ? WHERE uuid = ?",
                               [id.map { .integer(Int64($0.value)) } ?? .null, .text(volume.lowercased)])
        }
    }

    /// Records a volume's external origin (nil: hydrated, it needs none).
    func setOriginTemplate(_ template: UUID?, volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE volume SET origin_template = ? WHERE uuid = ?",
                               [template.map { .text($0.lowercased) } ?? .null, .text(volume.lowercased)])
        }
    }

    func deleteVolume(_ volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("DELETE FROM volume WHERE uuid = ?", [.text(volume.lowercased)])
        }
    }

    func setState(_ state: VolumeState, volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE volume SET state = ? WHERE uuid = ?", [.text(state.rawValue), .text(volume.lowercased)])
        }
    }

    /// Records the thin id and size a volume switches to when the open
    /// transaction settles, and the snapshot its data then comes from.
    func setPendingSwitch(volume: UUID, thinID: ThinDeviceID, virtualSize: UInt64, dataSource: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("""
                UPDATE volume SET pending_thin_id = ?, pending_virtual_size = ?, pending_data_source = ? WHERE uuid = ?
                """, [.integer(Int64(thinID.value)), .integer(Int64(virtualSize)), .text(dataSource.lowercased),
                      .text(volume.lowercased)])
        }
    }

    /// Records what changed-block queries keep of a snapshot whose data the
    /// open transaction frees; settling it marks the row data-destroyed.
    func setPendingDataDestroy(volume: UUID, base: ChangeBase) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE volume SET pending_data_destroy = 1, cbt_time = ?, cbt_map = ? WHERE uuid = ?",
                               [.integer(Int64(base.creationTime)), .text(base.text), .text(volume.lowercased)])
        }
    }

    func setCBTEnabled(_ enabled: Bool, volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE volume SET cbt_enabled = ? WHERE uuid = ?",
                               [.integer(enabled ? 1 : 0), .text(volume.lowercased)])
        }
    }

    func setVirtualSize(_ size: UInt64, volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE volume SET virtual_size = ? WHERE uuid = ?",
                               [.integer(Int64(size)), .text(volume.lowercased)])
        }
    }

    func setLabel(name: String?, description: String?, volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            let id = SQLValue.text(volume.lowercased)
            if let name { try database.query("UPDATE volume SET name = ? WHERE uuid = ?", [.text(name), id]) }
            if let description {
                try database.query("UPDATE volume SET description = ? WHERE uuid = ?", [.text(description), id])
            }
        }
    }

    func setKey(_ key: String, value: String, volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("INSERT OR REPLACE INTO volume_key VALUES (?, ?, ?)",
                               [.text(volume.lowercased), .text(key), .text(value)])
        }
    }

    func unsetKey(_ key: String, volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("DELETE FROM volume_key WHERE volume_uuid = ? AND k = ?", [.text(volume.lowercased), .text(key)])
        }
    }

    /// Marks a volume as claimed by a process for `work` (its owner mark,
    /// see `ProcessClaim`), or clears the mark (nil) once the work is whole.
    func setOwner(_ owner: String?, of work: VolumeWork, volume: UUID) throws(ThinError) {
        try transaction { () throws(ThinError) in
            try database.query("UPDATE volume SET \(work.column) = ? WHERE uuid = ?",
                               [owner.map { .text($0) } ?? .null, .text(volume.lowercased)])
        }
    }

    /// Volumes a process claimed for `work`, with their owner marks.
    func owners(of work: VolumeWork) throws(ThinError) -> [(volume: UUID, owner: String)] {
        try database.query("SELECT uuid, \(work.column) FROM volume WHERE \(work.column) IS NOT NULL").compactMap { row in
            guard let uuid = row.text(0).flatMap(UUID.init(uuidString:)), let owner = row.text(1) else { return nil }
            return (uuid, owner)
        }
    }
}

/// The long work a process claims a volume for, each with its owner column.
enum VolumeWork {
    /// Filled by an import, or zeroed (a preallocated volume).
    case filling
    /// A preallocated volume's LV being grown.
    case growing
    case hydrating

    var column: String {
        switch self {
        case .filling: "import_owner"
        case .growing: "grow_owner"
        case .hydrating: "hydrate_owner"
        }
    }
}
