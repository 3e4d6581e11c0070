import ThinTools
import SystemPackage
internal import CThinShims
#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over the system calls the core makes directly.
public enum System {
    /// Throws `Permission_denied` unless running as root.
    public static func requireRoot(_ tool: String) throws(ThinError) {
        guard geteuid() == 0 else {
            throw ThinError(.permissionDenied, "\(tool) must run as root (it drives LVM and device-mapper); try sudo")
        }
    }

    static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    public static func makeDirectories(_ path: String, mode: UInt32 = 0o755) throws(ThinError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/\(component)"
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw ThinError(.backendFailure, "cannot create directory \(current): \(errnoText())")
            }
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// The size and the space left for files (statvfs) of the filesystem holding `path`.
    static func filesystemSpace(_ path: String) -> (totalBytes: UInt64, freeBytes: UInt64)? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        let unit = UInt64(info.f_frsize)
        return (UInt64(info.f_blocks) * unit, UInt64(info.f_bavail) * unit)
    }

    /// The block device's `major:minor`, or nil if `path` is not a block device.
    public static func blockDevice(_ path: String) -> (major: UInt32, minor: UInt32)? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFBLK else { return nil }
        return (UInt32(CThinShims_major(UInt64(info.st_rdev))), UInt32(CThinShims_minor(UInt64(info.st_rdev))))
    }

    public static func readFile(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    static func readBytes(_ path: String) -> [UInt8]? {
        guard let descriptor = try? FileDescriptor.open(FilePath(path), .readOnly) else { return nil }
        defer { try? descriptor.close() }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = (try? buffer.withUnsafeMutableBytes { try descriptor.read(into: $0) }) ?? 0
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        return bytes
    }

    /// Writes a text file, replacing it (the man page and completion generators use it too).
    static func writeBytes(_ path: String, _ bytes: [UInt8]) throws(ThinError) {
        do {
            let descriptor = try FileDescriptor.open(FilePath(path), .writeOnly,
                                                     options: [.create, .truncate], permissions: [.ownerReadWrite])
            defer { try? descriptor.close() }
            _ = try descriptor.writeAll(bytes)
        } catch {
            throw ThinError(.backendFailure, "cannot write \(path): \(error)")
        }
    }

    public static func writeFile(_ path: String, _ text: String) throws(ThinError) {
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

    public static func removeFile(_ path: String) { unlink(path) }

    /// Copies a file's bytes; returns false if `source` does not exist.
    @discardableResult
    static func copyFile(_ source: String, to destination: String) throws(ThinError) -> Bool {
        guard let input = try? FileDescriptor.open(FilePath(source), .readOnly) else { return false }
        defer { try? input.close() }
        do {
            let output = try FileDescriptor.open(FilePath(destination), .writeOnly, options: [.create, .truncate],
                                                 permissions: [.ownerReadWrite])
            defer { try? output.close() }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let count = try buffer.withUnsafeMutableBytes { try input.read(into: $0) }
                if count == 0 { return true }
                _ = try output.writeAll(buffer[0..<count])
            }
        } catch {
            throw ThinError(.backendFailure, "cannot copy \(source) to \(destination): \(error)")
        }
    }

    /// Creates an empty file if there is none (markers the next process looks for).
    static func touch(_ path: String) throws(ThinError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw ThinError(.backendFailure, "cannot create \(path): \(errnoText())") }
        close(descriptor)
    }
    static func removeDirectory(_ path: String) { rmdir(path) }

    /// rename(2), then fsync of the directory, so the new name survives a crash.
    static func renameDurably(_ source: String, to destination: String, in directory: String) throws(ThinError) {
        guard Glibc.rename(source, destination) == 0 else {
            throw ThinError(.backendFailure, "cannot rename \(source) to \(destination): \(errnoText())")
        }
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ThinError(.backendFailure, "cannot open \(directory): \(errnoText())") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw ThinError(.backendFailure, "fsync of \(directory) failed: \(errnoText())") }
    }

    /// `path` made absolute against the working directory (not resolving links).
    public static func absolutePath(_ path: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        let directory = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (directory == "/" ? "" : directory) + "/" + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
    }

    /// Opens a device read-only and keeps it open until `releaseDevice`: while
    /// a transfer runs, its device's open count stops a plain detach from
    /// removing it under the copy (a forced detach turns it into an error
    /// device instead: I/O errors, never other data).
    public static func holdDevice(_ path: String) throws(ThinError) -> Int32 {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ThinError(.backendFailure, "cannot open \(path): \(errnoText())") }
        return descriptor
    }

    public static func releaseDevice(_ descriptor: Int32) { close(descriptor) }

    /// Waits until standard input has data or has ended, up to `milliseconds`.
    public static func waitForStandardInput(milliseconds: Int32) -> Bool {
        var entry = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, milliseconds) > 0
    }

    /// A regular file's length in bytes.
    /// A block device's size in bytes (its end, by lseek), or nil.
    public static func blockDeviceSize(_ path: String) -> UInt64? {
        guard blockDevice(path) != nil else { return nil }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        let end = lseek(descriptor, 0, SEEK_END)
        return end > 0 ? UInt64(end) : nil
    }

    public static func fileLength(_ path: String) -> UInt64? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return UInt64(info.st_size)
    }

    /// Renames within one filesystem, replacing `destination`.
    public static func rename(_ source: String, to destination: String) throws(ThinError) {
        guard Glibc.rename(source, destination) == 0 else {
            throw ThinError(.backendFailure, "cannot rename \(source) to \(destination): \(errnoText())")
        }
    }

    /// Whether `path` is a unix socket (or anything else that exists: `exists`).
    public static func isSocket(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK
    }

    static func currentTime() -> Int64 { Int64(time(nil)) }

    /// A process's start time (clock ticks since boot, /proc/<pid>/stat's
    /// 22nd field): with the pid it names one process, even after pid reuse.
    public static func processStartTime(_ pid: Int32) -> UInt64? {
        guard pid > 0, let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // Fields after the command: state is the 3rd field, start time the 22nd.
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    /// This process's executable (/proc/self/exe), or nil.
    /// The tool a process runs, as its argv[0] names it (`thinvdi-export`).
    static func programName(_ pid: Int32) -> String? {
        guard let command = readFile("/proc/\(pid)/cmdline"), let first = command.split(separator: "\0").first,
              !first.isEmpty else { return nil }
        return first.split(separator: "/").last.map(String.init)
    }

    static func executablePath() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// This boot's identity: a process holder or owner from another boot is gone.
    static func bootID() -> String {
        (readFile("/proc/sys/kernel/random/boot_id") ?? "").split(whereSeparator: \.isWhitespace).first.map(String.init) ?? ""
    }

}


