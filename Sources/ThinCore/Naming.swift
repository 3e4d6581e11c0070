public import FoundationEssentials

/// How names become keys, LV names, dm names and paths.
public enum Naming {
    /// Characters a volume key keeps from its name label: safe in paths, dm
    /// names, shells and URIs.
    static let keyCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-".unicodeScalars)
    public static let maximumKeyLength = 64
    static let fallbackKey = "volume"

    /// Derives a volume key from a name label: characters outside the safe set
    /// are dropped, leading dots and dashes too (no `.`, `..` or option-like
    /// keys), the result is bounded, and a `~N` suffix makes it unique among
    /// `existing`, as vfat does for short names.
    public static func deriveKey(fromName name: String, existing: Set<String>) -> String {
        var base = String(String.UnicodeScalarView(name.unicodeScalars.filter(keyCharacters.contains)))
        while let first = base.first, first == "." || first == "-" { base.removeFirst() }
        if base.isEmpty { base = fallbackKey }
        base = String(base.prefix(maximumKeyLength))
        if !existing.contains(base) && UUID(uuidString: base) == nil { return base }
        var counter = 1
        while true {
            let suffix = "~\(counter)"
            let candidate = String(base.prefix(maximumKeyLength - suffix.count)) + suffix
            if !existing.contains(candidate) { return candidate }
            counter += 1
        }
    }

    /// Whether `key` could have come from `deriveKey` (used to validate input).
    public static func isValidKey(_ key: String) -> Bool {
        !key.isEmpty && key.count <= maximumKeyLength && !key.hasPrefix(".") && !key.hasPrefix("-")
            && key.unicodeScalars.allSatisfy { keyCharacters.contains($0) || $0 == "~" }
    }

    /// Name labels and descriptions: any text without NUL or other control
    /// characters except newline and tab, bounded.
    public static func validateLabel(_ text: String, what: String, maximumBytes: Int = 65_536) throws(ThinError) {
        guard text.utf8.count <= maximumBytes else {
            throw .invalid("\(what) is \(text.utf8.count) bytes long; the limit is \(maximumBytes)")
        }
        guard !text.unicodeScalars.contains(where: { $0.value == 0 }) else {
            throw .invalid("\(what) contains a NUL character")
        }
    }

    /// The hex form of an SR or volume uuid, used in LVM and dm names.
    static func hex(_ uuid: UUID) -> String {
        String(uuid.uuidString.lowercased().filter { $0 != "-" })
    }
}

/// The names of everything one SR owns. dm names contain no `-`, so they can
/// never be LVM's `<vg>-<lv>` names.
public struct SRNames: Sendable {
    public let uuid: UUID
    public var hex: String { Naming.hex(uuid) }

    public init(uuid: UUID) { self.uuid = uuid }

    public var uuidString: String { uuid.uuidString.lowercased() }
    public var ownVolumeGroup: String { "thinsr_\(hex)" }
    public var dataLV: String { "thinsr_\(hex)_data" }
    public var metadataLV: String { "thinsr_\(hex)_meta" }
    public var spareLV: String { "thinsr_\(hex)_spare" }
    public var catalogLV: String { "thinsr_\(hex)_catalog" }
    public var allLVs: [String] { [catalogLV, metadataLV, spareLV, dataLV] }

    public var poolDevice: String { "thinsr_\(hex)_pool" }
    public var poolDeviceUUID: String { "THINSR-\(uuidString)-pool" }
    public var volumeDevicePrefix: String { "thinsr_\(hex)_v" }
    public func volumeDevice(_ volume: UUID) -> String { volumeDevicePrefix + Naming.hex(volume) }
    public func volumeDeviceUUID(_ volume: UUID) -> String { "THINSR-\(uuidString)-\(volume.uuidString.lowercased())" }

    public var runDirectory: String { "\(Paths.runRoot)/\(uuidString)" }
    public var catalogMount: String { "\(runDirectory)/catalog" }
    public var catalogDatabase: String { "\(catalogMount)/catalog.db" }
    public var lockFile: String { "\(catalogMount)/lock" }
    /// Serializes thinsr's use of the pool's one metadata snapshot.
    var metadataSnapshotLockFile: String { "\(catalogMount)/metadata-snapshot.lock" }
    public var deviceDirectory: String { "\(Paths.deviceRoot)/\(uuidString)" }
    public func devicePath(key: String) -> String { "\(deviceDirectory)/\(key)" }

    // LVM tags: every LV carries the SR and its role; the catalog LV also
    // carries the mode and the name, so `thinsr-ls` can show detached SRs.
    public static let tagPrefix = "thinsr.sr="
    public var srTag: String { Self.tagPrefix + uuidString }
    public static func roleTag(_ role: String) -> String { "thinsr.role=\(role)" }
    public static let modeTagPrefix = "thinsr.mode="
    public static let nameTagPrefix = "thinsr.name="
    /// On the catalog LV from its creation until `thinsr-create` finishes.
    public static let incompleteTag = "thinsr.incomplete"
}

public enum Paths {
    /// Overridable for tests; production uses /run and /dev.
    public static var runRoot: String { environment("THINSR_RUN_DIR") ?? "/run/thinsr" }
    public static var deviceRoot: String { environment("THINSR_DEV_DIR") ?? "/dev/thinsr" }

    static func environment(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// Hex encoding for text kept in LVM tags (which allow only a few characters).
enum TagText {
    static let maximumBytes = 400

    static func encode(_ text: String) -> String {
        text.utf8.prefix(maximumBytes).map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
        }.joined()
    }

    static func decode(_ hex: String) -> String? {
        var bytes: [UInt8] = []
        var iterator = hex.makeIterator()
        while let high = iterator.next() {
            guard let low = iterator.next(), let h = high.hexDigitValue, let l = low.hexDigitValue else { return nil }
            bytes.append(UInt8(h << 4 | l))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
