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
    convenience init(path: String, mode: Mode = .exclusive) throws(ThinError) {
        guard let lock = try Self.acquire(path: path, mode: mode, wait: true) else {
            throw ThinError(.backendFailure, "cannot lock \(path)")
        }
        self.init(descriptor: lock.take())
    }

    private init(descriptor: Int32) { self.descriptor = descriptor }

    /// The lock if no other process holds it in a conflicting mode, else nil.
    static func attempt(path: String, mode: Mode) throws(ThinError) -> FileLock? {
        try acquire(path: path, mode: mode, wait: false)
    }

    private static func acquire(path: String, mode: Mode, wait: Bool) throws(ThinError) -> FileLock? {
        var descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if descriptor < 0, errno == ENOENT, let slash = path.lastIndex(of: "/") {
            try System.makeDirectories(String(path[..<slash]))
            descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        }
        guard descriptor >= 0 else {
            throw ThinError(.backendFailure, "cannot open lock \(path): \(System.errnoText())")
        }
        while flock(descriptor, mode.operation | (wait ? 0 : LOCK_NB)) != 0 {
            let failure = errno
            guard failure == EINTR else {
                let message = System.errnoText()
                close(descriptor)
                if failure == EWOULDBLOCK { return nil }
                throw ThinError(.backendFailure, "cannot lock \(path): \(message)")
            }
        }
        return FileLock(descriptor: descriptor)
    }

    /// Hands the descriptor over (this lock no longer releases it).
    private func take() -> Int32 {
        defer { descriptor = -1 }
        return descriptor
    }

    func release() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    deinit { release() }
}
