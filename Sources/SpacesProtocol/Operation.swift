/// One operation of a batch, validated: its kind is known, every field has the right type, no unknown field.
///
/// The fields stay as JSON: the engine forwards them to the space's worker, which performs the operation.
public struct Operation: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case fileWrite = "file.write"
        case fileRead = "file.read"
        case fileEdit = "file.edit"
        case fileDelete = "file.delete"
        case fileList = "file.list"
        case fileMove = "file.move"
        case commandRun = "command.run"
        case codeRun = "code.run"

        public var runsProcess: Bool { self == .commandRun || self == .codeRun }
    }

    /// The client's `id`, or `op_N` (N counting from 1 within the batch).
    public var opId: String
    public var kind: Kind
    /// The operation's own fields (without `kind` and `id`).
    public var fields: [String: JSONValue]

    public init(opId: String, kind: Kind, fields: [String: JSONValue]) {
        self.opId = opId
        self.kind = kind
        self.fields = fields
    }

    /// The workspace paths this operation names, with the field each came from.
    public var paths: [(field: String, path: String)] {
        var result: [(String, String)] = []
        for key in ["path", "from", "to", "cwd", "stdoutTo", "stderrTo"] {
            if let path = fields[key]?.stringValue { result.append((key, path)) }
        }
        return result
    }

    /// Parses `operations[index]`, throwing `-32602` that names the offending field.
    public static func parse(_ value: JSONValue, index: Int, pathPrefix: String = "params.operations")
        throws(RPCError) -> Operation
    {
        let params = try Params(value, path: "\(pathPrefix)[\(index)]")
        let kindName = try params.string("kind")
        guard let kind = Kind(rawValue: kindName) else {
            throw RPCError.invalidParams(
                params.fieldPath("kind"), "unknown operation kind '\(kindName)'",
                hint: "use one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let opId = try params.optionalString("id") ?? "op_\(index + 1)"
        if opId.isEmpty {
            throw RPCError.invalidParams(params.fieldPath("id"), "must not be empty", hint: "omit id or send a name")
        }
        try validate(kind, params)
        var fields = params.members
        fields["kind"] = nil
        fields["id"] = nil
        return Operation(opId: opId, kind: kind, fields: fields)
    }

    static let encodings = ["utf8", "base64"]

    static func validate(_ kind: Kind, _ params: Params) throws(RPCError) {
        let common: Set<String> = ["kind", "id"]
        switch kind {
        case .fileWrite:
            try params.rejectUnknown(allowed: common.union(["path", "content", "encoding", "mode", "expectSha256"]))
            _ = try params.nonEmptyString("path")
            _ = try params.string("content")
            _ = try params.oneOf("encoding", encodings)
            _ = try params.optionalInt("mode", in: 0...0o7777)
            if let hash = try params.optionalString("expectSha256"),
                hash.utf8.count != 64 || !hash.utf8.allSatisfy({ isHexDigit($0) })
            {
                throw RPCError.invalidParams(
                    params.fieldPath("expectSha256"), "expected 64 lowercase hex digits",
                    hint: "send the SHA-256 that file.written or file.edited reported for the current content")
            }
        case .fileRead:
            try params.rejectUnknown(allowed: common.union(["path", "encoding", "offset", "length"]))
            _ = try params.nonEmptyString("path")
            _ = try params.oneOf("encoding", encodings)
            _ = try params.optionalInt("offset", in: 0...Int(Int64.max / 2))
            _ = try params.optionalInt("length", in: 0...Int(Int64.max / 2))
        case .fileEdit:
            try params.rejectUnknown(allowed: common.union(["path", "edits"]))
            _ = try params.nonEmptyString("path")
            guard let edits = try params.optionalArray("edits") else {
                throw RPCError.invalidParams(
                    params.fieldPath("edits"), "missing required field",
                    hint: "add edits: [{\"oldText\": \"…\", \"newText\": \"…\"}]")
            }
            if edits.isEmpty {
                throw RPCError.invalidParams(
                    params.fieldPath("edits"), "must hold at least one edit",
                    hint: "add edits: [{\"oldText\": \"…\", \"newText\": \"…\"}]")
            }
            for (position, edit) in edits.enumerated() {
                let editParams = try Params(edit, path: "\(params.fieldPath("edits"))[\(position)]")
                try editParams.rejectUnknown(allowed: ["oldText", "newText", "replaceAll"])
                _ = try editParams.nonEmptyString("oldText")
                _ = try editParams.string("newText")
                _ = try editParams.optionalBool("replaceAll")
            }
        case .fileDelete:
            try params.rejectUnknown(allowed: common.union(["path", "recursive"]))
            _ = try params.nonEmptyString("path")
            _ = try params.optionalBool("recursive")
        case .fileList:
            try params.rejectUnknown(allowed: common.union(["path", "recursive", "maxEntries"]))
            _ = try params.optionalString("path")
            _ = try params.optionalBool("recursive")
            _ = try params.optionalInt("maxEntries", in: 1...100_000)
        case .fileMove:
            try params.rejectUnknown(allowed: common.union(["from", "to"]))
            _ = try params.nonEmptyString("from")
            _ = try params.nonEmptyString("to")
        case .commandRun:
            try params.rejectUnknown(
                allowed: common.union([
                    "argv", "command", "cwd", "env", "stdin", "timeoutMs", "secrets", "stdoutTo", "stderrTo",
                ]))
            let argv = try params.optionalStringArray("argv")
            let command = try params.optionalString("command")
            switch (argv, command) {
            case (nil, nil):
                throw RPCError.invalidParams(
                    params.fieldPath("argv"), "command.run needs argv or command",
                    hint: "send argv: [\"ls\", \"-l\"] to run a program, or command: \"ls -l | wc -l\" for a shell")
            case (_?, _?):
                throw RPCError.invalidParams(
                    params.fieldPath("command"), "argv and command are exclusive",
                    hint: "send either argv (a program and its arguments) or command (a shell string), not both")
            case (let argv?, nil) where argv.isEmpty || argv[0].isEmpty:
                throw RPCError.invalidParams(
                    params.fieldPath("argv"), "must name a program",
                    hint: "send argv with the program first, e.g. [\"ls\", \"-l\"]")
            case (nil, let command?) where command.isEmpty:
                throw RPCError.invalidParams(
                    params.fieldPath("command"), "must not be empty", hint: "send a shell command string")
            default: break
            }
            try validateProcessFields(params)
            _ = try params.optionalStringArray("secrets")
            _ = try params.optionalString("stdoutTo")
            _ = try params.optionalString("stderrTo")
        case .codeRun:
            try params.rejectUnknown(
                allowed: common.union(["language", "source", "path", "args", "env", "stdin", "timeoutMs", "secrets"]))
            guard try params.oneOf("language", ["typescript"]) != nil else {
                throw RPCError.invalidParams(
                    params.fieldPath("language"), "missing required field",
                    hint: "add language: \"typescript\" (the only runtime of this version)")
            }
            let source = try params.optionalString("source")
            let path = try params.optionalString("path")
            if (source == nil) == (path == nil) {
                throw RPCError.invalidParams(
                    params.fieldPath(source == nil ? "source" : "path"),
                    source == nil ? "code.run needs source or path" : "source and path are exclusive",
                    hint: "send source (the program text) or path (a .ts file in the workspace), exactly one")
            }
            _ = try params.optionalStringArray("args")
            _ = try params.optionalStringArray("secrets")
            try validateProcessFields(params)
        }
    }

    static func validateProcessFields(_ params: Params) throws(RPCError) {
        _ = try params.optionalString("cwd")
        for name in (try params.optionalStringMap("env") ?? [:]).keys.sorted() where !isEnvironmentName(name) {
            throw RPCError.invalidParams(
                Params(members: [:], path: params.fieldPath("env")).fieldPath(name),
                "'\(name)' is not an environment variable name",
                hint: "use letters, digits and '_', not starting with a digit")
        }
        _ = try params.optionalString("stdin")
        _ = try params.optionalInt("timeoutMs", in: 1...3_600_000)
    }

    public static func isEnvironmentName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(first >= 0x30 && first <= 0x39) else { return false }
        return name.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F
        }
    }

    static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }
}
