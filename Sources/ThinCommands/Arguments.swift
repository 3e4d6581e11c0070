public import ArgumentParser
import FoundationEssentials
public import ThinCore

/// The SR a tool works on: its uuid or unique name.
public struct SRArgument: ParsableArguments {
    @Argument(help: "The SR's uuid or unique name.", completion: Complete.srs)
    public var sr: String

    public init() {}
}

/// The volume a tool works on, in its SR.
public struct VolumeArgument: ParsableArguments {
    @OptionGroup public var target: SRArgument
    @Argument(help: "The volume's key or uuid.", completion: Complete.volumes)
    public var vdi: String

    public init() {}
}

/// A byte count as users type it (see `ByteSize`); the parser refuses a
/// malformed one with the reason, in one line.
public struct ByteCount: ExpressibleByArgument, Sendable {
    public var bytes: UInt64

    public init?(argument: String) { try? self.init(parsing: argument) }

    init(parsing text: String, what: String = "size") throws(ThinError) {
        bytes = try ByteSize.parse(text, what: what)
    }

    /// The parser's transform for an option named `what` (e.g. "block size").
    static func parser(_ what: String) -> @Sendable (String) throws -> ByteCount {
        { text in try ByteCount(parsing: text, what: what) }
    }
}

/// `SIZE` (grow to) or `+SIZE` (grow by).
extension SRExtendRequest.Size {
    static func parse(_ text: String) throws -> SRExtendRequest.Size {
        if text.hasPrefix("+") { return .by(try ByteSize.parse(String(text.dropFirst()), what: "size")) }
        return .to(try ByteSize.parse(text, what: "size"))
    }
}

/// A uuid as users type it; the parser refuses anything else.
struct UUIDArgument {
    static func parse(_ text: String) throws -> UUID {
        guard let uuid = UUID(uuidString: text) else {
            throw ThinError(.invalidArgument, "\"\(text)\" is not a uuid (expected e.g. 6f1c1a52-3b1e-4c8e-9d0f-2a7b5c4d3e21)")
        }
        return uuid
    }
}

extension OnFullPolicy: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
}

/// `KEY=VALUE` (the value may contain `=`).
struct KeyValue: ExpressibleByArgument {
    var key: String
    var value: String

    init?(argument: String) {
        guard let equals = argument.firstIndex(of: "=") else { return nil }
        key = String(argument[..<equals])
        value = String(argument[argument.index(after: equals)...])
    }

    static func parse(_ text: String) throws -> KeyValue {
        guard let pair = KeyValue(argument: text) else { throw ThinError(.invalidArgument, "\"\(text)\" is not KEY=VALUE") }
        return pair
    }
}

/// `--name` and `--description` of the tools that relabel an SR or a
/// volume (thinsr-set, thinvdi-set), declared once.
struct LabelChanges: ParsableArguments {
    @Option(help: "A new name label.") var name: String?
    @Option(help: "A new description.") var description: String?
}
