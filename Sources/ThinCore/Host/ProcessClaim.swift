#if canImport(Glibc)
import Glibc
#endif

/// A process's claim on something it is doing (an import, a zeroing, a
/// grow, a hydration) or holding (a volume it keeps attached): the pid with
/// the process's start time, which names one process even after the pid is
/// reused. Written in two forms, both read back here alone:
/// - an owner mark in the catalog, `<boot id> <pid> <start time>`: the
///   catalog outlives a reboot, so the boot is part of the claim;
/// - a holder file `process.<pid>` under the run directory, holding
///   `<pid> <start time>`: tmpfs goes with the boot, so it names none.
struct ProcessClaim: Equatable, Sendable {
    let pid: Int32
    /// Nil in a holder file that records none (it counts while the pid lives).
    let startTime: UInt64?
    /// Nil for a holder, which lives on tmpfs and so never outlives its boot.
    let bootID: String?

    /// This process's claim, as an owner mark records it.
    static var current: ProcessClaim {
        let pid = getpid()
        return ProcessClaim(pid: pid, startTime: System.processStartTime(pid) ?? 0, bootID: System.bootID())
    }

    // MARK: Owner marks

    var ownerMark: String { "\(bootID ?? "") \(pid) \(startTime ?? 0)" }

    init(pid: Int32, startTime: UInt64?, bootID: String?) {
        self.pid = pid
        self.startTime = startTime
        self.bootID = bootID
    }

    init?(ownerMark: String) {
        let fields = ownerMark.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 3, let pid = Int32(fields[1]), let started = UInt64(fields[2]) else { return nil }
        self.init(pid: pid, startTime: started, bootID: String(fields[0]))
    }

    /// The pid of the live process an owner mark names.
    static func liveProcess(ofOwner owner: String?) -> Int32? {
        guard let claim = owner.flatMap(ProcessClaim.init(ownerMark:)), claim.isLive() else { return nil }
        return claim.pid
    }

    /// The pid of the live process, other than this one, an owner mark names.
    static func liveOtherProcess(ofOwner owner: String?) -> Int32? {
        guard let pid = liveProcess(ofOwner: owner), pid != getpid() else { return nil }
        return pid
    }

    // MARK: Holders

    static let holderPrefix = "process."

    /// The holder name of the process `pid`, as it stands for itself.
    static func holderName(_ pid: Int32 = getpid()) -> String { holderPrefix + String(pid) }

    var holderName: String { Self.holderName(pid) }
    /// What a holder file records: the pid and its start time.
    var holderContent: String { "\(pid) \(startTime ?? 0)\n" }

    /// The claim a holder named `name` makes, if it is a process holder;
    /// `content` is its file's (nil when it cannot be read).
    init?(holderName name: String, content: String?) {
        guard let pid = Self.pid(ofHolder: name) else { return nil }
        let recorded = content?.split(whereSeparator: \.isWhitespace).last.flatMap { UInt64($0) }
        self.init(pid: pid, startTime: recorded, bootID: nil)
    }

    /// A process holder's pid; nil for a named holder.
    static func pid(ofHolder name: String) -> Int32? {
        name.hasPrefix(holderPrefix) ? Int32(name.dropFirst(holderPrefix.count)) : nil
    }

    /// The holder `pid` makes now (its start time read from /proc).
    static func holder(_ pid: Int32, startTime: (Int32) -> UInt64? = System.processStartTime) -> ProcessClaim {
        ProcessClaim(pid: pid, startTime: startTime(pid) ?? 0, bootID: nil)
    }

    // MARK: Liveness

    /// Whether the process claimed is still the one running: same boot
    /// (when the claim names one) and the same start time (when recorded).
    func isLive(bootID currentBoot: @autoclosure () -> String = System.bootID(),
                startTime: (Int32) -> UInt64? = System.processStartTime) -> Bool {
        if let bootID, bootID != currentBoot() { return false }
        guard let started = startTime(pid) else { return false }
        return self.startTime == nil || self.startTime == started
    }
}
