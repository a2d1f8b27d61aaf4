public import SpacesProtocol

/// What a space may do: the model of the security design, resolved (every key present).
///
/// A client may send a preset name or a partial object; ``Policy/resolve(_:field:)`` fills what it omits from
/// the `default` preset and rejects unknown keys, ill-typed values, malformed patterns and contradictory rules,
/// naming the field.
public struct Policy: Sendable, Equatable {
    public enum Verdict: String, Sendable, CaseIterable {
        case allow, ask, deny
    }

    public struct Filesystem: Sendable, Equatable {
        public var read: [String]
        public var write: [String]
        public var ask: [String]
        public var deny: [String]
    }

    public struct Commands: Sendable, Equatable {
        public var defaultVerdict: Verdict
        public var allow: [String]
        public var ask: [String]
        public var deny: [String]
    }

    public struct Network: Sendable, Equatable {
        public var defaultVerdict: Verdict
        public var allow: [String]
        public var ask: [String]
    }

    public struct Capabilities: Sendable, Equatable {
        public var defaultVerdict: Verdict
        public var allow: [String]
        public var ask: [String]
        public var deny: [String]
        /// The verdict, by a method's declared effect (`read`, `write`, `destructive`), when no pattern names
        /// the call; an effect not listed takes `defaultVerdict`.
        public var effects: [String: Verdict] = [:]

        public static let effectNames = ["read", "write", "destructive"]

        /// The verdict for a call no pattern names.
        public func fallback(effect: String?) -> (verdict: Verdict, rule: String) {
            if let effect, let verdict = effects[effect] { return (verdict, "capabilities.effects.\(effect)") }
            return (defaultVerdict, "capabilities.default")
        }
    }

    public struct Limits: Sendable, Equatable {
        public var memoryMiB: Int
        public var processes: Int
        public var timeoutMs: Int
        public var outputBytes: Int
        public var diskMiB: Int
    }

    public var preset: String
    public var filesystem: Filesystem
    public var commands: Commands
    public var network: Network
    public var capabilities: Capabilities
    public var limits: Limits
    public var approvalTimeoutMs: Int

    public static let presetNames = ["default", "strict", "open"]

    static let defaultLimits = Limits(
        memoryMiB: 1024, processes: 256, timeoutMs: 120_000, outputBytes: 1_048_576, diskMiB: 1024)

    /// Workspace read/write, commands allowed, network denied.
    public static let `default` = Policy(
        preset: "default",
        filesystem: Filesystem(read: ["**"], write: ["**"], ask: [], deny: []),
        commands: Commands(defaultVerdict: .allow, allow: [], ask: [], deny: []),
        network: Network(defaultVerdict: .deny, allow: [], ask: []),
        capabilities: Capabilities(
            defaultVerdict: .allow, allow: [], ask: [], deny: [], effects: ["destructive": .ask]),
        limits: defaultLimits, approvalTimeoutMs: 600_000)

    /// Read-only workspace; every command and capability asks.
    public static let strict = Policy(
        preset: "strict",
        filesystem: Filesystem(read: ["**"], write: [], ask: [], deny: []),
        commands: Commands(defaultVerdict: .ask, allow: [], ask: [], deny: []),
        network: Network(defaultVerdict: .deny, allow: [], ask: []),
        capabilities: Capabilities(defaultVerdict: .ask, allow: [], ask: [], deny: []),
        limits: defaultLimits, approvalTimeoutMs: 600_000)

    /// Network allowed: for trusted local use only.
    public static let open = Policy(
        preset: "open",
        filesystem: Filesystem(read: ["**"], write: ["**"], ask: [], deny: []),
        commands: Commands(defaultVerdict: .allow, allow: [], ask: [], deny: []),
        network: Network(defaultVerdict: .allow, allow: [], ask: []),
        capabilities: Capabilities(defaultVerdict: .allow, allow: [], ask: [], deny: []),
        limits: defaultLimits, approvalTimeoutMs: 600_000)

    public static func preset(named name: String) -> Policy? {
        switch name {
        case "default": .default
        case "strict": .strict
        case "open": .open
        default: nil
        }
    }
}

