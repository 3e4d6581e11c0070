import ThinTools
/// Stable error codes (SMAPIv3 names where SMAPIv3 has one) and the exit
/// statuses the tools document for them.
public enum ErrorCode: String, Sendable, Codable, CaseIterable {
    case invalidArgument = "Invalid_argument"
    case srDoesNotExist = "SR_does_not_exist"
    case volumeDoesNotExist = "Volume_does_not_exist"
    case srNotAttached = "Sr_not_attached"
    case srInUse = "SR_in_use"
    case volumeInUse = "Volume_in_use"
    /// The volume is not attached or active for the holder that asks (xapi's domain).
    case volumeNotActive = "Volume_not_active"
    case deviceInUse = "Device_in_use"
    case activatedOnAnotherHost = "Activated_on_another_host"
    case noSpace = "No_space"
    case metadataCheckFailed = "Metadata_check_failed"
    case catalogInconsistent = "Catalog_inconsistent"
    case permissionDenied = "Permission_denied"
    case backendFailure = "Backend_failure"
    case cancelled = "Cancelled"
    case volumeIsTemplate = "VDI_IS_TEMPLATE"
    case notAvailable = "Not_available"

    /// Exit statuses, documented in every man page's EXIT STATUS section.
    public var exitStatus: Int32 {
        switch self {
        case .backendFailure: return 1
        case .srDoesNotExist, .volumeDoesNotExist: return 2
        case .srNotAttached, .srInUse, .volumeInUse, .volumeNotActive, .deviceInUse, .activatedOnAnotherHost: return 3
        case .noSpace: return 4
        case .volumeIsTemplate: return 7
        case .notAvailable: return 69
        case .metadataCheckFailed, .catalogInconsistent: return 5
        case .invalidArgument: return 64
        case .permissionDenied: return 77
        case .cancelled: return 130
        }
    }

    public var meaning: String {
        switch self {
        case .backendFailure: return "an LVM, device-mapper or tool operation failed"
        case .srDoesNotExist, .volumeDoesNotExist: return "the named SR or volume does not exist"
        case .srNotAttached, .srInUse, .volumeInUse, .volumeNotActive, .deviceInUse, .activatedOnAnotherHost:
            return "the SR, volume or device is in a state that forbids the operation (attached, detached, in use, "
                + "or owned by another host)"
        case .noSpace: return "not enough space"
        case .volumeIsTemplate:
            return "the volume is a read-only template: only stat, ls, tree, clone, snapshot and forget apply"
        case .metadataCheckFailed, .catalogInconsistent:
            return "the pool metadata or the catalog needs checking or repair"
        case .invalidArgument: return "invalid arguments or options"
        case .permissionDenied: return "the tool must run as root"
        case .notAvailable:
            return "this host lacks a program, kernel module or feature the operation needs (the message names it "
                + "and the package that provides it)"
        case .cancelled: return "cancelled by SIGINT or SIGTERM; what the operation had begun was undone"
        }
    }
}

/// The one error type the core throws: a code, a one-line message saying what
/// is wrong and what to do, and SMAPIv3-style parameters.
public struct ThinError: Error, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    public var parameters: [String]

    public init(_ code: ErrorCode, _ message: String, parameters: [String] = []) {
        self.code = code
        self.message = message
        self.parameters = parameters
    }

    public var description: String { message }

    static func invalid(_ message: String) -> ThinError { ThinError(.invalidArgument, message) }

    static func backend(_ what: String, _ error: any Error) -> ThinError {
        if let missing = error as? ExternalCommandError, missing.programMissing {
            return ThinError(.notAvailable, "\(what): \(missing.standardError)")
        }
        return ThinError(.backendFailure, "\(what): \(error)")
    }
}