/// A temporary file made exclusively (O_EXCL, O_NOFOLLOW) under an
/// unpredictable name beside its final path: a program writing it as root
/// never follows a link another user planted there.
/// Directories whose entries any user can rename or replace: world-writable
/// without the sticky bit. A file root writes there under a temporary name can
/// be swapped for a link between its exclusive creation and the engine's open.
public enum ReplaceableDirectories {
    /// Whether a directory of this mode lets every user replace its entries.
    public static func lets(anyoneReplaceEntries mode: UInt32) -> Bool {
        mode & UInt32(S_IWOTH) != 0 && mode & UInt32(S_ISVTX) == 0
    }

    /// The first directory on the way to `path` (its own directory, then each
    /// parent up to /) that every user can rearrange, or nil.
    public static func first(above path: String) -> String? {
        var directory = PathText.directory(of: System.absolutePath(path))
        while true {
            var info = stat()
            if stat(directory, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR, lets(anyoneReplaceEntries: UInt32(info.st_mode)) {
                return directory
            }
            let parent = PathText.directory(of: directory)
            if parent == directory { return nil }   // "/", or "." when the working directory is unknown
            directory = parent
        }
    }
}

public enum ExclusiveFile {
    public static func create(besides path: String, tag: String) throws(ThinError) -> String {
        let directory = PathText.directory(of: path)
        let name = PathText.fileName(of: path)
        for _ in 0..<8 {
            let candidate = "\(directory)/.\(name).\(tag)-\(String(UInt64.random(in: 1...UInt64.max), radix: 36))"
            do {
                let descriptor = try FileDescriptor.open(FilePath(candidate), .writeOnly,
                                                         options: [.create, .exclusiveCreate, .noFollow, .closeOnExec],
                                                         permissions: [.ownerReadWrite])
                try? descriptor.close()
                return candidate
            } catch Errno.fileExists {
                continue
            } catch {
                throw ThinError(.invalidArgument, "cannot create a file in \(directory) (\(error)); choose a writable directory")
            }
        }
        throw ThinError(.backendFailure, "cannot create a temporary file in \(directory): every name tried exists")
    }
}

extension System {
    /// Opens the nbd device and sets its I/O timeout (see
    /// `CThinShims_nbd_set_timeout`); the caller closes the descriptor. The
    /// kernel keeps the setting while any process holds the device open.
    static func openNBD(_ device: String, timeoutSeconds: UInt32) throws(ThinError) -> Int32 {
        let descriptor = open(device, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ThinError(.backendFailure, "cannot open \(device) to set its I/O timeout: \(errnoText())")
        }
        let result = CThinShims_nbd_set_timeout(descriptor, UInt(timeoutSeconds))
        guard result == 0 else {
            close(descriptor)
            throw ThinError(.backendFailure, "cannot set the I/O timeout of \(device): \(errnoText(-result))")
        }
        return descriptor
    }

