import ThinDeviceMapper
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Who holds an attached volume: several readers may share a read-only
/// device (xapi's dom0 attaches, one per datapath, and exports), and the
/// device goes only when the last of them lets go. A holder is a file under
/// `/run/thinsr/<sr>/holders/<volume>/`, written under the SR lock: empty
/// for a named holder (xapi's domain), or the pid and start time of a
/// process holder, which counts only while that process lives.
struct VolumeHolders {
    let names: SRNames
    let volume: UUID
    /// The run directory (the SR's, unless a test gives its own).
    var runDirectory: String? = nil

    var directory: String { names.holdersDirectory(volume, runDirectory: runDirectory) }

    /// Holder names are file names: letters, digits and `._:-`, as xapi's
    /// domains ("5", "u0_<dp>") are.
    static func validate(_ holder: String) throws(ThinError) {
        let allowed = holder.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "._:-".unicodeScalars.contains($0)
        }
        guard !holder.isEmpty, holder.count <= 128, allowed, !holder.hasPrefix("."),
              !holder.hasPrefix(ProcessClaim.holderPrefix) else {
            throw .invalid("holder \"\(holder)\" is not a valid holder name; use up to 128 letters, digits, '.', '_', "
                           + "':' or '-' (xapi passes its domain)")
        }
    }

    /// Stands for an attach made without --holder (a sysadmin's, or from before
    /// holders existed): only a detach without --holder lets it go. Holder
    /// names cannot begin with a dot, so no holder can take it over.
    static let unnamed = ".attached"

    func add(_ holder: String) throws(ThinError) {
        try System.makeDirectories(directory)
        let content = ProcessClaim.pid(ofHolder: holder).map { ProcessClaim.holder($0).holderContent } ?? ""
        try System.writeFile("\(directory)/\(holder)", content)
    }

    func remove(_ holder: String) { System.removeFile("\(directory)/\(holder)") }

    /// The holders that still count: a process holder whose process has
    /// ended (or whose pid now names another process) is removed.
    func live() -> [String] {
        System.directoryEntries(directory).filter { holder in
            guard ProcessClaim.pid(ofHolder: holder) != nil else { return true }
            let claim = ProcessClaim(holderName: holder, content: System.readFile("\(directory)/\(holder)"))
            if claim?.isLive() == true { return true }
            remove(holder)
            return false
        }.sorted()
    }

    func clear() {
        for holder in System.directoryEntries(directory) { remove(holder) }
        System.removeDirectory(directory)
    }
}

extension SRAttachments {
    func holders(of volume: VolumeRecord) -> VolumeHolders { VolumeHolders(names: names, volume: volume.uuid) }

    /// Attaches a volume for `holder` (see `attachVolume`): the device is
    /// shared with the volume's other holders in the same mode, and stays
    /// until the last of them detaches.
    public func attachVolume(_ reference: String, readOnly: Bool, inactive: Bool = false,
                             holder: String) async throws(ThinError) -> (VolumeRecord, path: String) {
        if holder != ProcessClaim.holderName() { try VolumeHolders.validate(holder) }
        try sr.recovered()
        return try await attach(try sr.requireVolume(reference), readOnly: readOnly, inactive: inactive, holder: holder)
    }

    /// Attaches, for `holder`, the volume a caller resolved after recovery.
    func attach(_ volume: VolumeRecord, readOnly: Bool, inactive: Bool = false,
                holder: String) async throws(ThinError) -> (VolumeRecord, path: String) {
        let held = holders(of: volume)
        if try devices.info(volume.uuid) == nil {
            // Holders of a device that no longer exists (a reboot, a forced detach) are stale.
            held.clear()
        } else if held.live().isEmpty {
            // Attached without a holder: that attach keeps counting.
            try held.add(VolumeHolders.unnamed)
        }
        if !readOnly, let pid = held.live().lazy.compactMap(ProcessClaim.pid(ofHolder:)).first {
            // A process holding the volume (an export, a server, an import) is its only writer or must stay a reader.
            let mode = (try? devices.info(volume.uuid))??.readOnly == true ? "reading it" : "writing it"
            let name = System.programName(pid) ?? "a thinsr tool"
            throw ThinError(.volumeInUse, "volume \(volume.key) is held by process \(pid) (\(name), \(mode)); wait for it "
                            + "to end or stop it first", parameters: [volume.key])
        }
        let attached = try await attach(volume, readOnly: readOnly, inactive: inactive)
        try held.add(holder)
        return attached
    }

    /// Lets `holder` go; the device is removed when no other holder is
    /// left. Returns the holders that remain. Detaching for a holder that
    /// does not hold the volume changes nothing else.
    @discardableResult
    public func detachVolume(_ reference: String, holder: String) throws(ThinError) -> [String] {
        if holder != ProcessClaim.holderName() { try VolumeHolders.validate(holder) }
        return try detach(try sr.requireVolume(reference), holder: holder)
    }

    /// Lets `holder` of the volume a caller resolved go (see `detachVolume`).
    @discardableResult
    func detach(_ volume: VolumeRecord, holder: String) throws(ThinError) -> [String] {
        let held = holders(of: volume)
        let before = held.live()
        // A holder that does not hold the volume changes nothing while others do.
        guard before.isEmpty || before.contains(holder) else { return before }
        // The detach of the domain a mirror was for ends it (xapi's Datapath.deactivate after the guest paused).
        try sr.mirrors.endForDetach(of: volume, holder: holder)
        // The holder's own servers end first (each flushes the device).
        stopServers(of: volume, holder: holder)
        held.remove(holder)
        let others = held.live()
        guard others.isEmpty else { return others }
        try deactivate(volume)
        held.clear()
        return []
    }

    /// The holders of an attached volume.
    public func volumeHolders(_ volume: VolumeRecord) -> [String] { holders(of: volume).live() }
}
