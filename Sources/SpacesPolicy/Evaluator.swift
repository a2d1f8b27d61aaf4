public import SpacesProtocol

/// Decides allow / ask / deny for one operation under a policy, and explains the decision. Pure: no I/O.
///
/// Precedence is deny > ask > allow > default in every section. Paths outside the workspace are denied whatever
/// the rules say (rule `workspace.boundary`). Filesystem `read` and `write` are allow-lists: a path they do not
/// cover is denied. A recursive `file.delete` is decided for every path that could be below it too (a
/// `filesystem.deny` of `secrets/**` denies deleting `secrets`; so does `**/.env`, as the tree may hold one), and
/// a `file.move` for the paths below it that a rule covers on one side of the move and not the other (moving
/// `secrets` to `public` is denied; moving `a` to `b` under `**/.env` is not: a moved `.env` stays covered).
///
/// A command is analysed into the programs it runs (``ShellAnalysis``), each is decided against the `commands`
/// rules (``CommandPattern``), and the strictest decision wins. Three further rules keep what the text hides from
/// being more permissive than what it shows:
/// - `commands.dynamic`: a program whose name is computed when the shell runs (`$cmd x`), or a command string
///   for `sh -c`/`eval` that holds expansions, is decided no more permissively than `commands.default`, and asks
///   when the policy has any `commands.deny` or `commands.ask` rule it could be hiding from.
/// - `commands.unparsed`: a line the shell would refuse (an unterminated quote, `$(`, backquote, …) is decided
///   as the strictest of the commands found in it and never more permissively than `commands.default`.
/// - `commands.unexamined`: a line nested deeper than ``ShellAnalysis/maxNestingDepth`` or too large to examine is
///   decided as `commands.dynamic` is.
///
/// Every decision that is not `allow` carries a suggestion naming the smallest policy change that would allow it
/// (`remove "curl *" from commands.deny`, `add "curl *" to commands.allow`), or the approval that would.
public enum PolicyEvaluator {
    public static func decide(_ operation: Operation, under policy: Policy) -> Decision {
        for (field, path) in operation.paths {
            if WorkspaceBoundary.relativePath(path) == nil { return WorkspaceBoundary.denial(field: field, path: path) }
            if path.utf8.count > WorkspaceBoundary.maxPathBytes {
                return Decision(
                    verdict: .deny, rule: "workspace.boundary",
                    reason: "\(field) is \(path.utf8.count) bytes long; Linux accepts paths of at most"
                        + " \(WorkspaceBoundary.maxPathBytes)",
                    suggestion: "use a shorter path; no policy can allow a path Linux refuses")
            }
        }
        func path(_ key: String, default fallback: String = "") -> String {
            operation.fields[key]?.stringValue ?? fallback
        }
        switch operation.kind {
        case .fileRead, .fileList:
            return decidePath(path("path", default: "."), access: .read, policy: policy).decision
        case .fileWrite, .fileEdit:
            return decidePath(path("path"), access: .write, policy: policy).decision
        case .fileDelete:
            let recursive = operation.fields["recursive"] == .bool(true)
            return decidePath(path("path"), access: .write, policy: policy, contents: recursive ? .deleted : .none)
                .decision
        case .fileMove:
            let from = decidePath(
                path("from"), access: .write, policy: policy, contents: .moved(counterpart: path("to")))
            let to = decidePath(path("to"), access: .write, policy: policy, contents: .moved(counterpart: path("from")))
            return Ruling.combine([from, to]).decision
        case .commandRun:
            let analysis: ShellAnalysis
            let stdin = operation.fields["stdin"]?.stringValue
            if let argv = operation.fields["argv"]?.arrayValue?.compactMap(\.stringValue) {
                analysis = ShellAnalysis(argv: argv, stdin: stdin)
            } else {
                analysis = ShellAnalysis(shell: path("command"), stdin: stdin)
            }
            var rulings = commandRulings(analysis, policy: policy)
            for key in ["stdoutTo", "stderrTo"] {
                if let target = operation.fields[key]?.stringValue {
                    rulings.append(decidePath(target, access: .write, policy: policy))
                }
            }
            return Ruling.combine(rulings).decision
        case .codeRun:
            let arguments = operation.fields["args"]?.arrayValue?.compactMap(\.stringValue) ?? []
            guard let program = operation.fields["path"]?.stringValue else {
                let argv = ["bun", "run", "<source>"] + arguments
                return Ruling.combine(commandRulings(ShellAnalysis(argv: argv), policy: policy)).decision
            }
            var rulings = commandRulings(ShellAnalysis(argv: ["bun", "run", program] + arguments), policy: policy)
            rulings.append(decidePath(program, access: .read, policy: policy))
            return Ruling.combine(rulings).decision
        }
    }

