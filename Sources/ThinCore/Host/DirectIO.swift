internal import CLibAIO
internal import CThinShims
#if canImport(Glibc)
import Glibc
#endif

/// Writes to block devices with O_DIRECT through libaio, so what is written
/// has reached the device, not the page cache, when the call returns.
enum DirectIO {
    static let alignment = 4096

    /// Zeroes the first `bytes` of `device` (the kernel formats pool metadata
    /// whose first 4 KiB are zero).
    /// Whether `length` bytes at `offset` of `device` (by default its first
    /// 4 KiB) can be read past the page cache (a device whose backing went
    /// away fails with EIO).
    static func canRead(_ device: String, offset: UInt64 = 0, length: Int = alignment) -> Bool {
        let descriptor = open(device, O_RDONLY | CThinShims_O_DIRECT() | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var buffer: UnsafeMutableRawPointer?
        guard posix_memalign(&buffer, alignment, alignment) == 0, let buffer else { return false }
        defer { free(buffer) }
        return pread(descriptor, buffer, min(length, alignment), off_t(offset)) == min(length, alignment)
    }

    /// Reads `length` bytes (at most 4 KiB, a multiple of 512) at `offset`
    /// of `device` and writes them back unchanged, past the page cache (on
    /// a dm-clone device this makes it copy the region they fall in).
    /// Returns false when they cannot be read (nothing is written then).
    static func rewrite(_ device: String, offset: UInt64, length: Int = alignment) throws(ThinError) -> Bool {
        let length = min(length, alignment)
        let descriptor = open(device, O_RDWR | CThinShims_O_DIRECT() | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ThinError(.backendFailure, "cannot open \(device) for direct I/O: \(System.errnoText())")
        }
        defer { close(descriptor) }
        var buffer: UnsafeMutableRawPointer?
        guard posix_memalign(&buffer, alignment, alignment) == 0, let buffer else {
            throw ThinError(.backendFailure, "out of memory for a \(alignment)-byte aligned buffer")
        }
        defer { free(buffer) }
        guard pread(descriptor, buffer, length, off_t(offset)) == length else { return false }
        guard pwrite(descriptor, buffer, length, off_t(offset)) == length else {
            throw ThinError(.backendFailure, "cannot write \(device) at byte \(offset): \(System.errnoText())")
        }
        return true
    }

    /// Flushes what was written to `device` through any descriptor to
    /// stable storage: fsync sends the device a flush (dm-thin commits its
    /// metadata on one).
    static func flush(_ device: String) throws(ThinError) {
        let descriptor = open(device, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ThinError(.backendFailure, "cannot open \(device): \(System.errnoText())") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else {
            throw ThinError(.backendFailure, "cannot flush \(device): \(System.errnoText())")
        }
    }

    static func zero(device: String, bytes: Int = 4096) throws(ThinError) {
        let length = (bytes + alignment - 1) / alignment * alignment
        let descriptor = open(device, O_WRONLY | CThinShims_O_DIRECT() | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ThinError(.backendFailure, "cannot open \(device) for direct I/O: \(System.errnoText())")
        }
        defer { close(descriptor) }
        var buffer: UnsafeMutableRawPointer?
        guard posix_memalign(&buffer, alignment, length) == 0, let buffer else {
            throw ThinError(.backendFailure, "out of memory for a \(length)-byte aligned buffer")
        }
        defer { free(buffer) }
        memset(buffer, 0, length)

        var context: io_context_t?
        let setup = io_setup(1, &context)
        guard setup == 0, let context else {
            throw ThinError(.backendFailure, "io_setup failed: \(System.errnoText(-setup))")
        }
        defer { io_destroy(context) }
        var request = iocb()
        io_prep_pwrite(&request, descriptor, buffer, length, 0)
        var requests: [UnsafeMutablePointer<iocb>?] = [withUnsafeMutablePointer(to: &request) { $0 }]
        let submitted = requests.withUnsafeMutableBufferPointer { io_submit(context, 1, $0.baseAddress) }
        guard submitted == 1 else {
            throw ThinError(.backendFailure, "io_submit to \(device) failed: \(System.errnoText(-submitted))")
        }
        var event = io_event()
        let completed = io_getevents(context, 1, 1, &event, nil)
        guard completed == 1, event.res == UInt(length) else {
            throw ThinError(.backendFailure, "direct write to \(device) failed (result \(event.res))")
        }
        guard fsync(descriptor) == 0 else {
            throw ThinError(.backendFailure, "fsync of \(device) failed: \(System.errnoText())")
        }
    }

    /// Copies `range` (bytes, 4 KiB aligned but for a tail at the device's end)
    /// from `source` to `destination` past the page cache, leaving out what
    /// reads zeros (unwritten, it reads zeros too), then flushes. Returns the
    /// bytes written.
    static func copyNonZero(from source: String, to destination: String, range: Range<UInt64>) throws(ThinError) -> UInt64 {
        try copy(from: source, to: destination, ranges: [range], skippingZeros: true)
    }

    /// Copies each of `ranges` (as `copyNonZero`) from `source` to
    /// `destination`, zeros included unless `skippingZeros`, then flushes.
    static func copy(from source: String, to destination: String, ranges: [Range<UInt64>],
                     skippingZeros: Bool) throws(ThinError) -> UInt64 {
        let input = open(source, O_RDONLY | CThinShims_O_DIRECT() | O_CLOEXEC)
        guard input >= 0 else { throw ThinError(.backendFailure, "cannot open \(source) for direct I/O: \(System.errnoText())") }
        defer { close(input) }
        let output = open(destination, O_WRONLY | CThinShims_O_DIRECT() | O_CLOEXEC)
        guard output >= 0 else {
            throw ThinError(.backendFailure, "cannot open \(destination) for direct I/O: \(System.errnoText())")
        }
        defer { close(output) }
        let chunk = 1 << 20
        var buffer: UnsafeMutableRawPointer?
        guard posix_memalign(&buffer, alignment, chunk) == 0, let buffer else {
            throw ThinError(.backendFailure, "out of memory for a \(chunk)-byte aligned buffer")
        }
        defer { free(buffer) }
        var written: UInt64 = 0
        for range in ranges {
        var offset = range.lowerBound
        while offset < range.upperBound {
            let length = Int(min(UInt64(chunk), range.upperBound - offset))
            let aligned = (length + 511) / 512 * 512
            guard pread(input, buffer, aligned, off_t(offset)) == aligned else {
                throw ThinError(.backendFailure, "cannot read \(source) at byte \(offset): \(System.errnoText())")
            }
            let bytes = UnsafeRawBufferPointer(start: buffer, count: aligned)
            if !skippingZeros || bytes.contains(where: { $0 != 0 }) {
                guard pwrite(output, buffer, aligned, off_t(offset)) == aligned else {
                    throw ThinError(.backendFailure, "cannot write \(destination) at byte \(offset): \(System.errnoText())")
                }
                written += UInt64(aligned)
            }
            offset += UInt64(length)
        }
        }
        guard fdatasync(output) == 0 else {
            throw ThinError(.backendFailure, "cannot flush \(destination): \(System.errnoText())")
        }
        return written
    }
}
