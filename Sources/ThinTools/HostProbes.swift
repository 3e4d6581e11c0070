#if canImport(Glibc)
import Glibc
#endif

/// A dotted program version ("0.7.3", "1.0.9"), compared field by field.
public struct ToolVersion: Sendable, Comparable, CustomStringConvertible {
    public let fields: [Int]

    public init(_ fields: [Int]) { self.fields = fields }

    /// The first dotted number in `text` ("thin_check 0.7.3", "nbdkit 1.32.5", "v1.0.9").
    public init?(parsing text: String) {
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }) {
            let candidate = word.hasPrefix("v") ? word.dropFirst() : word[...]
            let parts = candidate.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count >= 2, parts.count <= 4 else { continue }
            let numbers = parts.map { part in Int(part.prefix(while: \.isNumber)) }
            guard numbers.allSatisfy({ $0 != nil }), let major = parts.first, Int(major) != nil else { continue }
            self.fields = numbers.map { $0! }
            return
        }
        return nil
    }

    public var description: String { fields.map(String.init).joined(separator: ".") }

    public static func < (lhs: ToolVersion, rhs: ToolVersion) -> Bool {
        for index in 0..<max(lhs.fields.count, rhs.fields.count) {
            let left = index < lhs.fields.count ? lhs.fields[index] : 0
            let right = index < rhs.fields.count ? rhs.fields[index] : 0
            if left != right { return left < right }
        }
        return false
    }

    public static func == (lhs: ToolVersion, rhs: ToolVersion) -> Bool { !(lhs < rhs) && !(rhs < lhs) }
}

/// What the host's programs can do, asked of them (never assumed from the
/// distribution): the platform fallbacks are chosen by these answers.
public enum ProgramProbes {
    /// thin_check learnt `--metadata-snap` (a live pool's metadata) in 0.9.0.
    public static let liveCheckVersion = ToolVersion([0, 9, 0])
    /// The nbdkit filters thinsr's export and serve stack on the file plugin.
    public static let nbdkitFilters = ["extentlist", "limit"]

    /// thin-provisioning-tools' version, from `thin_check -V`; nil without
    /// thin_check. With `cacheDirectory` (the run directory's, on tmpfs) the
    /// answer is kept there under a key of the boot and thin_check's file
    /// (`ProbeCache.key`): `thinsr-check` asks on every run, and a process
    /// costs up to a second in an emulator, while a new boot or a replaced
    /// binary is probed again.
    public static func thinToolsVersion(cacheDirectory: String? = nil) async -> ToolVersion? {
        guard let path = Program.thinCheck.path else { return nil }
        let file = cacheDirectory.map { "\($0)/thin-tools" }
        let key = cacheDirectory == nil ? nil : ProbeCache.key(program: path)
        if let file, let key, let cached = ProbeCache.value(in: file, key: key) {
            return ToolVersion(parsing: cached)   // "unknown" parses as nil, as it was probed
        }
        guard let result = try? await ExternalCommand.run(Program.thinCheck, ["-V"]) else { return nil }
        let version = ToolVersion(parsing: result.standardOutput + " " + result.standardError)
        if let file, let key { ProbeCache.store(version?.description ?? "unknown", in: file, key: key) }
        return version
    }

    /// nbdkit's version, and which of `nbdkitFilters` its filter directory has
    /// (XCP-ng's nbdkit 1.8 package has none); nil without nbdkit.
    public static func nbdkit() async -> (version: ToolVersion?, filters: [String])? {
        guard let result = try? await ExternalCommand.run(Program.nbdkit, ["--dump-config"]), result.exitStatus == 0 else {
            return nil
        }
        var version: ToolVersion?
        var filterDirectory: String?
        for line in result.standardOutput.split(separator: "\n") {
            if line.hasPrefix("version=") { version = ToolVersion(parsing: String(line.dropFirst(8))) }
            if line.hasPrefix("filterdir=") { filterDirectory = String(line.dropFirst(10)) }
        }
        let filters = nbdkitFilters.filter { filter in
            filterDirectory.map { access("\($0)/nbdkit-\(filter)-filter.so", R_OK) == 0 } ?? false
        }
        return (version, filters)
    }

    /// Loads a kernel module (`modprobe NAME`); false when it cannot be loaded.
    public static func loadModule(_ name: String) async -> Bool {
        (try? await ExternalCommand.run(Program.loadModule, ["-q", name]))?.exitStatus == 0
    }
}

/// Answers of probes that cost a process, kept in a file (in the run
/// directory, on tmpfs, so a reboot forgets them) under a key naming what
/// was probed: a different key (another boot, a replaced or changed binary)
/// means probe again. A file that cannot be read or written is a miss.
public enum ProbeCache {
    /// The key of a probe of the program at `path`: the boot, the path, and
    /// the device, inode, size, modification and change times of its file
    /// (a symbolic link followed: a package upgrade replaces the target).
    public static func key(program path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0, let boot = firstLine(of: "/proc/sys/kernel/random/boot_id") else { return nil }
        return "\(boot) \(path) \(info.st_dev) \(info.st_ino) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec) "
            + "\(info.st_ctim.tv_sec).\(info.st_ctim.tv_nsec)"
    }

    /// The value kept in `file` for `key`, nil when there is none for it.
    public static func value(in file: String, key: String) -> String? {
        guard let text = contents(of: file) else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 2, lines[0] == key else { return nil }
        return String(lines[1])
    }

    /// Keeps `value` under `key` (a new file renamed over the old one, so a
    /// reader never sees half of it); best effort, as a miss only costs a probe.
    public static func store(_ value: String, in file: String, key: String) {
        let directory = String(file[..<(file.lastIndex(of: "/") ?? file.startIndex)])
        if !directory.isEmpty { makeDirectories(directory) }
        let temporary = "\(file).\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard descriptor >= 0 else { return }
        var text = "\(key)\n\(value)\n"
        let written = text.withUTF8 { bytes in write(descriptor, bytes.baseAddress, bytes.count) == bytes.count }
        close(descriptor)
        if !written || rename(temporary, file) != 0 { unlink(temporary) }
    }

    private static func makeDirectories(_ path: String) {
        var partial = ""
        for component in path.split(separator: "/") {
            partial += "/\(component)"
            _ = mkdir(partial, 0o755)
        }
    }

    private static func contents(of path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
    }

    private static func firstLine(of path: String) -> String? {
        contents(of: path)?.split(separator: "\n").first.map(String.init)
    }
}
