public import ThinDeviceMapper
public import ThinLVM
public import ThinTools

/// Everything below the core, as protocols: device-mapper, LVM, the helper
/// programs, and the mounts and raw writes the host performs. `live` is this
/// machine's; tests of the core's own logic pass recording doubles.
public struct Host: Sendable {
    public var deviceMapper: any DeviceMapperControl
    public var lvm: any LogicalVolumeManager
    public var programs: any HelperPrograms
    public var system: any HostSystem

    public init(deviceMapper: any DeviceMapperControl, lvm: any LogicalVolumeManager, programs: any HelperPrograms,
                system: any HostSystem) {
        self.deviceMapper = deviceMapper
        self.lvm = lvm
        self.programs = programs
        self.system = system
    }

    public static let live = Host(deviceMapper: DeviceMapper(), lvm: LVM.shared,
                                  programs: ThinTools(probeCache: Paths.probeCache), system: LinuxSystem())
}

/// The host operations the core's decisions depend on beyond the three tools:
/// mounting catalogs and zeroing the start of a metadata device.
public protocol HostSystem: Sendable {
    func isMounted(_ mountPoint: String) -> Bool
    func mount(device: String, at mountPoint: String, type: String, readOnly: Bool) throws(ThinError)
    /// Unmounting what is not mounted succeeds.
    func unmount(_ mountPoint: String) throws(ThinError)
    /// Writes zeros over the first 4 KiB of `device`, past the page cache.
    func zeroStart(of device: String) throws(ThinError)
    /// Copies the byte `ranges` of `source` onto `destination` (zeros
    /// included), past the page cache, then flushes; returns the bytes copied.
    func copyRanges(from source: String, to destination: String, ranges: [Range<UInt64>]) throws(ThinError) -> UInt64
    /// Flushes a block device's writes to stable storage (open, fsync, close).
    func flushDevice(_ device: String) throws(ThinError)
}

/// Linux: mount(2), /proc/self/mountinfo and O_DIRECT writes.
public struct LinuxSystem: HostSystem {
    public init() {}
    public func isMounted(_ mountPoint: String) -> Bool { Mounts.isMounted(mountPoint) }
    public func mount(device: String, at mountPoint: String, type: String, readOnly: Bool) throws(ThinError) {
        try Mounts.mount(device: device, at: mountPoint, type: type, readOnly: readOnly)
    }
    public func unmount(_ mountPoint: String) throws(ThinError) { try Mounts.unmount(mountPoint) }
    public func zeroStart(of device: String) throws(ThinError) { try DirectIO.zero(device: device) }
    public func copyRanges(from source: String, to destination: String,
                           ranges: [Range<UInt64>]) throws(ThinError) -> UInt64 {
        try DirectIO.copy(from: source, to: destination, ranges: ranges, skippingZeros: false)
    }
    public func flushDevice(_ device: String) throws(ThinError) { try DirectIO.flush(device) }
}
