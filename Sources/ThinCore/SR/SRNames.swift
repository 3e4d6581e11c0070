public import FoundationEssentials
import ThinDeviceMapper

/// The four LVs of an SR, by the role tag each carries.
public enum LVRole: String, CaseIterable, Sendable {
    case catalog
    /// The catalog's second copy (its own LV and filesystem), kept current
    /// at every commit, from which `thinsr-check --repair` rebuilds a lost catalog.
    case catalogCopy = "catalogcopy"
    case metadata = "meta"
    case spare
    case data

    /// The LVs an SR cannot work without (SRs made before the copy lack it).
    static let required: [LVRole] = [.catalog, .metadata, .spare, .data]

    static let tagPrefix = "thinsr.role="
    var tag: String { Self.tagPrefix + rawValue }
}

/// A volume's dm device: `thinsr_<sr hex>_v<volume hex>`, with a dm uuid
/// naming both; its node is the name's `DmName.path`.
struct VolumeDevice: Equatable {
    let name: String
    let dmUUID: DmUuid
    var path: String { DmName(name).path }
}

/// The names of everything one SR owns. dm names contain no `-`, so they can
/// never be LVM's `<vg>-<lv>` names.
public struct SRNames: Sendable, Equatable {
    public let uuid: UUID
    var hex: String { Self.hex(uuid) }

    public init(uuid: UUID) { self.uuid = uuid }

    public var uuidString: String { uuid.lowercased }
    var ownVolumeGroup: String { "thinsr_\(hex)" }
    func lv(_ role: LVRole) -> String { "thinsr_\(hex)_\(role.rawValue)" }
    /// The LV's node while it is active, in the SR's volume group.
    func mapperPath(_ role: LVRole, group: String) -> String { Paths.mapperPath(group: group, volume: lv(role)) }
    /// A preallocated raw volume's LV, beside the pool.
    func rawLV(_ volume: UUID) -> String { "thinsr_\(hex)_r\(Self.hex(volume))" }
    /// The role tag raw volume LVs carry (not an `LVRole`: an SR has any number).
    static let rawRoleTag = LVRole.tagPrefix + "raw"
    /// The name the metadata LV has for a moment while it swaps with the spare.
    var swapLV: String { "thinsr_\(hex)_swap" }

    var poolDevice: String { "thinsr_\(hex)_pool" }
    var poolDeviceUUID: DmUuid { DmUuid("THINSR-\(uuidString)-pool") }
    var volumeDevicePrefix: String { "thinsr_\(hex)_v" }
    /// A volume device taken away from the process holding it (`thinsr-detach
    /// --force --force`), waiting for that process to close it.
    var takenDevicePrefix: String { "thinsr_\(hex)_x" }
    func volumeDevice(_ volume: UUID) -> VolumeDevice {
        VolumeDevice(name: volumeDevicePrefix + Self.hex(volume),
                     dmUUID: DmUuid("THINSR-\(uuidString)-\(volume.lowercased)"))
    }

    /// A template's image as a read-only dm device (`linear` over the block
    /// device its scheme script, loop or qemu-nbd gave): every volume reading
    /// that template names it as its thin device's external origin.
    func originDevice(_ template: UUID) -> VolumeDevice {
        VolumeDevice(name: "thinsr_\(hex)_o\(Self.hex(template))",
                     dmUUID: DmUuid("THINSR-\(uuidString)-o-\(template.lowercased)"))
    }
    /// What this host did to bring each template's image up, to undo it.
    var originStateDirectory: String { "\(runDirectory)/origins" }
    /// One empty file per volume whose hydration is a copy-on-read.
    var copyOnReadDirectory: String { "\(runDirectory)/copy-on-read" }

    /// The devices of a volume's hydration: `clone` (dm-clone) over
    /// `metadata` (its bitmap, a hidden thin device), `destination` and
    /// `source` (both the volume's own thin device with its origin).
    enum HydrationPart: String, CaseIterable { case clone = "c", metadata = "m", destination = "d", source = "s" }
    func hydrationDevice(_ volume: UUID, _ part: HydrationPart) -> VolumeDevice {
        VolumeDevice(name: "thinsr_\(hex)_h\(part.rawValue)\(Self.hex(volume))",
                     dmUUID: DmUuid("THINSR-\(uuidString)-h\(part.rawValue)-\(volume.lowercased)"))
    }

    /// The device a mirrored volume's own table moves to while the volume's
    /// device is a `mirror` over it and the remote (`thinvdi-mirror`).
    func mirrorSourceDevice(_ volume: UUID) -> VolumeDevice {
        VolumeDevice(name: "thinsr_\(hex)_m\(Self.hex(volume))",
                     dmUUID: DmUuid("THINSR-\(uuidString)-m-\(volume.lowercased)"))
    }
    /// One record per mirror (`MirrorRecord`), and its dirty-region log file.
    var mirrorsDirectory: String { "\(runDirectory)/mirrors" }

    /// A dm device this SR owns, as its name says: what reconciliation and
    /// check walk, so that no kind of device the SR makes is left out.
    enum OwnedDevice: Hashable {
        /// A volume's device (`_v`).
        case volume(UUID)
        /// One device of a volume's hydration stack (`_h<part>`).
        case hydration(UUID, HydrationPart)
        /// A template's origin device (`_o`).
        case origin(UUID)
        /// A volume device taken from the process holding it (`_x`), going away.
        case taken(UUID)
        /// The source leg of a volume's mirror (`_m`).
        case mirrorSource(UUID)
    }

