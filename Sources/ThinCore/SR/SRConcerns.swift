/// An attached SR's work, split by concern over the one open SR: each
/// concern (SRVolumes, PreallocatedVolumes, SRAttachments, SRLineage,
/// SRTemplates, SRAdministration, each declared beside its operations) is a
/// small value holding that `AttachedSR`, which alone opens the catalog,
/// holds the locks, recovers once and runs pool transactions. A concern
/// reads the shared parts through these names.
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

extension AttachedSR {
    public var volumes: SRVolumes { SRVolumes(sr: self) }
    public var preallocated: PreallocatedVolumes { PreallocatedVolumes(sr: self) }
    public var attachments: SRAttachments { SRAttachments(sr: self) }
    public var lineage: SRLineage { SRLineage(sr: self) }
    public var templates: SRTemplates { SRTemplates(sr: self) }
    public var administration: SRAdministration { SRAdministration(sr: self) }
}
