import ThinDeviceMapper

/// The SR's dm-thin pool device, assembled by thinsr from the data and
/// metadata LVs (not an LVM thin pool: see docs/design.md).
struct Pool {
    /// The dm name, `thinsr_<sr hex>_pool`.
    let name: String
    let deviceUUID: DmUuid
    let deviceMapper: any DeviceMapperControl

    init(names: SRNames, deviceMapper: any DeviceMapperControl) {
        name = names.poolDevice
        deviceUUID = names.poolDeviceUUID
        self.deviceMapper = deviceMapper
    }

    var path: String { DmName(name).path }

    func exists() throws(ThinError) -> Bool {
        do { return try deviceMapper.info(name: name) != nil } catch {
            throw .backend("cannot query pool \(name)", error)
        }
    }

    func status() throws(ThinError) -> ThinPoolStatus {
        let lines: [TableLine]?
        do { lines = try deviceMapper.status(name: name) } catch {
            throw .backend("cannot read pool status", error)
        }
        guard let line = lines?.first else {
            throw ThinError(.srNotAttached, "pool device \(name) does not exist; attach the SR with thinsr-attach")
        }
        guard line.targetType == .thinPool, let status = ThinPoolStatus(parameters: line.parameters) else {
            throw ThinError(.backendFailure, "pool device \(name) has unexpected status \"\(line.parameters)\"")
        }
        return status
    }

    /// The pool's usage; a failed pool is an error naming what to do.
    func usage() throws(ThinError) -> ThinPoolUsage {
        switch try status() {
        case .active(let usage): return usage
        case .failed, .error:
            throw ThinError(.metadataCheckFailed,
                            "pool \(name) has failed; detach the SR with thinsr-detach --force, then repair it "
                            + "with thinsr-check --repair")
        }
    }

    /// The length of the live table in bytes, or nil if the pool is not assembled.
    func liveBytes() throws(ThinError) -> UInt64? {
        do { return try deviceMapper.table(name: name)?.first.map { $0.lengthSectors * 512 } } catch {
            throw .backend("cannot read the table of \(name)", error)
        }
    }

    /// What the pool is built from: the table follows from it.
    struct Layout: Equatable {
        var metadataDevice: String
        var dataDevice: String
        var dataBytes: UInt64
        var blockBytes: UInt64
        var onFull: OnFullPolicy
        /// Free data, in percent, below which the kernel raises the event the
        /// pool monitor waits for: the autoextend threshold's complement.
        var lowWaterPercent = 5

        var table: TableLine {
            let blockSectors = blockBytes / 512
            let dataBlocks = dataBytes / blockBytes
            let table = ThinPoolTable(metadataDevice: metadataDevice, dataDevice: dataDevice,
                                      blockSizeSectors: blockSectors,
                                      lowWaterMarkBlocks: max(1, dataBlocks * UInt64(lowWaterPercent) / 100),
                                      features: onFull == .error ? [.errorIfNoSpace] : [])
            return table.line(lengthSectors: dataBlocks * blockSectors)
        }
    }

    func assemble(_ layout: Layout) throws(ThinError) {
        do {
            try deviceMapper.create(name: name, uuid: deviceUUID, table: [layout.table], readOnly: false, udev: .private)
        } catch {
            throw .backend("cannot assemble pool \(name)", error)
        }
    }

    /// Loads a new table (a changed policy or a grown data or metadata LV)
    /// and swaps it in; the kernel picks up grown devices on resume.
    func reload(_ layout: Layout) throws(ThinError) {
        do {
            try deviceMapper.reload(name: name, table: [layout.table])
            try deviceMapper.resume(name: name, udev: .private)
        } catch {
            throw .backend("cannot reload pool \(name)", error)
        }
    }

    /// Removes the pool device; a pool already gone is no error.
    func disassemble() throws(ThinError) {
        do { try deviceMapper.remove(name: name) } catch {
            if error.reason == .noSuchDevice { return }
            throw .backend("cannot remove pool \(name)", error)
        }
    }

    func send(_ message: PoolMessage) throws(DeviceMapperError) {
        try deviceMapper.send(message, to: name)
    }
}