    /// Decides a shell command line (`command.run`'s `command`), given `stdin` as its input.
    public static func decideShellCommand(_ line: String, stdin: String? = nil, under policy: Policy) -> Decision {
        Ruling.combine(commandRulings(ShellAnalysis(shell: line, stdin: stdin), policy: policy)).decision
    }

    /// Decides an argv run without a shell (`command.run`'s `argv`), given `stdin` as its input.
    public static func decideArgv(_ argv: [String], stdin: String? = nil, under policy: Policy) -> Decision {
        Ruling.combine(commandRulings(ShellAnalysis(argv: argv, stdin: stdin), policy: policy)).decision
    }

    public enum Access: String, Sendable {
        case read, write
    }

    /// The stricter of two decisions: deny over ask over allow; the first on a tie.
    public static func strictest(_ first: Decision, _ second: Decision) -> Decision {
        second.verdict.strictness > first.verdict.strictness ? second : first
    }

    // MARK: Filesystem

    /// What else an operation on a path affects: everything below it.
    enum Contents {
        /// Only the path itself (reads, writes, a non-recursive delete).
        case none
        /// A recursive delete: every path below it.
        case deleted
        /// A move: the paths below it leave for (or, at the destination, arrive from) `counterpart`. A rule that
        /// covers them on one side and not on the other applies; one that covers both sides alike (`**/.env`)
        /// still covers them after the move and does not.
        case moved(counterpart: String)
    }

    static func decidePath(_ path: String, access: Access, policy: Policy, contents: Contents = .none) -> Ruling {
        let relative = WorkspaceBoundary.relativePath(path) ?? path
        let filesystem = policy.filesystem
        func covering(_ patterns: [String]) -> [String] {
            patterns.filter { pattern in
                let glob = Glob(pattern)
                if glob.matches(relative) { return true }
                switch contents {
                case .none: return false
                case .deleted: return glob.matchesWithin(relative)
                case .moved(let counterpart): return glob.matchesWithin(relative) && !glob.matchesWithin(counterpart)
                }
            }
        }
        let list = "filesystem.\(access.rawValue)"
        let denies = covering(filesystem.deny)
        let asks = covering(filesystem.ask)
        let allowList = access == .read ? filesystem.read : filesystem.write
        let allows = allowList.filter { Glob($0).matches(relative) }
        let allowChange = allows.isEmpty ? ["add \"\(Glob.escape(relative))\" to \(list)"] : []
        func relation(_ rule: String) -> String {
            Glob(rule).matches(relative) ? "matches" : "holds paths that match"
        }
        if let rule = denies.first {
            return Ruling(
                verdict: .deny, rule: "filesystem.deny: \(rule)",
                reason: "\(relative) \(relation(rule)) filesystem.deny \"\(rule)\"",
                changes: denies.map { "remove \"\($0)\" from filesystem.deny" }
                    + asks.map { "remove \"\($0)\" from filesystem.ask" } + allowChange)
        }
        if let rule = asks.first {
            return Ruling(
                verdict: .ask, rule: "filesystem.ask: \(rule)",
                reason: "\(relative) \(relation(rule)) filesystem.ask \"\(rule)\"",
                changes: asks.map { "remove \"\($0)\" from filesystem.ask" } + allowChange)
        }
        if let rule = allows.first {
            return Ruling(
                verdict: .allow, rule: "\(list): \(rule)", reason: "\(relative) matches \(list) \"\(rule)\"",
                changes: [])
        }
        return Ruling(
            verdict: .deny, rule: list,
            reason: "no \(list) pattern covers \(relative) (the \(policy.preset) policy)", changes: allowChange)
    }

