#if canImport(Glibc)
import Glibc
#endif

/// A destroy of a volume another process is still filling (an import, or
/// the zeroing of a preallocated create): that job is cancelled with
/// SIGTERM and removes the volume itself, under the SR lock, which this
/// waits for without holding it (up to a minute).
public struct DestroyJob: Sendable {
    public let sr: String
    public let host: Host

    public init(sr: String, host: Host) {
        self.sr = sr
        self.host = host
    }

    /// Destroys `reference`, or has the process filling it remove it.
    public func run(_ reference: String) async throws(ThinError) {
        var cancelledFiller = false
        for attempt in 0..<2 {
            let open = try AttachedSR.open(sr, for: .write, host: host)
            let filler: Int32?
            do {
                defer { open.close() }
                let record: VolumeRecord
                do { record = try open.requireVolume(reference) } catch where cancelledFiller && error.code == .volumeDoesNotExist {
                    return  // the process it cancelled removed it
                }
                filler = open.preallocated.fillingProcess(of: record)
                if filler == nil { return try open.volumes.destroyVolume(reference) }
            }
            guard attempt == 0, let pid = filler else { break }
            // The filler needs the SR lock to remove the volume: this waits without it.
            kill(pid, SIGTERM)
            cancelledFiller = true
            for _ in 0..<600 where System.processStartTime(pid) != nil { usleep(100_000) }
        }
        throw ThinError(.volumeInUse, "\(reference) is still being filled by another process that did not stop on "
                        + "SIGTERM; stop it, then destroy the volume again", parameters: [reference])
    }
}
