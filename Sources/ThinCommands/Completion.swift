import ArgumentParser
import ThinCore

/// Shell completion candidates, read from mounted catalogs only: fast, and no
/// LVM or device-mapper call on every TAB.
enum Complete {
    static let srs = CompletionKind.custom { _, _, _ in
        AttachedSR.attachedCatalogs().flatMap { [$0.names.uuidString] + ($0.record.name.isEmpty ? [] : [$0.record.name]) }
    }

    /// Volume keys of the SR named earlier on the command line.
    static let volumes = CompletionKind.custom { words, _, _ in
        let catalogs = AttachedSR.attachedCatalogs()
        for word in words.dropFirst() {
            guard let hit = catalogs.first(where: { $0.names.uuidString == word || $0.record.name == word }),
                  let sr = try? AttachedSR.open(hit.names.uuidString, exclusive: false),
                  let keys = try? sr.volumeKeys() else { continue }
            return keys
        }
        return []
    }

    static let devices = CompletionKind.file()
}