    // MARK: Commands

    static func commandRulings(_ analysis: ShellAnalysis, policy: Policy) -> [Ruling] {
        var rulings = analysis.commands.map { decideProgram($0, policy: policy) }
        let floor = dynamicFloor(policy)
        if let reason = analysis.unexamined.first {
            rulings.append(
                floorRuling(
                    floor, rule: "commands.unexamined", what: "the command line was not examined to the end: \(reason)",
                    fix: "split the command into simpler commands", policy: policy))
        }
        if !analysis.syntaxProblems.isEmpty {
            let problems = analysis.syntaxProblems.joined(separator: "; ")
            let verdict = policy.commands.defaultVerdict
            rulings.append(
                Ruling(
                    verdict: verdict, rule: "commands.unparsed",
                    reason: "the shell would refuse the command line (\(problems)); it is decided as the commands"
                        + " found in it and no more permissively than commands.default (\(verdict.rawValue))",
                    changes: verdict == .allow ? [] : ["fix the shell syntax (\(problems))"]))
        }
        if rulings.isEmpty {
            let verdict = policy.commands.defaultVerdict
            rulings.append(
                Ruling(
                    verdict: verdict, rule: "commands.default",
                    reason: "the command line runs no program; the default is \(verdict.rawValue)",
                    changes: verdict == .allow ? [] : ["set commands.default to \"allow\""]))
        }
        return rulings
    }

    /// What a command the text does not show is decided as: `commands.default`, and `ask` when that is `allow`
    /// but the policy has `deny` or `ask` rules the command could be hiding from.
    static func dynamicFloor(_ policy: Policy) -> Policy.Verdict {
        let commands = policy.commands
        if commands.defaultVerdict == .allow && (!commands.deny.isEmpty || !commands.ask.isEmpty) { return .ask }
        return commands.defaultVerdict
    }

    private static func floorRuling(
        _ verdict: Policy.Verdict, rule: String, what: String, fix: String, policy: Policy
    ) -> Ruling {
        let because =
            verdict == policy.commands.defaultVerdict
            ? "commands.default is \(verdict.rawValue)"
            : "the policy has commands rules it could be hiding from"
        return Ruling(
            verdict: verdict, rule: rule, reason: "\(what); it is decided as \(verdict.rawValue) because \(because)",
            changes: verdict == .allow
                ? [] : [verdict == .ask ? fix : "\(fix), and add a pattern for it to commands.allow"])
    }

