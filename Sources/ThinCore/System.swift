import SystemPackage
internal import CThinShims
#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over the system calls the core makes directly.
public enum System {
    static var isRoot: Bool { geteuid() == 0 }

    static func requireRoot(_ tool: String) throws(ThinError) {
        guard isRoot else {
            throw ThinError(.permissionDenied, "\(tool) must run as root (it drives LVM and device-mapper); try sudo")
        }
    }

    static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(ThinError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/\(component)"
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw ThinError(.backendFailure, "cannot create directory \(current): \(errnoText())")
            }
        }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// The block device's `major:minor`, or nil if `path` is not a block device.
    static func blockDevice(_ path: String) -> (major: UInt32, minor: UInt32)? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFBLK else { return nil }
        return (UInt32(CThinShims_major(UInt64(info.st_rdev))), UInt32(CThinShims_minor(UInt64(info.st_rdev))))
    }

    static func readFile(_ path: String) -> String? {
        guard let descriptor = try? FileDescriptor.open(FilePath(path), .readOnly) else { return nil }
        defer { try? descriptor.close() }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = (try? buffer.withUnsafeMutableBytes { try descriptor.read(into: $0) }) ?? 0
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func writeFile(_ path: String, _ text: String) throws(ThinError) {
        do {
            let descriptor = try FileDescriptor.open(FilePath(path), .writeOnly,
                                                     options: [.create, .truncate], permissions: [.ownerReadWrite])
            defer { try? descriptor.close() }
            _ = try descriptor.writeAll(text.utf8)
        } catch {
            throw ThinError(.backendFailure, "cannot write \(path): \(error)")
        }
    }

    static func directoryEntries(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func symlink(target: String, at path: String) throws(ThinError) {
        unlink(path)
        guard Glibc.symlink(target, path) == 0 else {
            throw ThinError(.backendFailure, "cannot create link \(path): \(errnoText())")
        }
    }

    static func removeFile(_ path: String) { unlink(path) }
    static func removeDirectory(_ path: String) { rmdir(path) }

    static func currentTime() -> Int64 { Int64(time(nil)) }
}

/// Mounts, read from /proc/self/mountinfo and made with mount(2).
enum Mounts {
    struct Entry { var device: String; var majorMinor: String; var mountPoint: String }

    static func entries() -> [Entry] {
        (System.readFile("/proc/self/mountinfo") ?? "").split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            return Entry(device: fields[dash + 2], majorMinor: fields[2], mountPoint: unescape(fields[4]))
        }
    }

    static func isMounted(_ mountPoint: String) -> Bool { entries().contains { $0.mountPoint == mountPoint } }

    static func isMounted(majorMinor: String) -> Bool { entries().contains { $0.majorMinor == majorMinor } }

    static func mount(device: String, at mountPoint: String, type: String, readOnly: Bool) throws(ThinError) {
        try System.makeDirectories(mountPoint, mode: 0o700)
        let flags = UInt(MS_NOATIME | MS_NODEV | MS_NOSUID | MS_NOEXEC) | (readOnly ? UInt(MS_RDONLY) : 0)
        guard Glibc.mount(device, mountPoint, type, flags, nil) == 0 else {
            throw ThinError(.backendFailure, "cannot mount \(device) on \(mountPoint): \(System.errnoText())")
        }
    }

    static func unmount(_ mountPoint: String) throws(ThinError) {
        guard umount2(mountPoint, 0) == 0 || errno == EINVAL else {
            throw ThinError(.backendFailure, "cannot unmount \(mountPoint): \(System.errnoText())")
        }
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    private static func unescape(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
               let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// An exclusive flock held until `release` (or process exit, so a killed
/// process never leaves the SR locked).
final class FileLock {
    private var descriptor: Int32

    init(path: String) throws(ThinError) {
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw ThinError(.backendFailure, "cannot open lock \(path): \(System.errnoText())")
        }
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let message = System.errnoText()
                close(descriptor)
                throw ThinError(.backendFailure, "cannot lock \(path): \(message)")
            }
        }
    }

    func release() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    deinit { release() }
}
