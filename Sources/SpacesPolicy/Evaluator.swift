public import SpacesProtocol

/// Decides allow / ask / deny for one operation under a policy, and explains the decision. Pure: no I/O.
///
/// Precedence is deny > ask > allow > default. Paths outside the workspace are denied whatever the rules say.
/// Filesystem `read` and `write` are allow-lists: a path they do not cover is denied. A shell string is
/// decided command by command (split at `;`, `&&`, `||`, `|`, `&` and newlines) and the strictest wins.
public enum PolicyEvaluator {
    public static func decide(_ operation: Operation, under policy: Policy) -> Decision {
        for (field, path) in operation.paths where WorkspaceBoundary.relativePath(path) == nil {
            return WorkspaceBoundary.denial(field: field, path: path)
        }
        switch operation.kind {
        case .fileRead, .fileList:
            let path = operation.fields["path"]?.stringValue ?? "."
            return decidePath(path, access: .read, policy: policy)
        case .fileWrite, .fileEdit, .fileDelete:
            return decidePath(operation.fields["path"]?.stringValue ?? "", access: .write, policy: policy)
        case .fileMove:
            let from = decidePath(operation.fields["from"]?.stringValue ?? "", access: .write, policy: policy)
            let to = decidePath(operation.fields["to"]?.stringValue ?? "", access: .write, policy: policy)
            return strictest(from, to)
        case .commandRun:
            var decision = decideCommand(operation, policy: policy)
            for key in ["stdoutTo", "stderrTo"] {
                if let path = operation.fields[key]?.stringValue {
                    decision = strictest(decision, decidePath(path, access: .write, policy: policy))
                }
            }
            return decision
        case .codeRun:
            let program = operation.fields["path"]?.stringValue.map { "bun run \($0)" } ?? "bun run <source>"
            return decideCommandLine(program, policy: policy)
        }
    }

    public enum Access: String, Sendable {
        case read, write
    }

    static func decidePath(_ path: String, access: Access, policy: Policy) -> Decision {
        let relative = WorkspaceBoundary.relativePath(path) ?? path
        let filesystem = policy.filesystem
        if let rule = filesystem.deny.first(where: { Glob($0).matches(relative) }) {
            return Decision(
                verdict: .deny, rule: "filesystem.deny: \(rule)",
                reason: "\(relative) matches filesystem.deny \"\(rule)\"",
                suggestion: "remove \"\(rule)\" from filesystem.deny to allow it")
        }
        if let rule = filesystem.ask.first(where: { Glob($0).matches(relative) }) {
            return Decision(
                verdict: .ask, rule: "filesystem.ask: \(rule)",
                reason: "\(relative) matches filesystem.ask \"\(rule)\"",
                suggestion: "approve it, or move \"\(rule)\" from filesystem.ask to filesystem.\(access.rawValue)")
        }
        let allowList = access == .read ? filesystem.read : filesystem.write
        if let rule = allowList.first(where: { Glob($0).matches(relative) }) {
            return Decision(
                verdict: .allow, rule: "filesystem.\(access.rawValue): \(rule)",
                reason: "\(relative) matches filesystem.\(access.rawValue) \"\(rule)\"", suggestion: "")
        }
        return Decision(
            verdict: .deny, rule: "filesystem.\(access.rawValue)",
            reason: "no filesystem.\(access.rawValue) pattern covers \(relative) (the \(policy.preset) policy)",
            suggestion: "add \"\(relative)\" (or a glob such as \"**\") to filesystem.\(access.rawValue)")
    }

    static func decideCommand(_ operation: Operation, policy: Policy) -> Decision {
        if let argv = operation.fields["argv"]?.arrayValue?.compactMap(\.stringValue) {
            return decideSimpleCommand(argv, policy: policy)
        }
        return decideCommandLine(operation.fields["command"]?.stringValue ?? "", policy: policy)
    }

    /// Splits a shell string into its simple commands and returns the strictest decision among them.
    static func decideCommandLine(_ line: String, policy: Policy) -> Decision {
        var decision: Decision?
        for segment in splitCommands(line) {
            let words = segment.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard !words.isEmpty else { continue }
            let next = decideSimpleCommand(words, policy: policy)
            decision = decision.map { strictest($0, next) } ?? next
        }
        return decision ?? decideSimpleCommand([line], policy: policy)
    }

    static func splitCommands(_ line: String) -> [String] {
        var segments: [String] = []
        var current = ""
        var characters = Array(line)[...]
        while let head = characters.first {
            characters = characters.dropFirst()
            switch head {
            case ";", "|", "&", "\n", "(", ")", "`":
                segments.append(current)
                current = ""
            case "$" where characters.first == "(":
                segments.append(current)
                current = ""
                characters = characters.dropFirst()
            default:
                current.append(head)
            }
        }
        segments.append(current)
        return segments.map { String($0.drop(while: { $0 == " " })) }.filter { !$0.isEmpty }
    }

    /// One simple command: `VAR=x` prefixes and `env`/`exec`/`nohup` wrappers are removed, an absolute
    /// program path is matched by its basename.
    static func decideSimpleCommand(_ argv: [String], policy: Policy) -> Decision {
        var words = argv[...]
        while let first = words.first,
            first.contains("=") && !first.hasPrefix("=") || ["env", "exec", "nohup", "command"].contains(first)
        {
            words = words.dropFirst()
        }
        var normalized = Array(words)
        if let program = normalized.first, program.hasPrefix("/"), let slash = program.lastIndex(of: "/") {
            normalized[0] = String(program[program.index(after: slash)...])
        }
        let text = normalized.joined(separator: " ")
        let commands = policy.commands
        func matching(_ patterns: [String]) -> String? {
            patterns.first { pattern in
                let glob = Glob(pattern.replacingSlashes)
                return glob.matches(text.replacingSlashes) || glob.matches(argv.joined(separator: " ").replacingSlashes)
            }
        }
        if let rule = matching(commands.deny) {
            return Decision(
                verdict: .deny, rule: "commands.deny: \(rule)", reason: "`\(text)` matches commands.deny \"\(rule)\"",
                suggestion: "remove \"\(rule)\" from commands.deny to allow it")
        }
        if let rule = matching(commands.ask) {
            return Decision(
                verdict: .ask, rule: "commands.ask: \(rule)", reason: "`\(text)` matches commands.ask \"\(rule)\"",
                suggestion: "approve it, or add \"\(text)\" to commands.allow")
        }
        if let rule = matching(commands.allow) {
            return Decision(
                verdict: .allow, rule: "commands.allow: \(rule)",
                reason: "`\(text)` matches commands.allow \"\(rule)\"",
                suggestion: "")
        }
        let verdict = commands.defaultVerdict
        return Decision(
            verdict: verdict, rule: "commands.default",
            reason: "no commands rule matches `\(text)`; the default is \(verdict.rawValue)",
            suggestion: verdict == .allow ? "" : "add \"\(normalized.first ?? text) *\" to commands.allow")
    }

    /// The stricter of two decisions: deny over ask over allow.
    public static func strictest(_ first: Decision, _ second: Decision) -> Decision {
        func rank(_ verdict: Policy.Verdict) -> Int {
            switch verdict {
            case .deny: 2
            case .ask: 1
            case .allow: 0
            }
        }
        return rank(second.verdict) > rank(first.verdict) ? second : first
    }
}

extension String {
    /// Command patterns are matched as text, where `/` is an ordinary character.
    var replacingSlashes: String { String(map { $0 == "/" ? "\u{2215}" : $0 }) }
}