    /// One program: its rules by precedence; a program hidden from the text no more permissively than the floor.
    static func decideProgram(_ command: ShellAnalysis.Command, policy: Policy) -> Ruling {
        let text = command.argv.joined(separator: " ")
        let commands = policy.commands
        func matching(_ patterns: [String]) -> [String] {
            patterns.filter { CommandPattern($0).matches(commandText: text) }
        }
        let denies = matching(commands.deny)
        let asks = matching(commands.ask)
        let allows = matching(commands.allow)
        let program = command.argv.first ?? text
        let allowChange =
            allows.isEmpty && commands.defaultVerdict != .allow ? ["add \"\(program) *\" to commands.allow"] : []
        let ruling: Ruling
        if let rule = denies.first {
            ruling = Ruling(
                verdict: .deny, rule: "commands.deny: \(rule)", reason: "`\(text)` matches commands.deny \"\(rule)\"",
                changes: denies.map { "remove \"\($0)\" from commands.deny" }
                    + asks.map { "remove \"\($0)\" from commands.ask" } + allowChange)
        } else if let rule = asks.first {
            ruling = Ruling(
                verdict: .ask, rule: "commands.ask: \(rule)", reason: "`\(text)` matches commands.ask \"\(rule)\"",
                changes: asks.map { "remove \"\($0)\" from commands.ask" } + allowChange)
        } else if let rule = allows.first {
            ruling = Ruling(
                verdict: .allow, rule: "commands.allow: \(rule)",
                reason: "`\(text)` matches commands.allow \"\(rule)\"",
                changes: [])
        } else {
            let verdict = commands.defaultVerdict
            ruling = Ruling(
                verdict: verdict, rule: "commands.default",
                reason: "no commands rule matches `\(text)`; the default is \(verdict.rawValue)", changes: allowChange)
        }
        guard let opaque = command.opaqueReason else { return ruling }
        // A rule matched the text as written, not the program that runs: only a stricter rule stands.
        let floor = dynamicFloor(policy)
        guard floor != .allow, floor.strictness >= ruling.verdict.strictness else { return ruling }
        return floorRuling(
            floor, rule: "commands.dynamic", what: "`\(text)`: \(opaque)",
            fix: "write the program and its command string literally so that the commands rules can decide them",
            policy: policy)
    }

    // MARK: Network

    /// Decides a connection to `host` on `port` (nil when unknown) under the `network` rules.
    ///
    /// Precedence is ask > allow > default (the `network` section has no deny list: its default denies). See
    /// ``HostPattern`` for how hosts and ports match; an unknown port is matched by port-specific `ask` rules but
    /// not by port-specific `allow` rules. An empty host, or a port outside 1–65535, is denied.
    public static func decideHost(_ host: String, port: Int?, under policy: Policy) -> Decision {
        let name = HostPattern.normalizedHost(host)
        let target = port.map { "\(name):\($0)" } ?? name
        if name.isEmpty || port.map({ !(1...65_535).contains($0) }) == true {
            return Decision(
                verdict: .deny, rule: "network.invalid", reason: "'\(target)' is not a host and port",
                suggestion: "connect to a host name or address, with a port from 1 to 65535")
        }
        let network = policy.network
        func patterns(_ list: [String]) -> [HostPattern] { list.compactMap { try? HostPattern(validating: $0) } }
        let asks = patterns(network.ask).filter { $0.matches(host: name, port: port, unknownPortMatches: true) }
        let allows = patterns(network.allow).filter { $0.matches(host: name, port: port, unknownPortMatches: false) }
        let allowChange =
            allows.isEmpty && network.defaultVerdict != .allow ? ["add \"\(target)\" to network.allow"] : []
        if let rule = asks.first {
            return Ruling(
                verdict: .ask, rule: "network.ask: \(rule.pattern)",
                reason: "\(target) matches network.ask \"\(rule.pattern)\"",
                changes: asks.map { "remove \"\($0.pattern)\" from network.ask" } + allowChange
            ).decision
        }
        if let rule = allows.first {
            return Ruling(
                verdict: .allow, rule: "network.allow: \(rule.pattern)",
                reason: "\(target) matches network.allow \"\(rule.pattern)\"", changes: []
            ).decision
        }
        let verdict = network.defaultVerdict
        return Ruling(
            verdict: verdict, rule: "network.default",
            reason: "no network rule matches \(target); the default is \(verdict.rawValue)", changes: allowChange
        ).decision
    }

    // MARK: Capabilities

