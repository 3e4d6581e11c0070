/// What the core asks of device-mapper. `DeviceMapper` is the kernel's, through
/// libdevmapper; tests of the core's own logic use a recording double.
public protocol DeviceMapperControl: Sendable {
    /// Creates a device, loads `table` and resumes it; with an empty table,
    /// only creates it (a node of size 0 until a table is loaded and resumed).
    func create(name: String, uuid: DmUuid?, table: [TableLine], readOnly: Bool,
                udev: UdevVisibility) throws(DeviceMapperError)
    /// Loads `table` into the device's inactive slot; `resume` makes it live.
    func reload(name: String, table: [TableLine], readOnly: Bool) throws(DeviceMapperError)
    /// Suspends I/O; with `flush` outstanding I/O completes first.
    func suspend(name: String, flush: Bool) throws(DeviceMapperError)
    func resume(name: String, udev: UdevVisibility) throws(DeviceMapperError)
    func remove(name: String) throws(DeviceMapperError)
    /// Removes the device when its last opener closes it (at once if none does).
    func removeDeferred(name: String) throws(DeviceMapperError)
    func rename(name: String, to newName: String) throws(DeviceMapperError)
    /// Sends a message to sector 0 of a device; returns the response, if any.
    @discardableResult
    func send(_ message: DeviceMessage, to device: String) throws(DeviceMapperError) -> String?
    /// The live table, or nil if no device has that name.
    func table(name: String) throws(DeviceMapperError) -> [TableLine]?
    /// The status lines, or nil if no device has that name.
    func status(name: String) throws(DeviceMapperError) -> [TableLine]?
    /// The device's info, or nil if no device has that name.
    func info(name: String) throws(DeviceMapperError) -> DeviceInfo?
    /// The names of all devices.
    func list() throws(DeviceMapperError) -> [String]
    /// The target types the running kernel has loaded (`dmsetup targets`).
    func targetTypes() throws(DeviceMapperError) -> Set<TargetType>
}

extension DeviceMapperControl {
    public func create(name: String, uuid: DmUuid? = nil, table: [TableLine],
                       readOnly: Bool = false) throws(DeviceMapperError) {
        try create(name: name, uuid: uuid, table: table, readOnly: readOnly, udev: .standard)
    }

    public func reload(name: String, table: [TableLine]) throws(DeviceMapperError) {
        try reload(name: name, table: table, readOnly: false)
    }

    public func suspend(name: String) throws(DeviceMapperError) { try suspend(name: name, flush: true) }

    public func resume(name: String) throws(DeviceMapperError) { try resume(name: name, udev: .standard) }

    /// Sends a message to a thin pool.
    @discardableResult
    public func send(_ message: PoolMessage, to pool: String) throws(DeviceMapperError) -> String? {
        try send(.pool(message), to: pool)
    }

    /// Sends a message to a clone device.
    @discardableResult
    public func send(_ message: CloneMessage, to clone: String) throws(DeviceMapperError) -> String? {
        try send(.clone(message), to: clone)
    }

    /// Sends a statistics message to any device.
    @discardableResult
    public func send(_ message: StatsMessage, to device: String) throws(DeviceMapperError) -> String? {
        try send(.stats(message), to: device)
    }
}
