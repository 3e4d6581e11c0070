import SystemPackage
import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// Copies a raw stream (an import from standard input, which no image tool
/// can seek) onto a new volume's device, leaving all-zero 64 KiB pieces
/// unwritten: the device reads zeros there already, and a thin pool
/// provisions nothing for them.
public enum StreamCopy {
    static let piece = 64 << 10

    /// Fills `buffer` from `source` (a pipe gives less at a time, and pieces
    /// must stay aligned) up to its end or the end of input; returns how much.
    private static func fill(_ buffer: inout [UInt8], from source: FileDescriptor) throws(ThinError) -> Int {
        var filled = 0
        while filled < buffer.count {
            // Poll first: a stalled producer must not keep a cancel waiting (reads restart after signals).
            while !System.waitForStandardInput(milliseconds: 200) {
                if CancelSignals.received != nil { throw ThinError(.cancelled, "import cancelled") }
            }
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { raw in
                    try source.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]))
                }
            } catch Errno.interrupted {
                if CancelSignals.received != nil { throw ThinError(.cancelled, "import cancelled") }
                continue
            } catch {
                throw ThinError(.backendFailure, "cannot read standard input: \(error)")
            }
            if count == 0 { break }
            filled += count
        }
        return filled
    }

    /// Copies standard input to the device at `path` until end of input; refuses
    /// input longer than `limit`. Returns the bytes read.
    public static func copyStandardInput(toDevice path: String, limit: UInt64,
                            progress: (UInt64) -> Void) throws(ThinError) -> UInt64 {
        let source = FileDescriptor.standardInput
        let device: FileDescriptor
        do { device = try FileDescriptor.open(FilePath(path), .writeOnly) } catch {
            throw ThinError(.backendFailure, "cannot open \(path) for writing: \(error)")
        }
        defer { try? device.close() }
        var buffer = [UInt8](repeating: 0, count: 16 * piece)
        var total: UInt64 = 0
        while true {
            if CancelSignals.received != nil { throw ThinError(.cancelled, "import cancelled") }
            let filled = try fill(&buffer, from: source)
            // A producer killed by the same Ctrl-C ends the stream: that is a cancel, not the end.
            if CancelSignals.received != nil { throw ThinError(.cancelled, "import cancelled") }
            if filled == 0 { break }
            guard total + UInt64(filled) <= limit else {
                throw ThinError(.invalidArgument, "standard input is longer than --size (\(limit) bytes); give the "
                                + "stream's full size with --size")
            }
            var start = 0
            while start < filled {
                let end = min(start + piece, filled)
                let isZero = buffer[start..<end].allSatisfy { $0 == 0 }
                if !isZero {
                    do {
                        _ = try buffer[start..<end].withUnsafeBytes { bytes in
                            try device.writeAll(toAbsoluteOffset: Int64(total) + Int64(start), bytes)
                        }
                    } catch {
                        throw ThinError(.backendFailure, "cannot write \(path): \(error)")
                    }
                }
                start = end
            }
            total += UInt64(filled)
            progress(total)
        }
        guard fsync(device.rawValue) == 0 else {
            throw ThinError(.backendFailure, "cannot flush \(path): \(System.errnoText())")
        }
        return total
    }
}
