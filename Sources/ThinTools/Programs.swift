#if canImport(Glibc)
import Glibc
#endif

/// Every external program thinsr runs, named here once: where it is looked
/// for and which package provides it, so a host missing one gets a line
/// naming both. XCP-ng's dom0 keeps qemu's tools in qemu-dp's own
/// directory, off PATH; they are found there too.
public struct Program: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    /// Debian's package, then XCP-ng's where it differs.
    public let package: String
    /// Where to look after PATH and the sbin/bin directories.
    let alsoIn: [String]

    init(_ name: String, package: String, alsoIn: [String] = []) {
        self.name = name
        self.package = package
        self.alsoIn = alsoIn
    }

    /// A program named by its path (a scheme script, xe): found there or not at all.
    public static func at(_ path: String) -> Program { Program(path, package: "the package that installed \(path)") }

    public var description: String { name }

    /// Its path, or nil when the host does not have it.
    public var path: String? { ExternalCommand.locate(self) }

    static let qemuDirectories = ["/usr/lib64/qemu-dp/bin"]

    // thin-provisioning-tools (device-mapper-persistent-data on CentOS and XCP-ng)
    public static let thinCheck = Program("thin_check", package: "thin-provisioning-tools (device-mapper-persistent-data)")
    public static let thinRepair = Program("thin_repair", package: "thin-provisioning-tools (device-mapper-persistent-data)")
    public static let thinDump = Program("thin_dump", package: "thin-provisioning-tools (device-mapper-persistent-data)")
    public static let thinList = Program("thin_ls", package: "thin-provisioning-tools (device-mapper-persistent-data)")
    public static let thinMetadataSize = Program("thin_metadata_size",
                                                 package: "thin-provisioning-tools (device-mapper-persistent-data)")
    // e2fsprogs and util-linux
    public static let makeExt4 = Program("mkfs.ext4", package: "e2fsprogs")
    public static let checkExt4 = Program("e2fsck", package: "e2fsprogs")
    public static let resizeExt4 = Program("resize2fs", package: "e2fsprogs")
    public static let blockID = Program("blkid", package: "util-linux")
    public static let loopSetup = Program("losetup", package: "util-linux")
    public static let timeout = Program("timeout", package: "coreutils")
    public static let loadModule = Program("modprobe", package: "kmod")
    // LVM's command, where no liblvm2cmd can be loaded (ThinLVM runs it)
    public static let lvm = Program("lvm", package: "lvm2")
    // qemu's tools and the NBD ones
    public static let qemuImage = Program("qemu-img", package: "qemu-utils (qemu-dp on XCP-ng)", alsoIn: qemuDirectories)
    public static let qemuNBD = Program("qemu-nbd", package: "qemu-utils (qemu-dp on XCP-ng)", alsoIn: qemuDirectories)
    public static let nbdkit = Program("nbdkit", package: "nbdkit")
    public static let nbdcopy = Program("nbdcopy", package: "libnbd-bin")
    // systemd: servers started as transient units
    public static let systemdRun = Program("systemd-run", package: "systemd")
    public static let systemctl = Program("systemctl", package: "systemd")
}