    /// What `name` is among this SR's devices; nil for anything else (LVM's
    /// `<vg>-<lv>` devices, the pool, another SR's devices).
    func owned(_ name: DmName) -> OwnedDevice? {
        let prefix = "thinsr_\(hex)_"
        guard name.rawValue.hasPrefix(prefix) else { return nil }
        var rest = Substring(name.rawValue.dropFirst(prefix.count))
        guard let kind = rest.popFirst() else { return nil }
        var part: HydrationPart?
        if kind == "h" {
            guard let code = rest.popFirst(), let known = HydrationPart(rawValue: String(code)) else { return nil }
            part = known
        }
        guard let uuid = Self.uuid(fromHex: String(rest)) else { return nil }
        switch (kind, part) {
        case ("v", nil): return .volume(uuid)
        case ("o", nil): return .origin(uuid)
        case ("x", nil): return .taken(uuid)
        case ("m", nil): return .mirrorSource(uuid)
        case ("h", let part?): return .hydration(uuid, part)
        default: return nil
        }
    }

    /// The volume whose device `name` is, if it is one of this SR's volume devices.
    func volume(ofDevice name: String) -> UUID? {
        guard let typed = DmName(validating: name), case .volume(let uuid)? = owned(typed) else { return nil }
        return uuid
    }

    /// The uuid whose `hex` form `text` is.
    static func uuid(fromHex text: String) -> UUID? {
        let hex = Array(text)
        guard hex.count == 32 else { return nil }
        return UUID(uuidString: [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(hex[$0]) }.joined(separator: "-"))
    }

    var runDirectory: String { "\(Paths.runRoot)/\(uuidString)" }
    var catalogMount: String { "\(runDirectory)/catalog" }
    var catalogDatabase: String { "\(catalogMount)/catalog.db" }
    /// The catalog copy's filesystem, mounted while the SR is attached.
    var catalogCopyMount: String { "\(runDirectory)/catalog-copy" }
    var catalogCopyDatabase: String { "\(catalogCopyMount)/catalog.db" }
    /// Where `thinsr-check --repair` mounts a catalog it rebuilds.
    var rebuildMount: String { "\(runDirectory)/rebuild" }
    /// Where a detached SR's catalog is mounted read-only for a moment.
    var inspectMount: String { "\(runDirectory)/inspect" }
    /// The SR lock: held by every operation that changes the SR (writers and
    /// the lifecycle operations), for its whole run.
    var lockFile: String { "\(Paths.lockRoot)/\(uuidString)" }
    /// Held shared by readers while they have the catalog open, and exclusive
    /// by whoever unmounts the catalog: an unmount waits for readers instead
    /// of failing with EBUSY, and a reader never finds the catalog half gone.
    var readersLockFile: String { "\(Paths.lockRoot)/\(uuidString).readers" }
    /// Serializes thinsr's use of the pool's one metadata snapshot.
    var metadataSnapshotLockFile: String { "\(Paths.lockRoot)/\(uuidString).metadata-snapshot" }
    /// Present while an operation has a volume device suspended or its table
    /// half changed; on tmpfs, so it goes with the devices at reboot.
    var devicesChangingMarker: String { "\(runDirectory)/devices-changing" }
    /// Present while `thinsr-extend` has grown LVs the pool's table does not
    /// span yet; the next operation reloads the pool.
    /// The level the pool monitor last reported for this SR (tmpfs: a reboot starts over).
    var monitorLevelFile: String { "\(runDirectory)/monitor-level" }
    var poolGrowingMarker: String { "\(runDirectory)/pool-growing" }
    /// One directory per attached volume, one file per holder (`VolumeHolders`).
    var holdersDirectory: String { "\(runDirectory)/holders" }
    func holdersDirectory(_ volume: UUID, runDirectory: String? = nil) -> String {
        "\(runDirectory ?? self.runDirectory)/holders/\(volume.lowercased)"
    }
    /// Scratch files of imports and exports in progress.
    var transfersDirectory: String { "\(runDirectory)/transfers" }
    /// Where a detached SR's catalog files are copied to be read (SQLite
    /// cannot replay a WAL on a read-only mount).
    var inspectCopyDirectory: String { "\(runDirectory)/inspect-copy" }
    var deviceDirectory: String { "\(Paths.deviceRoot)/\(uuidString)" }
    func devicePath(key: String) -> String { "\(deviceDirectory)/\(key)" }

    // LVM tags: every LV carries the SR and its role; the catalog LV also
    // carries the mode and the name, so `thinsr-ls` can show detached SRs.
    static let tagPrefix = "thinsr.sr="
    var srTag: String { Self.tagPrefix + uuidString }
    static let modeTagPrefix = "thinsr.mode="
    static let nameTagPrefix = "thinsr.name="
    /// On the catalog LV from its creation until `thinsr-create` finishes.
    static let incompleteTag = "thinsr.incomplete"

    /// The hex form of an SR or volume uuid, used in LVM and dm names.
    static func hex(_ uuid: UUID) -> String { String(uuid.lowercased.filter { $0 != "-" }) }
}

/// Hex encoding for text kept in LVM tags (which allow only a few characters).
enum TagText {
    static let maximumBytes = 400

    static func encode(_ text: String) -> String {
        let digits = Array("0123456789abcdef")
        return String(text.utf8.prefix(maximumBytes).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }

    static func decode(_ hex: String) -> String? {
        var bytes: [UInt8] = []
        var iterator = hex.makeIterator()
        while let high = iterator.next() {
            guard let low = iterator.next(), let h = high.hexDigitValue, let l = low.hexDigitValue else { return nil }
            bytes.append(UInt8(h << 4 | l))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