    /// Decides a call of `name.method` under the `capabilities` rules (see ``CapabilityPattern``): deny, then
    /// ask, then allow patterns; when none matches, the verdict for the method's `effect`, else the default.
    public static func decideCapability(
        _ name: String, method: String, effect: String? = nil, under policy: Policy
    ) -> Decision {
        let call = "\(name).\(method)"
        let capabilities = policy.capabilities
        func matching(_ list: [String]) -> [String] {
            list.filter { CapabilityPattern($0).matches(name, method: method) }
        }
        let denies = matching(capabilities.deny)
        let asks = matching(capabilities.ask)
        let allows = matching(capabilities.allow)
        let fallback = capabilities.fallback(effect: effect)
        let allowChange = allows.isEmpty && fallback.verdict != .allow ? ["add \"\(call)\" to capabilities.allow"] : []
        if let rule = denies.first {
            return Ruling(
                verdict: .deny, rule: "capabilities.deny: \(rule)",
                reason: "\(call) matches capabilities.deny \"\(rule)\"",
                changes: denies.map { "remove \"\($0)\" from capabilities.deny" }
                    + asks.map { "remove \"\($0)\" from capabilities.ask" } + allowChange
            ).decision
        }
        if let rule = asks.first {
            return Ruling(
                verdict: .ask, rule: "capabilities.ask: \(rule)",
                reason: "\(call) matches capabilities.ask \"\(rule)\"",
                changes: asks.map { "remove \"\($0)\" from capabilities.ask" } + allowChange
            ).decision
        }
        if let rule = allows.first {
            return Ruling(
                verdict: .allow, rule: "capabilities.allow: \(rule)",
                reason: "\(call) matches capabilities.allow \"\(rule)\"", changes: []
            ).decision
        }
        let verdict = fallback.verdict
        let reason =
            fallback.rule == "capabilities.default"
            ? "no capabilities rule matches \(call); the default is \(verdict.rawValue)"
            : "no capabilities rule matches \(call), a \(effect ?? "") method; \(fallback.rule) is \(verdict.rawValue)"
        return Ruling(
            verdict: verdict, rule: fallback.rule, reason: reason, changes: allowChange
        ).decision
    }
}

extension Policy.Verdict {
    /// deny 2, ask 1, allow 0.
    var strictness: Int {
        switch self {
        case .deny: 2
        case .ask: 1
        case .allow: 0
        }
    }
}

/// A decision in the making: the policy changes that would allow it are kept as a list, so that the decisions of
/// several programs (or paths) of one operation can be combined into one suggestion.
struct Ruling {
    var verdict: Policy.Verdict
    var rule: String
    var reason: String
    /// Each change needed, e.g. `remove "curl *" from commands.deny`; all of them together allow it.
    var changes: [String]

    var decision: Decision {
        Decision(verdict: verdict, rule: rule, reason: reason, suggestion: Self.suggestion(verdict, changes))
    }

    /// At most this many changes are spelled out in one suggestion.
    static let maxChangesShown = 8

    static func suggestion(_ verdict: Policy.Verdict, _ changes: [String]) -> String {
        var shown = changes.prefix(maxChangesShown).map { $0 }
        if changes.count > maxChangesShown { shown.append("\(changes.count - maxChangesShown) more changes") }
        let joined = shown.joined(separator: ", and ")
        switch verdict {
        case .allow: return ""
        case .ask: return joined.isEmpty ? "approve it" : "approve it, or \(joined)"
        case .deny: return joined
        }
    }

    /// The strictest ruling (the first on a tie) with every change the others need too.
    static func combine(_ rulings: [Ruling]) -> Ruling {
        guard var strictest = rulings.first else {
            return Ruling(verdict: .allow, rule: "", reason: "", changes: [])
        }
        for ruling in rulings.dropFirst() where ruling.verdict.strictness > strictest.verdict.strictness {
            strictest = ruling
        }
        var changes: [String] = []
        var seen: Set<String> = []
        let needingChanges = rulings.filter { $0.verdict != .allow }
        for ruling in needingChanges.filter({ $0.verdict == .deny }) + needingChanges.filter({ $0.verdict == .ask }) {
            for change in ruling.changes where seen.insert(change).inserted { changes.append(change) }
        }
        strictest.changes = changes
        return strictest
    }
}
