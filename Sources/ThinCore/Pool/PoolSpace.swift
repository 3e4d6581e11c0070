import ThinDeviceMapper

/// An active pool's space and state in bytes and words, as `thinsr-stat`
/// reports them: the tools read this, never the kernel's status line.
public struct PoolSpace: Sendable, Equatable {
    public var dataUsedBytes: UInt64
    public var dataTotalBytes: UInt64
    public var metadataUsedBytes: UInt64
    public var metadataTotalBytes: UInt64
    public var transactionID: UInt64
    /// rw, ro or out_of_data_space.
    public var mode: String
    public var needsCheck: Bool
    /// error or queue: what a write does when the pool is full.
    public var onFull: String

    public var dataFreeBytes: UInt64 { dataTotalBytes - min(dataUsedBytes, dataTotalBytes) }
}

extension SRStatus {
    /// The pool's space, or nil when it failed or reports an error.
    public var poolSpace: PoolSpace? {
        guard case .active(let usage) = pool else { return nil }
        let block = record.blockSizeBytes
        let metaBlock = ThinPoolUsage.metadataBlockBytes
        return PoolSpace(dataUsedBytes: usage.usedDataBlocks * block, dataTotalBytes: usage.totalDataBlocks * block,
                         metadataUsedBytes: usage.usedMetadataBlocks * metaBlock,
                         metadataTotalBytes: usage.totalMetadataBlocks * metaBlock,
                         transactionID: usage.transactionID, mode: usage.mode.rawValue, needsCheck: usage.needsCheck,
                         onFull: usage.errorIfNoSpace ? "error" : "queue")
    }
}

extension VolumeRecord {
    /// The thin device id in the pool, as a number.
    public var thinDeviceNumber: UInt32 { thinID.value }
}
