/// How a hydration ended.
public enum HydrationOutcome: Sendable, Equatable {
    /// The volume reads no template.
    case nothingToHydrate
    /// Every block is the volume's own: it no longer reads its template.
    /// `copiedOnReadBytes` is set for a copy-on-read run.
    case hydrated(volume: String, totalBytes: UInt64, copiedOnReadBytes: UInt64?)
    /// A copy-on-read run stopped before the end; what it copied stays.
    case copiedOnRead(volume: String, totalBytes: UInt64, copiedBytes: UInt64)
}

/// A hydration (dm-clone copying a template clone's remaining template
/// data into the pool) as a job: begun in one phase, watched without the
/// SR lock (with copy-on-read, each batch of regions read copied in a short
/// phase of its own), ended in a last phase on every path: complete, the
/// volume drops its template; stopped, it reads the template as before.
public struct HydrationJob: Sendable {
    public let context: JobContext

    public init(_ context: JobContext) { self.context = context }

    /// How often dm-clone's status is read.
    static let pollMilliseconds: UInt32 = 200

    public func run(_ reference: String, threshold: UInt32, onRead: Bool) async throws(ThinError) -> HydrationOutcome {
        // Without dm-clone (XCP-ng 8.3's 4.19 kernel) a detached volume is copied offline.
        let offline = try await context.phase { sr throws(ThinError) in
            try await sr.hydratesOffline(reference, onRead: onRead)
        }
        if offline { return try await runOffline(reference) }
        let begun = try await context.phase { sr throws(ThinError) in
            try await sr.beginHydration(reference, threshold: threshold, onRead: onRead)
        }
        guard let hydration = begun else { return .nothingToHydrate }
        let total = hydration.totalRegions * hydration.regionBytes
        context.progress.begin("hydrate", total: max(total, 1))
        var watcher = HydrationWatcher(hydration: hydration, context: context, total: total)
        await watcher.watch(onRead: onRead)
        let dropped = try await context.phase { sr throws(ThinError) in try await sr.finishHydration(hydration) }
        return try watcher.outcome(dropped: dropped, onRead: onRead)
    }
}

/// The watch of one hydration, without the SR lock: dm-clone's progress,
/// and with copy-on-read the regions the guest read, copied in batches.
struct HydrationWatcher {
    let hydration: Hydration
    let context: JobContext
    let total: UInt64
    var stopped = false
    var endedElsewhere = false
    var failure: ThinError?
    var copiedOnRead = Set<UInt64>()

    init(hydration: Hydration, context: JobContext, total: UInt64) {
        self.hydration = hydration
        self.context = context
        self.total = total
        stopped = context.cancelled
    }

    /// Batches of at most 4 MiB: the guest's I/O waits while one is copied.
    var batchRegions: Int { Int(max(1, min(64, (4 << 20) / hydration.regionBytes))) }

    mutating func watch(onRead: Bool) async {
        let host = context.host
        var watch: ReadWatch?
        if !stopped {
            do {
                if onRead { watch = try hydration.watchReads(host: host) } else { try hydration.start(host: host) }
            } catch { failure = error }
        }
        while !stopped, failure == nil {
            guard hydration.isCurrent(host: host), let now = hydration.progress(host: host) else {
                endedElsewhere = true
                return
            }
            context.progress.update(done: min(now.hydratedRegions * hydration.regionBytes, total))
            if now.isComplete { return }
            context.system.pause(milliseconds: HydrationJob.pollMilliseconds)
            stopped = context.cancelled
            guard let watch, !stopped else { continue }
            do {
                guard try await copyRead(watch) else { return }
            } catch { failure = error }
        }
    }

    /// Copies what was read since the last look; false when the watch ends
    /// (stopped, or the hydration is no longer this process's).
    private mutating func copyRead(_ watch: ReadWatch) async throws(ThinError) -> Bool {
        // (Regions it copied itself read the source once more as dm-clone copies them: skipped.)
        guard let read = try hydration.regionsRead(host: context.host, watch: watch) else {
            endedElsewhere = true
            return false
        }
        let fresh = read.filter { !copiedOnRead.contains($0) }
        for start in stride(from: 0, to: fresh.count, by: batchRegions) {
            if context.cancelled {
                stopped = true
                return false
            }
            // Only what the template answers for now, found without the SR lock.
            let batch = hydration.answering(Array(fresh[start..<min(start + batchRegions, fresh.count)]))
            if batch.isEmpty { continue }
            let hydration = self.hydration
            let copied = try await context.phase { sr throws(ThinError) in try sr.copyRegions(batch, of: hydration) }
            guard let copied else {
                endedElsewhere = true
                return false
            }
            copiedOnRead.formUnion(copied)
        }
        return true
    }

    /// What the run came to, once the last phase has ended it.
    func outcome(dropped: Bool, onRead: Bool) throws(ThinError) -> HydrationOutcome {
        if let failure { throw failure }
        let key = hydration.volume.key
        let copiedBytes = UInt64(copiedOnRead.count) * hydration.regionBytes
        if onRead && !dropped {
            context.progress.finish()
            return .copiedOnRead(volume: key, totalBytes: total, copiedBytes: copiedBytes)
        }
        if endedElsewhere && !dropped {
            throw ThinError(.cancelled, "hydration of \(key) was stopped by a detach of the volume or the SR, or by a "
                            + "change that needs the volume alone; it reads the template as before, and "
                            + "thinvdi-hydrate resumes it")
        }
        if stopped && !dropped {
            throw ThinError(.cancelled, "hydration of \(key) stopped; it reads the template as before, and "
                            + "thinvdi-hydrate resumes it")
        }
        guard dropped else {
            throw ThinError(.backendFailure, "hydration of \(key) ended before every block was the volume's own (a "
                            + "discard during it); run thinvdi-hydrate again")
        }
        context.progress.finish()
        return .hydrated(volume: key, totalBytes: total, copiedOnReadBytes: onRead ? copiedBytes : nil)
    }
}
