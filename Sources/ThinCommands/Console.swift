import ArgumentParser
import FoundationEssentials
import ThinCore
#if canImport(Glibc)
import Glibc
#endif

/// Standard output and error, written with write(2), and the shapes tools print.
enum Console {
    static func out(_ text: String) {
        var line = text + "\n"
        line.withUTF8 { bytes in _ = write(1, bytes.baseAddress, bytes.count) }
    }

    static func err(_ text: String) {
        var line = text + "\n"
        line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
    }

    /// Writes to stderr as is (a progress bar's carriage returns).
    static func errRaw(_ text: String) {
        var text = text
        text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
    }

    static func report(_ error: ThinError, tool: String, json: Bool) {
        // One line, always: a message with a newline in it (e.g. from a name) is flattened.
        let message = error.message.split(whereSeparator: \.isNewline).joined(separator: " ")
        err("\(tool): \(message.terminalSafe)")
        if json {
            printJSON(ErrorJSON(code: error.code.rawValue, params: [error.code.rawValue] + error.parameters,
                                message: message))
        }
    }

    static func printJSON(_ value: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return err("cannot encode JSON output") }
        out(String(decoding: data, as: UTF8.self))
    }

    /// Prints rows as left-aligned columns under a header; cells are escaped.
    static func table(_ header: [String], _ rows: [[String]]) {
        let rows = rows.map { $0.map(\.terminalSafe) }
        let widths = header.indices.map { column in
            ([header] + rows).map { $0[column].count }.max() ?? 0
        }
        for row in [header] + rows {
            let cells = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index])
            }
            out(cells.joined(separator: "  "))
        }
    }

    /// `key: value` lines with the values aligned and escaped.
    static func fields(_ pairs: [(String, String)]) {
        let width = (pairs.map { $0.0.count }.max() ?? 0) + 1
        for (key, value) in pairs { out("\((key + ":").padding(toLength: width)) \(value.terminalSafe)") }
    }
}

struct ErrorJSON: Encodable {
    var code: String
    var params: [String]
    var message: String
}

extension String {
    /// The text with control characters (C0, DEL, C1) written as escapes, so
    /// a name set through xapi cannot move the cursor or recolour a terminal.
    /// JSON output is exact instead.
    var terminalSafe: String {
        guard unicodeScalars.contains(where: Self.isControl) else { return self }
        var escaped = ""
        for scalar in unicodeScalars {
            switch scalar {
            case "\n": escaped += "\\n"
            case "\t": escaped += "\\t"
            case "\r": escaped += "\\r"
            case _ where Self.isControl(scalar):
                let hex = String(scalar.value, radix: 16)
                escaped += scalar.value < 0x80 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{\(hex)}"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value)
    }

    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}

/// UTC ISO 8601 timestamps for creation times.
func isoTimestamp(_ seconds: Int64) -> String {
    var time = time_t(seconds)
    var parts = tm()
    gmtime_r(&time, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}
