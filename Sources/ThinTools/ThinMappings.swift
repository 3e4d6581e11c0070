/// One thin device's mappings as `thin_dump` prints them: runs of
/// consecutive virtual blocks, each with the pool time at which it was
/// provisioned. dm-thin advances the pool's time at every snapshot and
/// stamps each new mapping with it, so a mapping whose time is at least a
/// snapshot's creation time was written after that snapshot was taken.
public struct ThinDeviceMappings: Equatable, Sendable {
    /// A run of `length` virtual blocks from `begin`, provisioned at `time`.
    public struct Run: Equatable, Sendable {
        public var begin: UInt64
        public var length: UInt64
        public var time: UInt32

        public init(begin: UInt64, length: UInt64, time: UInt32) {
            self.begin = begin
            self.length = length
            self.time = time
        }
    }

    public var deviceID: UInt32
    /// The pool time when the device was made (a snapshot's: the time after
    /// its snapshot advanced it).
    public var creationTime: UInt32
    public var runs: [Run]

    public init(deviceID: UInt32, creationTime: UInt32, runs: [Run]) {
        self.deviceID = deviceID
        self.creationTime = creationTime
        self.runs = runs
    }
}

extension ThinTools {
    /// `thin_dump` of the given devices' mappings (through the pool's
    /// reserved metadata snapshot when `metadataSnapshot`).
    public func dumpMappings(metadataDevice: String, metadataSnapshot: Bool,
                             deviceIDs: [UInt32]) async throws(ExternalCommandError) -> [ThinDeviceMappings] {
        var arguments = metadataSnapshot ? ["-m"] : []
        for id in deviceIDs { arguments += ["--dev-id", String(id)] }
        arguments.append(metadataDevice)
        let output = try await ExternalCommand.check("thin_dump", arguments)
        guard let devices = Self.parseMappings(output) else {
            throw ExternalCommandError(program: "thin_dump", arguments: arguments, exitStatus: 0,
                                       standardError: "unexpected output (no <device> elements parsed)")
        }
        return devices
    }

    /// Parses thin_dump's XML: `<device dev_id= creation_time= ...>` then
    /// `<range_mapping origin_begin= data_begin= length= time=/>` and
    /// `<single_mapping origin_block= data_block= time=/>` lines. Nil if a
    /// mapping line comes outside a device or lacks an attribute.
    public static func parseMappings(_ output: String) -> [ThinDeviceMappings]? {
        var devices: [ThinDeviceMappings] = []
        for line in output.split(separator: "\n") {
            let text = line.drop { $0 == " " || $0 == "\t" }
            if text.hasPrefix("<device ") {
                guard let id = number("dev_id", in: text).flatMap(UInt32.init(exactly:)),
                      let created = number("creation_time", in: text).flatMap(UInt32.init(exactly:)) else { return nil }
                devices.append(ThinDeviceMappings(deviceID: id, creationTime: created, runs: []))
            } else if text.hasPrefix("<range_mapping ") {
                guard !devices.isEmpty, let begin = number("origin_begin", in: text),
                      let length = number("length", in: text),
                      let time = number("time", in: text).flatMap(UInt32.init(exactly:)) else { return nil }
                devices[devices.count - 1].runs.append(.init(begin: begin, length: length, time: time))
            } else if text.hasPrefix("<single_mapping ") {
                guard !devices.isEmpty, let block = number("origin_block", in: text),
                      let time = number("time", in: text).flatMap(UInt32.init(exactly:)) else { return nil }
                devices[devices.count - 1].runs.append(.init(begin: block, length: 1, time: time))
            }
        }
        return devices
    }

    /// The number in `name="..."` of one XML start tag.
    static func number(_ name: String, in tag: Substring) -> UInt64? {
        guard let range = tag.firstRange(of: " \(name)=\"") else { return nil }
        return UInt64(String(tag[range.upperBound...].prefix { $0 != "\"" }))
    }
}
