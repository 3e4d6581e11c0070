/// The zeroing of a preallocated volume (a new one, or a grown one's new
/// part) as a job: begun under the SR lock, the zeroes written without it
/// (so the pool monitor, and a thinvdi-destroy that cancels it, are not
/// kept waiting), ended under it. The volume carries this process's owner
/// mark meanwhile; a failure or cancel removes what was begun.
public struct ZeroingJob: Sendable {
    public let context: JobContext

    public init(_ context: JobContext) { self.context = context }

    /// Makes a preallocated volume and zeroes it. With `keepFilling` it stays
    /// marked as this process's (an import fills it next), else it is
    /// released for use. With `describe`, its view is returned too.
    public func createPreallocated(name: String, description: String, sizeBytes: UInt64, sharable: Bool,
                                   keepFilling: Bool, describe: Bool = false) async throws(ThinError)
        -> (volume: VolumeRecord, view: VolumeView?) {
        let (volume, path) = try await context.phase { sr throws(ThinError) in
            let volume = try sr.preallocated.beginPreallocatedVolume(name: name, description: description, sizeBytes: sizeBytes,
                                                        sharable: sharable)
            return (volume, sr.preallocated.rawDevicePath(volume) ?? "")
        }
        let total = context.system.blockDeviceSize(path) ?? volume.virtualSize
        context.progress.begin("zero", total: total)
        let failure = zero(path, from: 0, to: total, what: "zeroing of \(volume.key)")
        return try await context.phase { sr throws(ThinError) in
            if let failure {
                try sr.abandonImport(volume)
                throw failure
            }
            context.progress.finish()
            let ready = keepFilling ? volume : try sr.preallocated.finishFilling(volume)
            return (ready, describe ? try await sr.volumes.view(of: ready) : nil)
        }
    }

    /// Resizes `reference`; a preallocated volume's new part is zeroed
    /// without the SR lock. Returns the volume as it is now, and with
    /// `describe` its view.
    public func resize(_ reference: String, to newSize: UInt64,
                       describe: Bool) async throws(ThinError) -> (volume: VolumeRecord, view: VolumeView?) {
        let growth = try await context.phase { sr throws(ThinError) -> (RawGrowth?, VolumeRecord?, VolumeView?) in
            if let growth = try sr.volumes.beginResize(reference, to: newSize) { return (growth, nil, nil) }
            let volume = try sr.requireVolume(reference)
            return (nil, volume, describe ? try await sr.volumes.view(of: volume) : nil)
        }
        guard let raw = growth.0 else { return (growth.1!, growth.2) }
        context.progress.begin("zero", total: raw.to - raw.from)
        let failure = zero(raw.path, from: raw.from, to: raw.to, what: "zeroing of \(reference)'s new part")
        return try await context.phase { sr throws(ThinError) in
            if let failure {
                try? sr.preallocated.abandonGrowth(raw)
                throw failure
            }
            try sr.preallocated.finishGrowth(raw)
            context.progress.finish()
            let volume = try sr.requireVolume(reference)
            return (volume, describe ? try await sr.volumes.view(of: volume) : nil)
        }
    }

    /// Zeroes `[from, to)` with progress, stopping at a cancel; returns the
    /// failure (a cancel as `what` cancelled), or nil.
    private func zero(_ path: String, from: UInt64, to: UInt64, what: String) -> ThinError? {
        let progress = context.progress, cancellation = context.cancellation
        do {
            try context.system.zero(path, from: from, to: to, progress: { progress.update(done: $0) },
                                    stop: { cancellation.isRequested })
            return nil
        } catch {
            return error.code == .cancelled ? cancelled(what) : error
        }
    }
}
