#if canImport(Glibc)
import Glibc
#endif

/// Writes a volume's data runs out without an NBD engine (a host without
/// nbdkit's filters or nbdcopy, as XCP-ng 8.3): a regular file is made the
/// volume's size and written sparse (only data, and zeros within data runs
/// left out); standard output and block devices get every byte in order,
/// zeros for what is not data.
enum ExtentCopy {
    static let chunk = 1 << 20

    static func write(from device: String, runs: [ExportExtents.Run], size: UInt64, to target: String,
                      progress: (UInt64) -> Void, stop: () -> Bool) throws(ThinError) {
        let input = open(device, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw ThinError(.backendFailure, "cannot open \(device): \(System.errnoText())") }
        defer { close(input) }
        let toStandardOutput = target == "-"
        let output = toStandardOutput ? 1 : open(target, O_WRONLY | O_CLOEXEC)
        guard output >= 0 else { throw ThinError(.backendFailure, "cannot open \(target): \(System.errnoText())") }
        defer { if !toStandardOutput { close(output) } }
        var status = stat()
        let sparse = !toStandardOutput && fstat(output, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG
        if sparse, ftruncate(output, off_t(size)) != 0 {
            throw ThinError(.backendFailure, "cannot size \(target): \(System.errnoText())")
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        let zeros = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate(); zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0, count: chunk)
        var cursor: UInt64 = 0, done: UInt64 = 0
        func put(_ bytes: UnsafeRawPointer, _ count: Int, at offset: UInt64) throws(ThinError) {
            var written = 0
            while written < count {
                let result = toStandardOutput ? Glibc.write(output, bytes + written, count - written)
                    : pwrite(output, bytes + written, count - written, off_t(offset) + off_t(written))
                if result < 0 && errno == EINTR { continue }
                guard result > 0 else { throw ThinError(.backendFailure, "cannot write \(target): \(System.errnoText())") }
                written += result
            }
        }
        func fill(to end: UInt64) throws(ThinError) {   // zeros, where the output is not sparse
            while cursor < end {
                let count = Int(min(UInt64(chunk), end - cursor))
                if !sparse { try put(zeros, count, at: cursor) }
                cursor += UInt64(count)
            }
        }
        for run in runs.sorted(by: { $0.offset < $1.offset }) where run.kind == .data {
            try fill(to: min(run.offset, size))
            let end = min(run.offset + run.length, size)
            while cursor < end {
                if stop() { throw ThinError(.cancelled, "export cancelled") }
                let count = Int(min(UInt64(chunk), end - cursor))
                let read = pread(input, buffer, count, off_t(cursor))
                guard read == count else {
                    throw ThinError(.backendFailure, "cannot read \(device) at byte \(cursor): \(System.errnoText())")
                }
                let allZero = !UnsafeRawBufferPointer(start: buffer, count: count).contains { $0 != 0 }
                if !(sparse && allZero) { try put(buffer, count, at: cursor) }
                cursor += UInt64(count)
                done += UInt64(count)
                progress(done)
            }
        }
        try fill(to: size)
        if !toStandardOutput, fsync(output) != 0 {
            throw ThinError(.backendFailure, "cannot flush \(target): \(System.errnoText())")
        }
    }
}