extension Policy {
    /// Resolves a policy as a client sent it: nil → `default`, a preset name, or a partial object on top of
    /// the preset it names in `preset` (or `default`). Throws `-32602` naming the field at fault: an unknown key,
    /// an empty or malformed pattern (``Glob/validate(_:)``, ``HostPattern/init(validating:)``, a capability
    /// pattern with whitespace or an empty half), or a pattern in two of a section's allow, ask and deny lists
    /// (`params.policy.commands.deny[0]`, the later occurrence, with the list it conflicts with in the message).
    public static func resolve(_ value: JSONValue?, field: String = "params.policy") throws(RPCError) -> Policy {
        switch value {
        case nil, .null?:
            return .default
        case .string(let name)?:
            guard let policy = preset(named: name) else { throw unknownPreset(name, field: field) }
            return policy
        case .object?:
            let params = try Params(value, path: field)
            try params.rejectUnknown(allowed: [
                "preset", "filesystem", "commands", "network", "capabilities", "limits", "approvalTimeoutMs",
            ])
            var policy = Policy.default
            if let name = try params.optionalString("preset") {
                guard let base = preset(named: name) else {
                    throw unknownPreset(name, field: params.fieldPath("preset"))
                }
                policy = base
            }
            if let section = try params.optionalObject("filesystem") {
                try section.rejectUnknown(allowed: ["read", "write", "ask", "deny"])
                policy.filesystem.read = try globs(section, "read") ?? policy.filesystem.read
                policy.filesystem.write = try globs(section, "write") ?? policy.filesystem.write
                policy.filesystem.ask = try globs(section, "ask") ?? policy.filesystem.ask
                policy.filesystem.deny = try globs(section, "deny") ?? policy.filesystem.deny
            }
            if let section = try params.optionalObject("commands") {
                try section.rejectUnknown(allowed: ["default", "allow", "ask", "deny"])
                policy.commands.defaultVerdict = try verdict(section) ?? policy.commands.defaultVerdict
                policy.commands.allow = try patterns(section, "allow") ?? policy.commands.allow
                policy.commands.ask = try patterns(section, "ask") ?? policy.commands.ask
                policy.commands.deny = try patterns(section, "deny") ?? policy.commands.deny
            }
            if let section = try params.optionalObject("network") {
                try section.rejectUnknown(allowed: ["default", "allow", "ask"])
                policy.network.defaultVerdict = try verdict(section) ?? policy.network.defaultVerdict
                policy.network.allow = try hosts(section, "allow") ?? policy.network.allow
                policy.network.ask = try hosts(section, "ask") ?? policy.network.ask
            }
            if let section = try params.optionalObject("capabilities") {
                try section.rejectUnknown(allowed: ["default", "effects", "allow", "ask", "deny"])
                if let verdict = try verdict(section) {
                    // A default given alone covers every effect.
                    policy.capabilities.defaultVerdict = verdict
                    policy.capabilities.effects = [:]
                }
                if let effects = try section.optionalObject("effects") {
                    try effects.rejectUnknown(allowed: Set(Capabilities.effectNames))
                    policy.capabilities.effects = [:]
                    for effect in Capabilities.effectNames {
                        if let name = try effects.oneOf(effect, Verdict.allCases.map(\.rawValue)) {
                            policy.capabilities.effects[effect] = Verdict(rawValue: name)
                        }
                    }
                }
                policy.capabilities.allow = try capabilityPatterns(section, "allow") ?? policy.capabilities.allow
                policy.capabilities.ask = try capabilityPatterns(section, "ask") ?? policy.capabilities.ask
                policy.capabilities.deny = try capabilityPatterns(section, "deny") ?? policy.capabilities.deny
            }
            if let section = try params.optionalObject("limits") {
                policy.limits = try applyLimits(section, to: policy.limits)
            }
            policy.approvalTimeoutMs =
                try params.optionalInt("approvalTimeoutMs", in: 1_000...86_400_000) ?? policy.approvalTimeoutMs
            try policy.rejectContradictions(params)
            return policy
        case let other?:
            throw RPCError.invalidParams(
                field, "expected a preset name or a policy object, got \(other.typeName)",
                hint:
                    "send \"default\", \"strict\", \"open\", or an object such as {\"commands\":{\"deny\":[\"curl *\"]}}"
            )
        }
    }

