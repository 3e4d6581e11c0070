public import ThinTools
import ThinLVM

/// What this host has of what thinsr uses, each piece probed (never assumed
/// from the distribution), what thinsr does without it and which package
/// brings it: `thinsr-host` prints it; the fallbacks ask the same probes.
public struct HostReport: Sendable {
    public struct Probe: Sendable {
        public var name: String
        public var available: Bool
        /// A path, a version, or what is missing.
        public var detail: String
        /// Without it: what thinsr does instead, or that it cannot work.
        public var without: String
        public var package: String
        /// thinsr cannot work at all without it.
        public var required: Bool
    }

    public var probes: [Probe] = []
    /// The features the probes decide, by name (`copy_on_read`, `live_metadata_check`, ...).
    public var features: [String: Bool] = [:]
    public var missingRequired: [Probe] { probes.filter { $0.required && !$0.available } }

    public static func probe(_ host: Host) async -> HostReport {
        var report = HostReport()
        await report.probeKernel(host)
        await report.probeThinTools(host)
        report.probeLVM()
        report.probePrograms()
        await report.probeNBD()
        return report
    }

    mutating func add(_ name: String, _ available: Bool, _ detail: String, without: String, package: String,
                      required: Bool = false) {
        probes.append(Probe(name: name, available: available, detail: detail, without: without, package: package,
                            required: required))
    }

    private mutating func probeKernel(_ host: Host) async {
        let thin = await KernelTarget.thinPool.isAvailable(host)
        add("dm-thin (thin-pool target)", thin, thin ? "loaded" : "not in this kernel (module dm_thin_pool)",
            without: "no SR can be attached", package: "the kernel (dm_thin_pool module)", required: true)
        let clone = await KernelTarget.clone.isAvailable(host)
        add("dm-clone (clone target)", clone, clone ? "loaded" : "not in this kernel (Linux 5.4 or later, module dm_clone)",
            without: "thinvdi-hydrate copies detached volumes offline; an attached volume's hydration and copy-on-read "
                + "are refused, and the datapath plugin starts no copier",
            package: "the kernel (dm_clone module, Linux 5.4 or later)")
        features["hydrate_attached"] = clone
        features["copy_on_read"] = clone
    }

    private mutating func probeThinTools(_ host: Host) async {
        let version = await host.programs.thinToolsVersion()
        let present = Program.thinCheck.path != nil
        let live = version.map { $0 >= ProgramProbes.liveCheckVersion } ?? false
        add("thin-provisioning-tools", present, version.map { "version \($0)" } ?? "thin_check not found",
            without: "no SR can be created, attached or checked", package: Program.thinCheck.package, required: true)
        add("thin_check --metadata-snap (0.9 or later)", live,
            version.map { live ? "version \($0)" : "version \($0) is older than 0.9" } ?? "thin_check not found",
            without: "thinsr-check of an attached SR says \"live metadata not checked\"; a detached SR is checked in full",
            package: Program.thinCheck.package)
        features["live_metadata_check"] = live
    }

    private mutating func probeLVM() {
        let library = LVM.libraryName
        add("liblvm2cmd", library != nil, library ?? "no liblvm2cmd.so.2.03 or .so.2.02 can be loaded",
            without: "thinsr runs the lvm command instead, one process per LVM call",
            package: "lvm2 (lvm2-libs on XCP-ng)")
        // Which one thinsr uses (THINSR_LVM=command picks the command where the library loads).
        let backend = LVM.hostBackend
        add("LVM", backend != nil, backend.map { "\($0)" } ?? "neither liblvm2cmd nor the lvm command found",
            without: "no SR can be created, attached or listed", package: "lvm2 (lvm2-libs on XCP-ng)", required: true)
        let master = LVMConfiguration.masterDirectory
        // Informational: a host without a master configuration writes with its default one.
        add("LVM configuration", true, master.map { "master: writes use \($0)" } ?? "the default (no /etc/lvm/master)",
            without: "", package: "lvm2")
    }

    private mutating func probePrograms() {
        let required: [(Program, String)] = [
            (.makeExt4, "no SR can be created"), (.checkExt4, "no SR can be attached"),
            (.resizeExt4, "thinsr-extend cannot grow the catalog"), (.blockID, "no SR can be created"),
            (.loadModule, "kernel modules are not loaded on demand"),
        ]
        for (program, without) in required {
            let path = program.path
            add(program.name, path != nil, path ?? "not found", without: without, package: program.package,
                required: program != .resizeExt4 && program != .loadModule)
        }
        for program in [Program.qemuImage, Program.qemuNBD] {
            let path = program.path
            add(program.name, path != nil, path ?? "not found (also looked in /usr/lib64/qemu-dp/bin)",
                without: program == .qemuImage ? "images other than raw cannot be imported, exported or templated"
                    : "thinvdi-serve cannot fall back from nbdkit, nor templates open qcow2 or vmdk images",
                package: program.package)
        }
        let losetup = Program.loopSetup.path
        add(Program.loopSetup.name, losetup != nil, losetup ?? "not found", without: "file:// templates cannot be opened",
            package: Program.loopSetup.package)
    }

    private mutating func probeNBD() async {
        let nbdkit = await ProgramProbes.nbdkit()
        let filters = nbdkit?.filters ?? []
        let hasFilters = filters.count == ProgramProbes.nbdkitFilters.count
        add("nbdkit", nbdkit != nil, nbdkit.map { "version \($0.version.map { "\($0)" } ?? "?")" } ?? "not found",
            without: "thinvdi-serve uses qemu-nbd", package: Program.nbdkit.package)
        add("nbdkit filters (extentlist, limit)", hasFilters,
            nbdkit == nil ? "no nbdkit" : (hasFilters ? "present" : "missing: " + ProgramProbes.nbdkitFilters
                .filter { !filters.contains($0) }.joined(separator: ", ")),
            without: "thinvdi-export writes sparse raw output itself; thinvdi-serve uses qemu-nbd",
            package: "nbdkit (its filters; XCP-ng's nbdkit package has none)")
        let nbdcopy = Program.nbdcopy.path
        add("nbdcopy", nbdcopy != nil, nbdcopy ?? "not found",
            without: "thinvdi-export writes the pool's extents itself", package: Program.nbdcopy.package)
        features["nbdkit_export"] = hasFilters
        features["nbdcopy"] = nbdcopy != nil
    }
}
