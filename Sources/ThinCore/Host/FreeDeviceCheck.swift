import ThinTools
import ThinLVM

/// Checks that devices given to `thinsr-create --device` (or `thinsr-extend
/// --device`) are free to take: refusing is cheap, and wiping someone's disk
/// is not undoable.
struct FreeDeviceCheck {
    let host: Host

    func validate(_ devices: [String]) async throws(ThinError) {
        guard !devices.isEmpty else { throw .invalid("no device given; name at least one with --device") }
        var seen = Set<String>()
        var physicalVolumes: [PhysicalVolumeReport]?
        for device in devices {
            guard LVMNames.isValidDevicePath(device) else {
                throw .invalid("device \"\(device)\" is not a /dev path LVM accepts")
            }
            guard System.exists(device) else { throw .invalid("device \(device) does not exist") }
            guard let number = System.blockDevice(device) else {
                throw .invalid("\(device) is not a block device")
            }
            let majorMinor = "\(number.major):\(number.minor)"
            guard seen.insert(majorMinor).inserted else { throw .invalid("device \(device) is given twice") }
            if Mounts.isMounted(majorMinor: majorMinor) {
                throw ThinError(.deviceInUse, "\(device) is mounted; unmount it or choose another device")
            }
            // A thinsr volume or an LVM LV must never become a PV of a new SR.
            if let dmUUID = System.readFile("/sys/dev/block/\(majorMinor)/dm/uuid") {
                if dmUUID.hasPrefix("THINSR-") {
                    throw ThinError(.deviceInUse, "\(device) is a thinsr volume; give a raw disk or partition")
                }
                if dmUUID.hasPrefix("LVM-") {
                    throw ThinError(.deviceInUse, "\(device) is an LVM logical volume; use --vg to create an SR "
                                    + "in its volume group, or give a raw disk")
                }
            }
            let holders = System.directoryEntries("/sys/dev/block/\(majorMinor)/holders")
            if !holders.isEmpty {
                throw ThinError(.deviceInUse, "\(device) is in use by \(holders.joined(separator: ", ")) "
                                + "(a device-mapper or md device); choose another device")
            }
            if physicalVolumes == nil {
                do { physicalVolumes = try host.lvm.physicalVolumes() } catch {
                    throw .backend("pvs failed", error)
                }
            }
            let pv = physicalVolumes?.first { System.blockDevice($0.device).map { "\($0.major):\($0.minor)" } == majorMinor }
            if let pv, !pv.volumeGroup.isEmpty {
                throw ThinError(.deviceInUse, "\(device) is already in volume group \(pv.volumeGroup); use --vg for "
                                + "an existing VG, or choose another device")
            }
            // A PV label without a VG holds no LVM data (e.g. one an interrupted
            // thinsr-destroy left) and may be reused, but only if nothing else
            // is there: blkid stops at the label unless told to look past it.
            let others = try await signatures(of: device, skippingRAID: pv != nil)
            if !others.isEmpty {
                throw ThinError(.deviceInUse, "\(device) holds a \(others.joined(separator: " and ")) signature; if "
                                + "its data is not needed, erase it with wipefs -a \(device), then try again")
            }
        }
    }

    /// The filesystem, RAID and partition-table types on `device`.
    private func signatures(of device: String, skippingRAID: Bool) async throws(ThinError) -> [String] {
        do { return try await host.programs.signatures(of: device, skippingRAID: skippingRAID) } catch {
            throw .backend("blkid failed", error)
        }
    }
}
