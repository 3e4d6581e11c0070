import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

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
