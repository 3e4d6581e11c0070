import ThinDeviceMapper
#if canImport(Glibc)
import Glibc
#endif

/// The SR's dm-thin pool device, assembled by us from the data and metadata LVs.
struct Pool {
    let names: SRNames

    var device: String { names.poolDevice }
    var path: String { "/dev/mapper/\(names.poolDevice)" }

    func exists() throws(ThinError) -> Bool {
        do { return try DeviceMapper.info(name: device) != nil } catch {
            throw .backend("cannot query pool \(device)", error)
        }
    }

    func status() throws(ThinError) -> ThinPoolStatus {
        let lines: [TableLine]?
        do { lines = try DeviceMapper.status(name: device) } catch {
            throw .backend("cannot read pool status", error)
        }
        guard let line = lines?.first else {
            throw ThinError(.srNotAttached, "pool device \(device) does not exist; attach the SR with thinsr-attach")
        }
        guard line.targetType == "thin-pool", let status = ThinPoolStatus(parameters: line.parameters) else {
            throw ThinError(.backendFailure, "pool device \(device) has unexpected status \"\(line.parameters)\"")
        }
        return status
    }

    /// The pool's usage; a failed pool is an error naming what to do.
    func usage() throws(ThinError) -> ThinPoolUsage {
        switch try status() {
        case .active(let usage): return usage
        case .failed, .error:
            throw ThinError(.metadataCheckFailed,
                            "pool \(device) has failed; detach the SR and check its metadata with thin_check")
        }
    }

    static func table(metadataDevice: String, dataDevice: String, dataBytes: UInt64, blockBytes: UInt64,
                      onFull: OnFullPolicy) -> TableLine {
        let blockSectors = blockBytes / 512
        let dataBlocks = dataBytes / blockBytes
        let table = ThinPoolTable(metadataDevice: metadataDevice, dataDevice: dataDevice,
                                  blockSizeSectors: blockSectors, lowWaterMarkBlocks: max(1, dataBlocks / 20),
                                  features: onFull == .error ? [.errorIfNoSpace] : [])
        return table.line(lengthSectors: dataBlocks * blockSectors)
    }

    func assemble(metadataDevice: String, dataDevice: String, dataBytes: UInt64,
                  blockBytes: UInt64, onFull: OnFullPolicy) throws(ThinError) {
        let line = Self.table(metadataDevice: metadataDevice, dataDevice: dataDevice, dataBytes: dataBytes,
                              blockBytes: blockBytes, onFull: onFull)
        do {
            try DeviceMapper.create(name: device, uuid: names.poolDeviceUUID,
                                    table: [line], udev: .private)
        } catch {
            throw .backend("cannot assemble pool \(device)", error)
        }
    }

    /// Loads a new table (a changed policy or a grown data or metadata LV)
    /// and swaps it in; the kernel picks up grown devices on resume.
    func reload(metadataDevice: String, dataDevice: String, dataBytes: UInt64, blockBytes: UInt64,
                onFull: OnFullPolicy) throws(ThinError) {
        let line = Self.table(metadataDevice: metadataDevice, dataDevice: dataDevice, dataBytes: dataBytes,
                              blockBytes: blockBytes, onFull: onFull)
        do {
            try DeviceMapper.reload(name: device, table: [line])
            try DeviceMapper.resume(name: device, udev: .private)
        } catch {
            throw .backend("cannot reload pool \(device)", error)
        }
    }

    func disassemble() throws(ThinError) {
        do { try DeviceMapper.remove(name: device) } catch {
            if error.errno == ENXIO { return }
            throw .backend("cannot remove pool \(device)", error)
        }
    }

    /// Sends one message to the pool.
    func send(_ message: String) throws(DeviceMapperError) {
        try DeviceMapper.message(name: device, message)
    }
}

/// Parsing the pool messages we write into pending transactions.
enum PoolMessage: Equatable {
    case createThin(UInt32)
    case createSnapshot(UInt32, origin: UInt32)
    case delete(UInt32)

    init?(_ text: String) {
        let words = text.split(separator: " ")
        switch (words.first, words.count) {
        case ("create_thin", 2): guard let id = UInt32(words[1]) else { return nil }; self = .createThin(id)
        case ("create_snap", 3):
            guard let id = UInt32(words[1]), let origin = UInt32(words[2]) else { return nil }
            self = .createSnapshot(id, origin: origin)
        case ("delete", 2): guard let id = UInt32(words[1]) else { return nil }; self = .delete(id)
        default: return nil
        }
    }

    var text: String {
        switch self {
        case .createThin(let id): return "create_thin \(id)"
        case .createSnapshot(let id, let origin): return "create_snap \(id) \(origin)"
        case .delete(let id): return "delete \(id)"
        }
    }

    /// The id this message creates, if it creates one.
    var createdID: UInt32? {
        switch self {
        case .createThin(let id), .createSnapshot(let id, _): return id
        case .delete: return nil
        }
    }
}