    /// The largest value ever passed for `path`: the file holds the largest
    /// so far, raised to `value` when that is larger, under an exclusive
    /// flock (concurrent callers never lower it). `value` when the file
    /// cannot be used.
    static func raiseRecordedMaximum(_ path: String, to value: Double) -> Double {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return value }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX) == 0 else { return value }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        let recorded = count > 0 ? Double(String(decoding: buffer[0..<count], as: UTF8.self)) : nil
        if let recorded, recorded >= value { return recorded }
        let text = Array(String(value).utf8)
        if pwrite(descriptor, text, text.count, 0) == text.count { _ = ftruncate(descriptor, off_t(text.count)) }
        return value
    }

    /// Whether loop device `device` (`/dev/loopN`) reads `file` (compared
    /// as the kernel names it: with symbolic links resolved).
    static func loopReads(_ device: String, file: String) -> Bool {
        guard let backing = loopBackingFile(device), let resolved = realpath(file, nil) else { return false }
        defer { free(resolved) }
        return backing == String(cString: resolved)
    }

    /// The file loop device `device` reads (`/dev/loopN`), or nil when it reads none.
    static func loopBackingFile(_ device: String) -> String? {
        guard let name = device.split(separator: "/").last,
              let text = readFile("/sys/block/\(name)/loop/backing_file") else { return nil }
        let path = text.hasSuffix("\n") ? String(text.dropLast()) : text
        return path.isEmpty ? nil : path
    }

    /// A listening unix socket at `path` (see `CThinShims_listen_unix`).
    static func listenUnix(_ path: String) throws(ThinError) -> Int32 {
        let descriptor = CThinShims_listen_unix(path)
        guard descriptor >= 0 else {
            throw ThinError(.backendFailure, "cannot listen on \(path): \(System.errnoText(-descriptor))")
        }
        return descriptor
    }

    /// The next descriptor passed on `listening` by SCM_RIGHTS, with the
    /// message's text; nil after `timeout` milliseconds or a wake on `wake`.
    static func receiveDescriptor(_ listening: Int32, wake: Int32,
                                  timeout: Int32) throws(ThinError) -> (message: String, descriptor: Int32)? {
        var text = [CChar](repeating: 0, count: 512)
        var received: Int32 = -1
        let result = CThinShims_receive_descriptor(listening, wake, timeout, &text, Int32(text.count), &received)
        if result == 1 { return (String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), received) }
        if result == 0 { return nil }
        throw ThinError(.backendFailure, "no descriptor received: \(System.errnoText(-result))")
    }

    /// Sends SIGTERM to `pid`, then SIGKILL if it still runs after `seconds`;
    /// returns once it is gone (its start time no longer `startTime`).
    static func stopProcess(_ pid: Int32, startTime: UInt64?, seconds: Int = 30) {
        func running() -> Bool {
            // A zombie has ended: its parent (init, for a server in its own session) reaps it in its time.
            guard let stat = System.readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")"),
                  stat[stat.index(after: close)...].split(separator: " ").first != "Z",
                  let started = System.processStartTime(pid) else { return false }
            return startTime == nil || startTime == started
        }
        guard running() else { return }
        kill(pid, SIGTERM)
        for _ in 0..<(seconds * 20) where running() { usleep(50_000) }
        if running() {
            kill(pid, SIGKILL)
            for _ in 0..<100 where running() { usleep(50_000) }
        }
    }
}
