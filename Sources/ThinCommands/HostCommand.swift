public import ArgumentParser
public import ThinCore

/// `thinsr-host`: what this host has of what thinsr uses (see `HostReport`).
public struct HostCheck: ToolCommand {
    public static let access = ToolAccess.lifecycle
    public static let configuration = CommandConfiguration(
        commandName: "thinsr-host",
        abstract: "Report what this host has of what thinsr needs, and what thinsr does without each missing piece.",
        discussion: """
            Probes the kernel's device-mapper targets (loading dm_thin_pool and dm_clone if need be), \
            thin-provisioning-tools' version, the host's liblvm2cmd and LVM master configuration \
            (/etc/lvm/master, as XCP-ng's sm uses for writes, THINSR_LVM_MASTER_DIR to name another), which \
            LVM thinsr drives (liblvm2cmd in process, or the host's lvm command, one process per call, where \
            no liblvm2cmd can be loaded or THINSR_LVM=command asks for it), and the helper programs (qemu-img and qemu-nbd \
            on PATH or in /usr/lib64/qemu-dp/bin, nbdkit and its filters, nbdcopy), then prints one line per \
            piece: present or not, its path or version, and, when missing, what thinsr does instead and the \
            package that provides it. The tools take the same probes when they choose a fallback: offline \
            hydration without dm-clone, no live thin_check before thin-provisioning-tools 0.9, export without \
            nbdkit's filters, serve through qemu-nbd without nbdkit or its filters. Exit status 69 when a piece thinsr cannot work without is missing.
            """)
    public static let examples = [("thinsr-host", "What this host has, and what thinsr does about what it lacks."),
                                  ("thinsr-host --json | jq .features", "The features the probes decide.")]

    @OptionGroup public var output: OutputOptions
    public init() {}

    public func perform(host: Host) async throws(ThinError) -> Int32 {
        let report = await HostReport.probe(host)
        if output.json {
            Console.printJSON(HostReportJSON(report))
        } else {
            Console.table(["PIECE", "PRESENT", "DETAIL"], report.probes.map {
                [$0.name, $0.available ? "yes" : ($0.required ? "NO (required)" : "no"), $0.detail]
            })
            for probe in report.probes where !probe.available {
                Console.out("without \(probe.name): \(probe.without); install \(probe.package)")
            }
        }
        guard let missing = report.missingRequired.first else { return 0 }
        Console.err("thinsr-host: this host lacks \(missing.name) (\(missing.detail)); install \(missing.package)")
        return ErrorCode.notAvailable.exitStatus
    }
}

struct HostReportJSON: Encodable {
    struct Probe: Encodable {
        var name: String
        var available: Bool
        var required: Bool
        var detail: String
        var without: String
        var package: String
    }
    var probes: [Probe]
    var features: [String: Bool]

    init(_ report: HostReport) {
        probes = report.probes.map {
            Probe(name: $0.name, available: $0.available, required: $0.required, detail: $0.detail, without: $0.without,
                  package: $0.package)
        }
        features = report.features
    }
}
