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

        /// The virtual blocks the run covers.
        public var blocks: Range<UInt64> { begin..<(begin + length) }
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

/// What `thin_dump` says of some devices: their mappings and the pool's time.
public struct ThinMappingsDump: Equatable, Sendable {
    public var poolTime: UInt32
    public var devices: [ThinDeviceMappings]

    public init(poolTime: UInt32, devices: [ThinDeviceMappings]) {
        self.poolTime = poolTime
        self.devices = devices
    }
}

extension ThinTools {
    /// `thin_dump` of the given devices' mappings (through the pool's
    /// reserved metadata snapshot when `metadataSnapshot`).
    public func dumpMappings(metadataDevice: String, metadataSnapshot: Bool,
                             deviceIDs: [UInt32]) async throws(ExternalCommandError) -> ThinMappingsDump {
        var arguments = metadataSnapshot ? ["-m"] : []
        for id in deviceIDs { arguments += ["--dev-id", String(id)] }
        arguments.append(metadataDevice)
        let output = try await ExternalCommand.check(Program.thinDump, arguments)
        guard let dump = Self.parseMappings(output) else {
            throw ExternalCommandError(program: Program.thinDump.name, arguments: arguments, exitStatus: 0,
                                       standardError: "output thinsr does not understand (no superblock, or an "
                                       + "element outside what thin_dump documents)")
        }
        return dump
    }

    /// Parses thin_dump's XML: the `<superblock time=...>`, each `<device
    /// dev_id= creation_time=...>` and its `<range_mapping origin_begin=
    /// length= time=/>` and `<single_mapping origin_block= time=/>` lines.
    /// thin-provisioning-tools 1.x also writes runs shared by several devices
    /// once, as `<def name=...>` blocks before the devices, and `<ref
    /// name=.../>` lines inside them: those are expanded. Nil on anything
    /// else (a mapping outside a device or def, a missing attribute, an
    /// unknown element), since a misread map would under-report changes.
    public static func parseMappings(_ output: String) -> ThinMappingsDump? {
        var poolTime: UInt32?
        var devices: [ThinDeviceMappings] = []
        var definitions: [Substring: [ThinDeviceMappings.Run]] = [:]
        var definition: Substring?
        var inDevice = false
        for line in output.split(separator: "\n") {
            let text = line.drop { $0 == " " || $0 == "\t" }
            guard !text.isEmpty else { continue }
            if text.hasPrefix("<superblock ") {
                guard let time = number("time", in: text).flatMap(UInt32.init(exactly:)) else { return nil }
                poolTime = time
            } else if text.hasPrefix("<device ") {
                guard definition == nil, let id = number("dev_id", in: text).flatMap(UInt32.init(exactly:)),
                      let created = number("creation_time", in: text).flatMap(UInt32.init(exactly:)) else { return nil }
                devices.append(ThinDeviceMappings(deviceID: id, creationTime: created, runs: []))
                inDevice = true
            } else if text.hasPrefix("<def ") {
                guard !inDevice, definition == nil, let name = string("name", in: text) else { return nil }
                definition = name
                definitions[name] = []
            } else if text.hasPrefix("<range_mapping ") || text.hasPrefix("<single_mapping ") {
                guard let run = mappingRun(text) else { return nil }
                if let definition {
                    definitions[definition, default: []].append(run)
                } else if inDevice {
                    devices[devices.count - 1].runs.append(run)
                } else {
                    return nil
                }
            } else if text.hasPrefix("<ref ") {
                guard inDevice, let name = string("name", in: text), let runs = definitions[name] else { return nil }
                devices[devices.count - 1].runs += runs
            } else if text.hasPrefix("</device>") {
                inDevice = false
            } else if text.hasPrefix("</def>") {
                definition = nil
            } else if !text.hasPrefix("</superblock>") && !text.hasPrefix("<?xml") {
                return nil
            }
        }
        guard let poolTime else { return nil }
        return ThinMappingsDump(poolTime: poolTime, devices: devices)
    }

    private static func mappingRun(_ text: Substring) -> ThinDeviceMappings.Run? {
        guard let time = number("time", in: text).flatMap(UInt32.init(exactly:)) else { return nil }
        if text.hasPrefix("<single_mapping ") {
            guard let block = number("origin_block", in: text) else { return nil }
            return .init(begin: block, length: 1, time: time)
        }
        guard let begin = number("origin_begin", in: text), let length = number("length", in: text) else { return nil }
        return .init(begin: begin, length: length, time: time)
    }

    /// The number in `name="..."` of one XML start tag.
    static func number(_ name: String, in tag: Substring) -> UInt64? {
        string(name, in: tag).flatMap { UInt64(String($0)) }
    }

    /// The text of `name="..."` in one XML start tag.
    static func string(_ name: String, in tag: Substring) -> Substring? {
        guard let range = tag.firstRange(of: " \(name)=\"") else { return nil }
        return tag[range.upperBound...].prefix { $0 != "\"" }
    }
}
