/// Hydration without dm-clone, as a job (see `OfflineHydration`): begun in
/// one phase, each chunk copied in a short phase of its own (so an attach,
/// which takes the SR lock, always wins between two chunks), ended in a last
/// phase on every path.
extension HydrationJob {
    func runOffline(_ reference: String) async throws(ThinError) -> HydrationOutcome {
        let begun = try await context.phase { sr throws(ThinError) in try await sr.beginOfflineHydration(reference) }
        guard let hydration = begun else { return .nothingToHydrate }
        let total = hydration.totalBytes
        context.progress.begin("hydrate", total: max(total, 1))
        var done: UInt64 = 0
        var endedElsewhere = false
        var failure: ThinError?
        for chunk in hydration.chunks {
            if context.cancelled { break }
            do {
                let copied = try await context.phase { sr throws(ThinError) in try sr.copyOffline(chunk, of: hydration) }
                guard copied != nil else {
                    endedElsewhere = true
                    break
                }
            } catch {
                failure = error
                break
            }
            done += UInt64(chunk.count)
            context.progress.update(done: done)
        }
        let copiedAll = done == total
        let dropped = try await context.phase { sr throws(ThinError) in
            try await sr.finishOfflineHydration(hydration, copiedAll: copiedAll)
        }
        if let failure { throw failure }
        let key = hydration.volume.key
        guard dropped else {
            throw ThinError(.cancelled, "hydration of \(key) " + (endedElsewhere
                ? "was stopped by an attach of the volume or a change that needs it alone" : "stopped")
                + "; it reads the template as before, and thinvdi-hydrate resumes it")
        }
        context.progress.finish()
        return .hydrated(volume: key, totalBytes: total, copiedOnReadBytes: nil)
    }
}
