import ArgumentParser
import ThinCore

/// Shell completion candidates, read from mounted catalogs only: fast, and no
/// LVM or device-mapper call on every TAB.
enum Complete {
    static let srs = CompletionKind.custom { _, _, _ in
        AttachedSR.attachedSummaries().flatMap { [$0.uuid] + ($0.name.isEmpty ? [] : [$0.name]) }
    }

    /// Volume keys of the SR named earlier on the command line.
    static let volumes = CompletionKind.custom { words, _, _ in
        let attached = AttachedSR.attachedSummaries()
        for word in words.dropFirst() {
            guard let hit = attached.first(where: { $0.uuid == word || $0.name == word }),
                  let sr = try? AttachedSR.open(hit.uuid, for: .read),
                  let keys = try? sr.volumes.volumeKeys() else { continue }
            return keys
        }
        return []
    }
}
