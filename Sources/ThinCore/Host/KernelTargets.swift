public import ThinDeviceMapper
import ThinTools

/// Which device-mapper targets this kernel has, loading a target's module when
/// it is not loaded yet (as `dmsetup targets` after `modprobe`). XCP-ng 8.3's
/// 4.19 kernel has no dm-clone: hydration and copy-on-read ask here first.
public enum KernelTarget: String, Sendable, CaseIterable {
    case thinPool = "thin-pool"
    case clone
    case mirror

    public var type: TargetType { TargetType(rawValue: rawValue) }
    var module: String {
        switch self {
        case .thinPool: return "dm_thin_pool"
        case .clone: return "dm_clone"
        case .mirror: return "dm_mirror"
        }
    }
    /// The kernel that brought the target, for the line that says it is missing.
    var since: String {
        switch self {
        case .thinPool, .mirror: return "Linux 3.2"
        case .clone: return "Linux 5.4"
        }
    }

    /// Whether the kernel has the target, its module loaded if need be.
    public func isAvailable(_ host: Host) async -> Bool {
        if (try? host.deviceMapper.targetTypes().contains(type)) == true { return true }
        guard await host.programs.loadModule(module) else { return false }
        return (try? host.deviceMapper.targetTypes().contains(type)) == true
    }

    /// Throws `Not_available` naming the target, its module and the kernel that has it.
    public func require(_ host: Host, for what: String) async throws(ThinError) {
        guard await isAvailable(host) else {
            throw ThinError(.notAvailable, "\(what) needs device-mapper's \(rawValue) target, which this kernel lacks "
                            + "(module \(module), \(since) or later)")
        }
    }
}
