import ThinTools
#if canImport(Glibc)
import Glibc
#endif

/// A flock held until `release` (or process exit, so a killed process never
/// leaves the SR locked). Lock files live under /run, never on a catalog
/// mount: a process waiting for a lock must not keep that mount busy.
final class FileLock {
    enum Mode {
        case exclusive
        case shared

        var operation: Int32 { self == .exclusive ? LOCK_EX : LOCK_SH }
    }

    private var descriptor: Int32

    /// Waits for the lock.
    init(path: String, mode: Mode = .exclusive) throws(ThinError) {
        descriptor = try Self.open(path)
        while flock(descriptor, mode.operation) != 0 {
            guard errno == EINTR else { throw failure(path) }
        }
    }

    private init(descriptor: Int32) { self.descriptor = descriptor }

    /// The lock if no other process holds it in a conflicting mode, else nil.
    static func attempt(path: String, mode: Mode) throws(ThinError) -> FileLock? {
        let lock = FileLock(descriptor: try open(path))
        while flock(lock.descriptor, mode.operation | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK { return nil }
            guard errno == EINTR else { throw lock.failure(path) }
        }
        return lock
    }

    /// Waits at most `seconds` for the lock; nil when another process held
    /// it all that time.
    static func waiting(path: String, seconds: Int, mode: Mode = .exclusive) throws(ThinError) -> FileLock? {
        for tries in 0...(seconds * 10) {
            if let lock = try attempt(path: path, mode: mode) { return lock }
            if tries < seconds * 10 { usleep(100_000) }
        }
        return nil
    }

    /// Opens (creating) the lock file, and its directory on first use.
    private static func open(_ path: String) throws(ThinError) -> Int32 {
        var descriptor = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if descriptor < 0, errno == ENOENT, path.contains("/") {
            try System.makeDirectories(PathText.directory(of: path))
            descriptor = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        }
        guard descriptor >= 0 else {
            throw ThinError(.backendFailure, "cannot open lock \(path): \(System.errnoText())")
        }
        return descriptor
    }

    /// The error for a flock that failed (errno still set), closing the file.
    private func failure(_ path: String) -> ThinError {
        let error = ThinError(.backendFailure, "cannot lock \(path): \(System.errnoText())")
        release()
        return error
    }

    func release() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    deinit { release() }
}
