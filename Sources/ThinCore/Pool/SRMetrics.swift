import FoundationEssentials
import ThinDeviceMapper
#if canImport(Glibc)
import Glibc
#endif

/// The SR's figures for xapi's rrdd (XenCenter's and Xen Orchestra's graphs):
/// a file in rrdd's plugin protocol v2 under /dev/shm/metrics, which rrdd
/// finds by inotify and reads every five seconds, and whose name SR.stat
/// returns as `xeno+shm:///<name>` (xapi registers it at SR.attach). The
/// attach writes it once and the monitor (thinsr-monitor) keeps it current;
/// the detach removes it.
///
/// Layout (big-endian): "DATASOURCES", CRC-32 of the data, CRC-32 of the
/// metadata, the datasource count, the timestamp (int64 seconds), one 8-byte value
/// per datasource, the metadata's length, the metadata (JSON whose values
/// are all strings, datasources in value order).
public enum SRMetrics {
    /// Where rrdd looks; overridable for tests.
    static var directory: String { Paths.metricsDirectory }

    static func name(_ names: SRNames) -> String { "thinsr-\(names.uuidString)" }
    static func path(_ names: SRNames) -> String { "\(directory)/\(name(names))" }

    /// The datasource URI for SR.stat, when the file is there for rrdd to read.
    public static func datasources(_ names: SRNames) -> [String] {
        System.exists(path(names)) ? ["xeno+shm:///\(name(names))"] : []
    }

    struct Datasource {
        var name: String
        var value: Int64
        var description: String
        var units: String
    }

    static func datasources(usage: ThinPoolUsage, blockBytes: UInt64, volumes: Int) -> [Datasource] {
        let metadataBlock = ThinPoolUsage.metadataBlockBytes
        return [
            Datasource(name: "thinsr_data_total", value: Int64(usage.totalDataBlocks * blockBytes),
                       description: "Size of the thin pool's data", units: "B"),
            Datasource(name: "thinsr_data_used", value: Int64(usage.usedDataBlocks * blockBytes),
                       description: "Thin pool data in use", units: "B"),
            Datasource(name: "thinsr_metadata_total", value: Int64(usage.totalMetadataBlocks * metadataBlock),
                       description: "Size of the thin pool's metadata", units: "B"),
            Datasource(name: "thinsr_metadata_used", value: Int64(usage.usedMetadataBlocks * metadataBlock),
                       description: "Thin pool metadata in use", units: "B"),
            Datasource(name: "thinsr_volumes", value: Int64(volumes), description: "Volumes in the SR", units: ""),
        ]
    }

    /// The protocol v2 bytes for these datasources, owned by SR `uuid`, at `time`.
    static func encode(_ sources: [Datasource], owner uuid: String, time: Double) -> [UInt8] {
        // JSONSerialization is Foundation's; the metadata is built by hand, every value a JSON string.
        func quoted(_ text: String) -> String {
            "\"" + text.unicodeScalars.map { scalar -> String in
                switch scalar {
                case "\"": return "\\\""
                case "\\": return "\\\\"
                default:
                    guard scalar.value < 0x20 else { return String(scalar) }
                    let hex = String(scalar.value, radix: 16)
                    return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                }
            }.joined() + "\""
        }
        let entries = sources.map { source in
            quoted(source.name) + ":{" + [("description", source.description), ("owner", "sr \(uuid)"),
                                          ("value_type", "int64"), ("type", "gauge"), ("default", "true"),
                                          ("units", source.units), ("min", "0"), ("max", "inf")]
                .map { quoted($0.0) + ":" + quoted($0.1) }.joined(separator: ",") + "}"
        }
        let metadata = Array(("{\"datasources\":{" + entries.joined(separator: ",") + "}}").utf8)
        var data: [UInt8] = []
        // rrdd reads the timestamp as int64 seconds (rrd_protocol_v2.ml), whatever its design note says.
        data.appendBigEndian(Int64(time))
        for source in sources { data.appendBigEndian(UInt64(bitPattern: source.value)) }
        var bytes = Array("DATASOURCES".utf8)
        bytes.appendBigEndian(CRC32.checksum(data))
        bytes.appendBigEndian(CRC32.checksum(metadata))
        bytes.appendBigEndian(UInt32(sources.count))
        bytes += data
        bytes.appendBigEndian(UInt32(metadata.count))
        bytes += metadata
        return bytes
    }

    /// Writes the SR's file, when rrdd's directory exists (a xapi host) or
    /// tests name one. The first write goes through a rename, so rrdd never
    /// maps a half file; later ones rewrite it in place at the same size, as
    /// rrdd maps it once.
    static func write(_ names: SRNames, usage: ThinPoolUsage, blockBytes: UInt64, volumes: Int) {
        guard System.exists(directory) else { return }
        let bytes = encode(datasources(usage: usage, blockBytes: blockBytes, volumes: volumes),
                           owner: names.uuidString, time: Double(System.currentTime()))
        let target = path(names)
        if System.fileLength(target) == UInt64(bytes.count) {
            let descriptor = open(target, O_WRONLY | O_CLOEXEC)
            if descriptor >= 0 {
                defer { close(descriptor) }
                if bytes.withUnsafeBytes({ pwrite(descriptor, $0.baseAddress, $0.count, 0) }) == bytes.count { return }
            }
        }
        let temporary = target + ".tmp"
        guard (try? System.writeBytes(temporary, bytes)) != nil else { return }
        if (try? System.rename(temporary, to: target)) == nil { System.removeFile(temporary) }
    }

    static func remove(_ names: SRNames) {
        System.removeFile(path(names))
        System.removeFile(path(names) + ".tmp")   // a writer killed before its rename
    }

    /// Files of SRs that are not attached here any more (a detach the
    /// monitor did not see, a crash): removed, so rrdd stops reading them.
    public static func removeStale(host: Host = .live) {
        for entry in System.directoryEntries(directory) where entry.hasPrefix("thinsr-") {
            // Stale means its catalog is not mounted: an SR that could not be opened for a moment keeps its file.
            let name = entry.hasSuffix(".tmp") ? String(entry.dropLast(4)) : entry
            guard let uuid = UUID(uuidString: String(name.dropFirst("thinsr-".count))),
                  !host.system.isMounted(SRNames(uuid: uuid).catalogMount) else { continue }
            System.removeFile("\(directory)/\(entry)")
        }
    }
}

extension SRAdministration {
    /// Writes the SR's rrdd figures (see `SRMetrics`) from the pool's status now.
    public func publishMetrics() {
        guard let usage = try? pool.usage(), let block = try? record.blockSizeBytes else { return }
        SRMetrics.write(names, usage: usage, blockBytes: block, volumes: (try? catalog.volumeCount()) ?? 0)
    }
}

/// CRC-32 (IEEE 802.3, zlib's): what rrdd checks the metrics file with.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}
