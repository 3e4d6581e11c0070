#if canImport(Glibc)
import Glibc
#endif

/// A job's hold on one volume while it copies without the SR lock: the
/// volume attached for this process (a `process.<pid>` holder, so a detach
/// or a writer sees who uses it), its device open (so a plain detach cannot
/// remove it under the copy), and its scratch files in the SR's transfer
/// directory. `release` undoes all three, once, whatever happened.
public final class VolumeLease {
    public enum Mode: Sendable {
        /// Read-only, shared with other readers; refused while it is attached read-write.
        case reading
        /// Read-write for this process alone; refused for snapshots and attached volumes.
        case writing
    }

    public let volume: VolumeRecord
    public let device: String
    public let names: SRNames
    let scratchDirectory: String
    private let context: JobContext
    private var descriptor: Int32?
    private var scratchFiles: [String] = []
    private var released = false

    private init(volume: VolumeRecord, device: String, names: SRNames, scratchDirectory: String, context: JobContext) {
        self.volume = volume
        self.device = device
        self.names = names
        self.scratchDirectory = scratchDirectory
        self.context = context
    }

    /// Takes the lease in one phase under the SR lock: `prepare` runs on the
    /// open SR first (what the job will read), then the volume is attached;
    /// after the phase the device is opened. Any failure lets go of what
    /// was taken.
    static func acquire<Prepared>(
        _ reference: String, mode: Mode, context: JobContext,
        prepare: (AttachedSR) async throws(ThinError) -> Prepared
    ) async throws(ThinError) -> (VolumeLease, Prepared) {
        let (lease, prepared) = try await context.phase { sr throws(ThinError) in
            let prepared = try await prepare(sr)
            let (volume, device) = mode == .reading ? try await sr.attachForReading(reference)
                : try await sr.attachForWriting(reference)
            do throws(ThinError) {
                let lease = VolumeLease(volume: volume, device: device, names: sr.names,
                                        scratchDirectory: try sr.transferDirectory(),
                                        context: context.pinned(to: sr.names))
                return (lease, prepared)
            } catch {
                try? sr.releaseHold(volume)
                throw error
            }
        }
        do throws(ThinError) { lease.descriptor = try context.system.holdDevice(lease.device) } catch {
            await lease.release()
            throw error
        }
        return (lease, prepared)
    }

    /// A scratch file of this job (`<tag>-<pid>.<suffix>`), removed at release.
    func scratchFile(_ tag: String, _ suffix: String) -> String {
        let path = "\(scratchDirectory)/\(tag)-\(getpid()).\(suffix)"
        scratchFiles.append(path)
        return path
    }

    /// Lets the volume go: scratch files, the descriptor, then the attach
    /// (in a phase of its own). A failure of the last leaves only a holder
    /// that a later detach clears, so it is not reported.
    func release() async {
        guard !released else { return }
        released = true
        for file in scratchFiles { System.removeFile(file) }
        if let descriptor { context.system.releaseDevice(descriptor) }
        descriptor = nil
        let volume = self.volume
        _ = try? await context.phase { sr throws(ThinError) in try sr.releaseHold(volume) }
    }

    /// Runs `body` with the lease, then releases it on every path.
    func whileHeld<T>(_ body: (VolumeLease) async throws(ThinError) -> T) async throws(ThinError) -> T {
        do throws(ThinError) {
            let result = try await body(self)
            await release()
            return result
        } catch {
            await release()
            throw error
        }
    }
}
