import ThinDeviceMapper

extension Pool {
    /// Runs `body` with the pool's one metadata snapshot held, so the thin
    /// tools can read the live pool's metadata (`-m`, `--metadata-snap`).
    /// `lockFile` serializes thinsr's use of the snapshot across processes.
    func withMetadataSnapshot<T>(lockFile: String,
                                 _ body: () async throws(ThinError) -> T) async throws(ThinError) -> T {
        let lock = try FileLock(path: lockFile)
        defer { lock.release() }
        do {
            try send(.reserveMetadataSnapshot)
        } catch where error.reason == .busy {
            // Left held by a process that died between reserve and release; we
            // hold the lock that serializes thinsr's use of it, so release and retry.
            do {
                try send(.releaseMetadataSnapshot)
                try send(.reserveMetadataSnapshot)
            } catch {
                throw .backend("cannot reserve a metadata snapshot", error)
            }
        } catch {
            throw .backend("cannot reserve a metadata snapshot", error)
        }
        defer { try? send(.releaseMetadataSnapshot) }
        return try await body()
    }
}
