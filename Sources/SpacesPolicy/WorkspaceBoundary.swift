/// The one rule no policy can change: operations stay inside the workspace.
///
/// This is the lexical check the engine applies before an operation reaches the space; the worker repeats it
/// after resolving symlinks inside the space, and the space's mount namespace is the wall behind both.
public enum WorkspaceBoundary {
    public static let root = "/workspace"
    /// The longest path Linux accepts (`PATH_MAX`, terminating NUL included); longer paths are denied, which also
    /// bounds the work of matching globs against them.
    public static let maxPathBytes = 4096

    /// The workspace-relative form of `path` (`.` for the root), or nil when it leaves the workspace.
    /// Accepts relative paths and absolute paths under `/workspace`; resolves `.` and `..` lexically.
    public static func relativePath(_ path: String) -> String? {
        var components: [Substring] = []
        let body: Substring
        if path.hasPrefix("/") {
            guard path == root || path.hasPrefix(root + "/") else { return nil }
            body = path.dropFirst(root.count)
        } else {
            body = path[...]
        }
        for component in body.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".": continue
            case "..":
                guard !components.isEmpty else { return nil }
                components.removeLast()
            default: components.append(component)
            }
        }
        return components.isEmpty ? "." : components.joined(separator: "/")
    }

    /// The decision for a path outside the workspace, with the rule, the reason and how to fix it.
    public static func denial(field: String, path: String) -> Decision {
        Decision(
            verdict: .deny, rule: "workspace.boundary",
            reason: "\(field) '\(path)' leaves the workspace",
            suggestion:
                "use a path inside /workspace (relative paths start there); no policy can allow paths outside it")
    }
}

/// A policy decision with the rule that made it, why, and what would change it.
public struct Decision: Sendable, Equatable {
    public var verdict: Policy.Verdict
    public var rule: String
    public var reason: String
    public var suggestion: String

    public init(verdict: Policy.Verdict, rule: String, reason: String, suggestion: String) {
        self.verdict = verdict
        self.rule = rule
        self.reason = reason
        self.suggestion = suggestion
    }
}
