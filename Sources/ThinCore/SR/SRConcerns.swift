/// An attached SR's work, split by concern over the one open SR: each
/// concern is a small value holding that `AttachedSR`, which alone opens
/// the catalog, holds the locks, recovers once and runs pool transactions.
/// A concern reads the shared parts through these names.
protocol SRConcern {
    var sr: AttachedSR { get }
}

extension SRConcern {
    var names: SRNames { sr.names }
    var host: Host { sr.host }
    var catalog: Catalog { sr.catalog }
    var pool: Pool { sr.pool }
    var devices: VolumeDevices { sr.devices }
    var origins: TemplateOrigins { sr.origins }
    var volumeGroup: String { sr.volumeGroup }
    var record: SRRecord { get throws(ThinError) { try sr.record } }
    var transactions: PoolTransactions { sr.transactions }
}

/// Creating, destroying, resizing, copying (snapshot, clone, revert) and
/// viewing thin volumes.
public struct SRVolumes: SRConcern {
    let sr: AttachedSR
}

/// Preallocated (thick) volumes: plain LVs beside the pool, their zeroing
/// and growth.
public struct PreallocatedVolumes: SRConcern {
    let sr: AttachedSR
}

/// Volumes as block devices: attach, detach, and who holds each.
public struct SRAttachments: SRConcern {
    let sr: AttachedSR
}

/// Which state came from which: the lineage tree, changed blocks between
/// two states, and a snapshot's data destroyed down to its history.
public struct SRLineage: SRConcern {
    let sr: AttachedSR
}

/// Templates: read-only images named by URI that clones read.
public struct SRTemplates: SRConcern {
    let sr: AttachedSR
}

/// The SR as a whole: its status, settings, growth, check and repair, the
/// pool monitor's watch and rrdd's figures.
public struct SRAdministration: SRConcern {
    let sr: AttachedSR
}

extension AttachedSR {
    public var volumes: SRVolumes { SRVolumes(sr: self) }
    public var preallocated: PreallocatedVolumes { PreallocatedVolumes(sr: self) }
    public var attachments: SRAttachments { SRAttachments(sr: self) }
    public var lineage: SRLineage { SRLineage(sr: self) }
    public var templates: SRTemplates { SRTemplates(sr: self) }
    public var administration: SRAdministration { SRAdministration(sr: self) }
}
