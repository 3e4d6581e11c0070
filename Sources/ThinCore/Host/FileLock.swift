#if canImport(Glibc)
import Glibc
#endif

/// An exclusive flock held until `release` (or process exit, so a killed
/// process never leaves the SR locked).
final class FileLock {
    private var descriptor: Int32

    init(path: String) throws(ThinError) {
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw ThinError(.backendFailure, "cannot open lock \(path): \(System.errnoText())")
        }
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let message = System.errnoText()
                close(descriptor)
                throw ThinError(.backendFailure, "cannot lock \(path): \(message)")
            }
        }
    }

    func release() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    deinit { release() }
}
