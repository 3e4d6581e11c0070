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

    /// thin-provisioning-tools' version, from `thin_check -V`; nil without thin_check.
    public static func thinToolsVersion() async -> ToolVersion? {
        guard let result = try? await ExternalCommand.run(Program.thinCheck, ["-V"]) else { return nil }
        return ToolVersion(parsing: result.standardOutput + " " + result.standardError)
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
