/// A path's directory and last component, as text: the one place thinsr
/// splits a path (dirname(1)'s answers: `.` for a bare name, `/` for a
/// file at the root).
public enum PathText {
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func fileName(of path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }
}