    /// Applies a partial `limits` object, validating each value's range.
    public static func applyLimits(_ section: Params, to limits: Limits) throws(RPCError) -> Limits {
        try section.rejectUnknown(allowed: ["memoryMiB", "processes", "timeoutMs", "outputBytes", "diskMiB"])
        var result = limits
        result.memoryMiB = try section.optionalInt("memoryMiB", in: 16...1_048_576) ?? result.memoryMiB
        result.processes = try section.optionalInt("processes", in: 1...65_536) ?? result.processes
        result.timeoutMs = try section.optionalInt("timeoutMs", in: 1...3_600_000) ?? result.timeoutMs
        result.outputBytes = try section.optionalInt("outputBytes", in: 0...67_108_864) ?? result.outputBytes
        result.diskMiB = try section.optionalInt("diskMiB", in: 1...1_048_576) ?? result.diskMiB
        return result
    }

    static func unknownPreset(_ name: String, field: String) -> RPCError {
        RPCError.invalidParams(
            field, "unknown policy preset '\(name)'",
            hint: "use one of \(presetNames.map { "\"\($0)\"" }.joined(separator: ", ")), or send a policy object")
    }

    static func verdict(_ section: Params) throws(RPCError) -> Verdict? {
        guard let name = try section.oneOf("default", Verdict.allCases.map(\.rawValue)) else { return nil }
        return Verdict(rawValue: name)
    }

    static func patterns(_ section: Params, _ key: String) throws(RPCError) -> [String]? {
        guard let list = try section.optionalStringArray(key) else { return nil }
        for (index, pattern) in list.enumerated() where pattern.trimmingSpaces.isEmpty {
            throw RPCError.invalidParams(
                "\(section.fieldPath(key))[\(index)]", "empty pattern",
                hint: "remove the empty string, or write a pattern such as \"git push *\"")
        }
        return list
    }

    static func globs(_ section: Params, _ key: String) throws(RPCError) -> [String]? {
        try validated(section, key) { pattern throws(PatternError) in try Glob.validate(pattern) }
    }

    static func hosts(_ section: Params, _ key: String) throws(RPCError) -> [String]? {
        try validated(section, key) { pattern throws(PatternError) in _ = try HostPattern(validating: pattern) }
    }

    static func capabilityPatterns(_ section: Params, _ key: String) throws(RPCError) -> [String]? {
        try validated(section, key) { pattern throws(PatternError) in try CapabilityPattern.validate(pattern) }
    }

    private static func validated(
        _ section: Params, _ key: String, _ check: (String) throws(PatternError) -> Void
    ) throws(RPCError) -> [String]? {
        guard let list = try patterns(section, key) else { return nil }
        for (index, pattern) in list.enumerated() {
            do {
                try check(pattern)
            } catch {
                throw RPCError.invalidParams("\(section.fieldPath(key))[\(index)]", error.message, hint: error.hint)
            }
        }
        return list
    }

    /// Rejects a pattern listed in two of a section's allow, ask and deny lists (`read` and `write` are both
    /// allow lists), naming the later occurrence and the list it conflicts with. Patterns compare in the form
    /// they are matched in (`./src/**` is `src/**`, `git  push *` is `git push *`, hosts ignore case).
    func rejectContradictions(_ params: Params) throws(RPCError) {
        let sections: [(name: String, lists: [(String, [String])], key: (String) -> String)] = [
            (
                "filesystem",
                [
                    ("read", filesystem.read), ("write", filesystem.write), ("ask", filesystem.ask),
                    ("deny", filesystem.deny),
                ],
                { Self.globKey($0) }
            ),
            (
                "commands", [("allow", commands.allow), ("ask", commands.ask), ("deny", commands.deny)],
                { CommandPattern($0).normalized }
            ),
            ("network", [("allow", network.allow), ("ask", network.ask)], { HostPattern.normalizedHost($0) }),
            (
                "capabilities",
                [("allow", capabilities.allow), ("ask", capabilities.ask), ("deny", capabilities.deny)],
                { $0.contains(".") ? $0 : $0 + ".*" }
            ),
        ]
        let allowLists: Set<String> = ["read", "write", "allow"]
        for section in sections {
            var seen: [String: [(list: String, index: Int)]] = [:]
            for (list, patterns) in section.lists {
                for (index, pattern) in patterns.enumerated() {
                    let key = section.key(pattern)
                    let conflict = seen[key, default: []].first { earlier in
                        earlier.list != list && !(allowLists.contains(earlier.list) && allowLists.contains(list))
                    }
                    if let conflict {
                        let sectionParams = Params(members: [:], path: params.fieldPath(section.name))
                        let given = (try? params.optionalObject(section.name))??.has(conflict.list) ?? false
                        let earlier =
                            given
                            ? "\(section.name).\(conflict.list)[\(conflict.index)]"
                            : "\(section.name).\(conflict.list) (from the \"\(preset)\" preset)"
                        throw RPCError.invalidParams(
                            "\(sectionParams.fieldPath(list))[\(index)]",
                            "'\(pattern)' is also in \(earlier); a pattern may be in only one of a section's allow, ask"
                                + " and deny lists",
                            hint: given
                                ? "remove it from \(section.name).\(conflict.list) or from \(section.name).\(list)"
                                    + " (deny wins over ask, and ask over allow)"
                                : "send \(section.name).\(conflict.list) without it, or remove it from"
                                    + " \(section.name).\(list) (deny wins over ask, and ask over allow)")
                    }
                    seen[key, default: []].append((list, index))
                }
            }
        }
    }

    /// A glob in the form it is matched in, for comparing two patterns.
    static func globKey(_ pattern: String) -> String {
        var text = Substring(pattern)
        if text.hasPrefix(WorkspaceBoundary.root + "/") { text = text.dropFirst(WorkspaceBoundary.root.count + 1) }
        while text.hasPrefix("./") { text = text.dropFirst(2) }
        var key = String(text)
        while key.contains("//") { key = key.replacing("//", with: "/") }
        return key
    }

    /// The resolved policy as JSON: every section and key present.
    public var json: JSONValue {
        [
            "preset": .string(preset),
            "filesystem": [
                "read": .array(filesystem.read.map(JSONValue.string)),
                "write": .array(filesystem.write.map(JSONValue.string)),
                "ask": .array(filesystem.ask.map(JSONValue.string)),
                "deny": .array(filesystem.deny.map(JSONValue.string)),
            ],
            "commands": [
                "default": .string(commands.defaultVerdict.rawValue),
                "allow": .array(commands.allow.map(JSONValue.string)),
                "ask": .array(commands.ask.map(JSONValue.string)),
                "deny": .array(commands.deny.map(JSONValue.string)),
            ],
            "network": [
                "default": .string(network.defaultVerdict.rawValue),
                "allow": .array(network.allow.map(JSONValue.string)),
                "ask": .array(network.ask.map(JSONValue.string)),
            ],
            "capabilities": [
                "default": .string(capabilities.defaultVerdict.rawValue),
                "effects": .object(capabilities.effects.mapValues { .string($0.rawValue) }),
                "allow": .array(capabilities.allow.map(JSONValue.string)),
                "ask": .array(capabilities.ask.map(JSONValue.string)),
                "deny": .array(capabilities.deny.map(JSONValue.string)),
            ],
            "limits": [
                "memoryMiB": JSONValue(limits.memoryMiB), "processes": JSONValue(limits.processes),
                "timeoutMs": JSONValue(limits.timeoutMs), "outputBytes": JSONValue(limits.outputBytes),
                "diskMiB": JSONValue(limits.diskMiB),
            ],
            "approvalTimeoutMs": JSONValue(approvalTimeoutMs),
        ]
    }
}

extension String {
    var trimmingSpaces: Substring {
        var slice = self[...]
        while slice.first == " " { slice = slice.dropFirst() }
        while slice.last == " " { slice = slice.dropLast() }
        return slice
    }
}
