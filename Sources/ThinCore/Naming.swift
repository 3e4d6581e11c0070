import FoundationEssentials

/// Volume keys derived from name labels, and the rules for labels.
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

    /// Name labels and descriptions: any text without NUL, bounded. xapi
    /// lets users set any other character, so the tools keep them exactly
    /// (JSON shows them as they are) and escape control characters in human
    /// output instead of refusing them.
    public static func validateLabel(_ text: String, what: String, maximumBytes: Int = 65_536) throws(ThinError) {
        guard text.utf8.count <= maximumBytes else {
            throw .invalid("\(what) is \(text.utf8.count) bytes long; the limit is \(maximumBytes)")
        }
        guard !text.unicodeScalars.contains(where: { $0.value == 0 }) else {
            throw .invalid("\(what) contains a NUL character")
        }
    }

    /// SR names: a label that is not shaped like a uuid, since every tool
    /// takes an SR's uuid or its name in one argument.
    public static func validateSRName(_ name: String) throws(ThinError) {
        try validateLabel(name, what: "SR name", maximumBytes: TagText.maximumBytes)
        guard UUID(uuidString: name) == nil else {
            throw .invalid("SR name \"\(name)\" is shaped like a uuid, which tools would take for an SR's uuid; "
                           + "choose another name")
        }
    }

}
