import FoundationEssentials
import ThinCore

/// SMAPIv3's `volume` record, plus thinsr's own fields.
struct VolumeJSON: Encodable {
    var key: String
    var uuid: String
    var name: String
    var description: String
    var read_write: Bool
    var sharable: Bool
    var virtual_size: UInt64
    var physical_utilisation: UInt64
    var uri: [String]
    var keys: [String: String]
    var cbt_enabled: Bool
    // thinsr's own
    var sr: String
    var kind: String
    /// Nil once the snapshot's data was destroyed (no thin device left), and for a preallocated volume.
    var thin_id: UInt32?
    /// A raw LV beside the pool, not a thin volume.
    var preallocated: Bool
    var raw_lv: String?
    var created: String
    var attached: Bool
    var device_path: String?
    var attached_read_only: Bool?
    /// A template's image, and its format.
    var template_uri: String?
    var template_format: String?
    /// The template whose image this volume reads where it has no block of its own (nil once hydrated).
    var origin_template: String?
    /// The volume is being hydrated (thinvdi-hydrate).
    var hydrating: Bool

    init(_ view: VolumeView) {
        let record = view.record
        key = record.key
        uuid = record.uuid.uuidString.lowercased()
        name = record.name
        description = record.description
        read_write = record.readWrite
        sharable = record.sharable
        virtual_size = record.virtualSize
        physical_utilisation = view.physicalUtilisation
        sr = view.srUUID.uuidString.lowercased()
        uri = ["thinsr://\(sr)/\(record.key)"]
        keys = record.keys
        cbt_enabled = record.cbtEnabled
        kind = record.dataDestroyed ? "cbt_metadata" : record.kind.rawValue
        thin_id = record.dataDestroyed || record.isPreallocated ? nil : record.thinDeviceNumber
        preallocated = record.isPreallocated
        raw_lv = record.rawLV
        created = isoTimestamp(record.createdAt)
        attached = view.devicePath != nil
        device_path = view.devicePath
        attached_read_only = view.attachedReadOnly
        template_uri = record.templateURI
        template_format = record.templateFormat
        origin_template = record.originTemplate?.uuidString.lowercased()
        hydrating = view.hydrating
    }
}

/// SMAPIv3's `sr_stat` record, plus the pool's figures.
struct SRStatJSON: Encodable {
    var sr: String
    var name: String
    var uuid: String
    var description: String
    var free_space: UInt64
    var total_space: UInt64
    var datasources: [String]
    var clustered: Bool
    var health: [String]
    // thinsr's own
    var attached: Bool
    var mode: String
    var volume_group: String
    var pool_device: String
    var block_size: UInt64
    var transaction_id: UInt64?
    var pool_mode: String
    var data_used: UInt64?
    var data_total: UInt64?
    var metadata_used: UInt64?
    var metadata_total: UInt64?
    var needs_check: Bool?
    var on_full: String?
    var autoextend_threshold: Int
    var autoextend_step: String
    var warning_threshold: Int
    var volume_count: Int
    var attached_volume_count: Int
    var created: String
    /// free_space = pool_free + vg_free; total_space = data_total + preallocated_bytes + vg_free.
    var pool_free: UInt64
    var vg_free: UInt64
    var preallocated_bytes: UInt64

    init(_ status: SRStatus) {
        let record = status.record
        uuid = record.uuid.uuidString.lowercased()
        sr = uuid
        name = record.name
        description = record.description
        datasources = SRMetrics.datasources(SRNames(uuid: record.uuid))
        clustered = false
        health = [status.health.state, status.health.detail]
        attached = true
        mode = record.mode == .ownTheWorld ? "own-the-world" : "be-nice"
        volume_group = record.volumeGroup
        pool_device = status.poolDevice
        block_size = record.blockSizeBytes
        autoextend_threshold = record.autoextend.thresholdPercent
        autoextend_step = record.autoextend.step.text
        warning_threshold = record.autoextend.warningPercent
        volume_count = status.volumeCount
        attached_volume_count = status.attachedVolumeCount
        created = isoTimestamp(record.createdAt)
        vg_free = status.groupFreeBytes
        preallocated_bytes = status.rawBytes
        if let space = status.poolSpace {
            data_used = space.dataUsedBytes
            data_total = space.dataTotalBytes
            metadata_used = space.metadataUsedBytes
            metadata_total = space.metadataTotalBytes
            pool_free = space.dataFreeBytes
            total_space = space.dataTotalBytes + status.rawBytes + status.groupFreeBytes
            free_space = pool_free + status.groupFreeBytes
            transaction_id = space.transactionID
            pool_mode = space.mode
            needs_check = space.needsCheck
            on_full = space.onFull
        } else {
            pool_free = 0
            total_space = status.rawBytes + status.groupFreeBytes
            free_space = status.groupFreeBytes
            pool_mode = "failed"
        }
    }
}

/// One SR in `thinsr-ls --json`.
struct SRSummaryJSON: Encodable {
    var uuid: String
    var name: String
    var mode: String
    var volume_group: String
    var pool_size: UInt64
    var attached: Bool
    var devices: [String]
    /// The LVM system ID of the SR's VG: the host that owns it ("" when none).
    var owner: String

    init(_ summary: DiscoveredSR) {
        uuid = summary.uuid.uuidString.lowercased()
        name = summary.name
        mode = summary.mode == .ownTheWorld ? "own-the-world" : "be-nice"
        volume_group = summary.volumeGroup
        pool_size = summary.dataBytes
        attached = summary.attached
        devices = summary.devices
        owner = summary.owner
    }
}
