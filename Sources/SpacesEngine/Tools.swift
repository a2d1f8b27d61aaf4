import SpacesPolicy
package import SpacesProtocol
import Synchronization

/// A tool of `tools/list`: what a model calls, what it reads about it, and the JSON Schema of its arguments.
///
/// The shape is the Model Context Protocol's `Tool`, so the same list serves `tools/list` of the engine's own
/// protocol and of its MCP face.
struct ToolDefinition: Sendable {
    /// MCP's tool annotations: hints for the client (whether to confirm, whether a retry is safe).
    struct Hints: Sendable {
        var readOnly: Bool
        var destructive: Bool
        var idempotent: Bool
        var openWorld: Bool
    }

    var name: String
    var title: String
    var description: String
    var inputSchema: JSONValue
    var hints: Hints

    var json: JSONValue {
        [
            "name": .string(name), "title": .string(title), "description": .string(description),
            "inputSchema": inputSchema,
            "annotations": [
                "title": .string(title), "readOnlyHint": .bool(hints.readOnly),
                "destructiveHint": .bool(hints.destructive), "idempotentHint": .bool(hints.idempotent),
                "openWorldHint": .bool(hints.openWorld),
            ],
        ]
    }
}

/// The tools every space has: each is one operation of the protocol.
enum BuiltinTool: String, CaseIterable, Sendable {
    case readFile = "read_file"
    case writeFile = "write_file"
    case editFile = "edit_file"
    case deleteFile = "delete_file"
    case listFiles = "list_files"
    case runCommand = "run_command"
    case runTypeScript = "run_typescript"
}

/// One `tools/call`, resolved: the operation it runs and how its batch result reads as a tool result.
struct ToolPlan: Sendable {
    enum Rendering: Sendable {
        case read(offset: Int)
        case written
        case edited
        case deleted
        case listing
        /// A command or a program: its output and how it ended.
        case process
    }

    var name: String
    var operation: JSONValue
    var rendering: Rendering
}

/// What a tool call answers: `{content: [{type: "text", text}], isError}`.
struct ToolAnswer: Sendable {
    var text: String
    var isError: Bool

    var json: JSONValue { ["content": [["type": "text", "text": .string(text)]], "isError": .bool(isError)] }
}

/// The tools of one space: the built-in ones, then one per capability method (`<capability>_<method>`).
struct ToolCatalog: Sendable {
    let policy: Policy
    let capabilities: [CapabilityDeclaration]

    /// Every tool, in a stable order. A capability tool whose name a built-in tool or an earlier capability
    /// tool already has is left out: the first one keeps the name.
    var definitions: [ToolDefinition] {
        var tools = BuiltinTool.allCases.map(definition)
        var names = Set(tools.map(\.name))
        for capability in capabilities {
            for method in capability.methods {
                let tool = definition(capability, method)
                if names.insert(tool.name).inserted { tools.append(tool) }
            }
        }
        return tools
    }

    // MARK: definitions

    static let pathProperty: JSONValue = [
        "type": "string", "minLength": 1,
        "description": "A path relative to the workspace, e.g. \"src/main.ts\" (\"/workspace/src/main.ts\" also works)",
    ]

    static func object(_ properties: [String: JSONValue], required: [String]) -> JSONValue {
        [
            "type": "object", "properties": .object(properties), "required": .array(required.map(JSONValue.string)),
            "additionalProperties": false,
        ]
    }

    var timeoutProperty: JSONValue {
        [
            "type": "integer", "minimum": 1, "maximum": 3_600_000,
            "description": .string(
                "Milliseconds before the process group is killed (default \(policy.limits.timeoutMs))"),
        ]
    }

    /// What every process sees, said once for run_command and run_typescript.
    var processEnvironment: String {
        "It runs in the space, an isolated Linux sandbox: /workspace (the working directory) and /tmp are "
            + "writable, the rest of the file system is read-only, the Debian userland and Bun are on PATH, and the "
            + "network is off unless the space's policy allows it. There is no terminal and no input, so use "
            + "non-interactive options; the timeout is \(policy.limits.timeoutMs) ms unless `timeoutMs` says otherwise."
    }

    func definition(_ tool: BuiltinTool) -> ToolDefinition {
        let outputLimit = policy.limits.outputBytes
        switch tool {
        case .readFile:
            return ToolDefinition(
                name: tool.rawValue, title: "Read a file",
                description:
                    "Read a UTF-8 text file from the workspace and return its content. At most \(outputLimit) bytes "
                    + "come back per call; for a larger file the result says where it stopped, and `offset` and "
                    + "`length` (in bytes) read the next part.",
                inputSchema: Self.object(
                    [
                        "path": Self.pathProperty,
                        "offset": [
                            "type": "integer", "minimum": 0, "description": "Byte offset to start at (default 0)",
                        ],
                        "length": [
                            "type": "integer", "minimum": 0,
                            "description": "Most bytes to return (default: up to the end of the file)",
                        ],
                    ], required: ["path"]),
                hints: .init(readOnly: true, destructive: false, idempotent: true, openWorld: false))
        case .writeFile:
            return ToolDefinition(
                name: tool.rawValue, title: "Write a file",
                description:
                    "Create a file in the workspace, or replace its whole content, with the given UTF-8 text. Parent "
                    + "directories are created. To change part of an existing file, use edit_file.",
                inputSchema: Self.object(
                    [
                        "path": Self.pathProperty,
                        "content": ["type": "string", "description": "The file's complete new content"],
                    ], required: ["path", "content"]),
                hints: .init(readOnly: false, destructive: true, idempotent: true, openWorld: false))
        case .editFile:
            return ToolDefinition(
                name: tool.rawValue, title: "Edit a file",
                description:
                    "Replace exact text in a workspace file. Each edit replaces `oldText` with `newText`; `oldText` "
                    + "must occur exactly once (include a few surrounding lines to make it unique) unless "
                    + "`replaceAll` is true. Edits apply in order, each to the result of the ones before, and the "
                    + "file is written only when every edit succeeds. Whitespace and indentation must match exactly.",
                inputSchema: Self.object(
                    [
                        "path": Self.pathProperty,
                        "edits": [
                            "type": "array", "minItems": 1,
                            "description": "The replacements, applied in order",
                            "items": Self.object(
                                [
                                    "oldText": [
                                        "type": "string", "minLength": 1,
                                        "description": "Text to find, exactly as it is in the file",
                                    ],
                                    "newText": ["type": "string", "description": "Text to put in its place"],
                                    "replaceAll": [
                                        "type": "boolean",
                                        "description":
                                            "Replace every occurrence rather than exactly one (default false)",
                                    ],
                                ], required: ["oldText", "newText"]),
                        ],
                    ], required: ["path", "edits"]),
                hints: .init(readOnly: false, destructive: true, idempotent: false, openWorld: false))
        case .deleteFile:
            return ToolDefinition(
                name: tool.rawValue, title: "Delete a file or directory",
                description:
                    "Delete a file or a directory in the workspace. A directory that is not empty needs "
                    + "`recursive: true`, which deletes everything in it. The workspace root cannot be deleted.",
                inputSchema: Self.object(
                    [
                        "path": Self.pathProperty,
                        "recursive": [
                            "type": "boolean", "description": "Delete a directory with its contents (default false)",
                        ],
                    ], required: ["path"]),
                hints: .init(readOnly: false, destructive: true, idempotent: true, openWorld: false))
        case .listFiles:
            return ToolDefinition(
                name: tool.rawValue, title: "List files",
                description:
                    "List the files and directories in a workspace directory (default: the workspace root), one "
                    + "path per line, relative to the workspace; directories end with `/`. With `recursive: true` "
                    + "everything below is listed, each directory followed by its contents. Symlinks are not "
                    + "followed. At most 10000 entries.",
                inputSchema: Self.object(
                    [
                        "path": [
                            "type": "string",
                            "description": "The directory to list, relative to the workspace (default \".\")",
                        ],
                        "recursive": ["type": "boolean", "description": "List everything below (default false)"],
                    ], required: []),
                hints: .init(readOnly: true, destructive: false, idempotent: true, openWorld: false))
        case .runCommand:
            return ToolDefinition(
                name: tool.rawValue, title: "Run a shell command",
                description:
                    "Run a shell command line with /bin/sh -c (pipes, redirections, `&&` work) and return its output "
                    + "once it ends: stdout, then stderr under a `[stderr]` line, then the exit code when it is not "
                    + "0. \(processEnvironment) Each call starts a new shell: `cd` and variables do not carry over. "
                    + "Output over \(outputLimit) bytes per stream is cut; redirect large output to a file and read "
                    + "it in parts.",
                inputSchema: Self.object(
                    [
                        "command": [
                            "type": "string", "minLength": 1,
                            "description": "The command line, e.g. \"npm test 2>&1 | tail -n 50\"",
                        ],
                        "timeoutMs": timeoutProperty,
                    ], required: ["command"]),
                hints: .init(readOnly: false, destructive: true, idempotent: false, openWorld: false))
        case .runTypeScript:
            var description =
                "Run a TypeScript program with Bun and return what it prints (console.log goes to stdout, "
                + "console.error to stderr), then the exit code when it is not 0. Top-level await works, and Bun's and "
                + "Node's built-in modules can be imported. \(processEnvironment)"
            if !capabilities.isEmpty {
                let names = capabilities.map(\.name).joined(separator: ", ")
                description +=
                    " This space's capabilities (\(names)) can be imported and called: "
                    + "`import { \(capabilities[0].name) } from \"spaces:capabilities\"`; each method is also a tool "
                    + "of its own."
            }
            return ToolDefinition(
                name: tool.rawValue, title: "Run TypeScript",
                description: description,
                inputSchema: Self.object(
                    [
                        "source": [
                            "type": "string", "minLength": 1, "description": "The program's source text",
                        ],
                        "timeoutMs": timeoutProperty,
                    ], required: ["source"]),
                hints: .init(readOnly: false, destructive: true, idempotent: false, openWorld: false))
        }
    }

    static func toolName(_ capability: CapabilityDeclaration, _ method: CapabilityDeclaration.Method) -> String {
        "\(capability.name)_\(method.name)"
    }

    /// The method's `params` schema when it describes an object; otherwise an object whose `params` property
    /// carries the value (MCP tools take an object of arguments).
    static func inputSchema(_ method: CapabilityDeclaration.Method) -> (schema: JSONValue, wrapped: Bool) {
        guard let schema = method.params, schema != .bool(true) else { return (["type": "object"], false) }
        if schema["type"]?.stringValue == "object" { return (schema, false) }
        return (
            [
                "type": "object", "properties": ["params": schema], "required": ["params"],
                "additionalProperties": false,
            ], true
        )
    }

    func definition(_ capability: CapabilityDeclaration, _ method: CapabilityDeclaration.Method) -> ToolDefinition {
        var description = method.description ?? "Call the \(method.name) method of the \(capability.name) capability."
        if !description.hasSuffix(".") { description += "." }
        description += " Part of the `\(capability.name)` capability"
        if let about = capability.description { description += " (\(about))" }
        description += ". Returns the method's result as JSON."
        switch method.effect {
        case .read: description += " It only reads."
        case .write: description += " It changes data."
        case .destructive: description += " It may change or delete data."
        }
        if Self.inputSchema(method).wrapped { description += " Pass the method's argument as `params`." }
        return ToolDefinition(
            name: Self.toolName(capability, method), title: "\(capability.name).\(method.name)",
            description: description, inputSchema: Self.inputSchema(method).schema,
            hints: .init(
                readOnly: method.effect == .read, destructive: method.effect == .destructive, idempotent: false,
                openWorld: true))
    }

    // MARK: calls

    /// Resolves a call: which operation runs, or `-32602` naming the argument at fault.
    func plan(_ name: String, arguments: Params, nameField: String) throws(RPCError) -> ToolPlan {
        if let tool = BuiltinTool(rawValue: name) { return try plan(tool, arguments) }
        for capability in capabilities {
            for method in capability.methods where Self.toolName(capability, method) == name {
                return try plan(capability, method, arguments)
            }
        }
        throw RPCError.invalidParams(
            nameField, "no tool named '\(name)' in this space",
            hint: "call tools/list for this space's tools: " + definitions.map(\.name).joined(separator: ", "))
    }

    func plan(_ tool: BuiltinTool, _ arguments: Params) throws(RPCError) -> ToolPlan {
        var operation: [String: JSONValue] = ["id": .string(tool.rawValue)]
        let rendering: ToolPlan.Rendering
        switch tool {
        case .readFile:
            try arguments.rejectUnknown(allowed: ["path", "offset", "length"])
            operation["kind"] = "file.read"
            operation["path"] = .string(try arguments.nonEmptyString("path"))
            let offset = try arguments.optionalInt("offset", in: 0...Int(Int64.max / 2))
            if let offset { operation["offset"] = JSONValue(offset) }
            if let length = try arguments.optionalInt("length", in: 0...Int(Int64.max / 2)) {
                operation["length"] = JSONValue(length)
            }
            rendering = .read(offset: offset ?? 0)
        case .writeFile:
            try arguments.rejectUnknown(allowed: ["path", "content"])
            operation["kind"] = "file.write"
            operation["path"] = .string(try arguments.nonEmptyString("path"))
            operation["content"] = .string(try arguments.string("content"))
            rendering = .written
        case .editFile:
            if !arguments.has("edits"), arguments.has("oldText") || arguments.has("newText") {
                throw RPCError.invalidParams(
                    arguments.fieldPath("edits"), "missing required field (oldText and newText go inside edits)",
                    hint: "send edits: [{\"oldText\": \"text now in the file\", \"newText\": \"its replacement\"}]")
            }
            try arguments.rejectUnknown(allowed: ["path", "edits"])
            operation["kind"] = "file.edit"
            operation["path"] = .string(try arguments.nonEmptyString("path"))
            guard let edits = try arguments.optionalArray("edits"), !edits.isEmpty else {
                throw RPCError.invalidParams(
                    arguments.fieldPath("edits"), "missing or empty",
                    hint: "send edits: [{\"oldText\": \"text now in the file\", \"newText\": \"its replacement\"}]")
            }
            var checked: [JSONValue] = []
            for (index, edit) in edits.enumerated() {
                let fields = try Params(edit, path: "\(arguments.fieldPath("edits"))[\(index)]")
                try fields.rejectUnknown(allowed: ["oldText", "newText", "replaceAll"])
                var entry: [String: JSONValue] = [
                    "oldText": .string(try fields.nonEmptyString("oldText")),
                    "newText": .string(try fields.string("newText")),
                ]
                if let all = try fields.optionalBool("replaceAll") { entry["replaceAll"] = .bool(all) }
                checked.append(.object(entry))
            }
            operation["edits"] = .array(checked)
            rendering = .edited
        case .deleteFile:
            try arguments.rejectUnknown(allowed: ["path", "recursive"])
            operation["kind"] = "file.delete"
            operation["path"] = .string(try arguments.nonEmptyString("path"))
            if let recursive = try arguments.optionalBool("recursive") { operation["recursive"] = .bool(recursive) }
            rendering = .deleted
        case .listFiles:
            try arguments.rejectUnknown(allowed: ["path", "recursive"])
            operation["kind"] = "file.list"
            if let path = try arguments.optionalString("path"), !path.isEmpty { operation["path"] = .string(path) }
            if let recursive = try arguments.optionalBool("recursive") { operation["recursive"] = .bool(recursive) }
            rendering = .listing
        case .runCommand:
            try arguments.rejectUnknown(allowed: ["command", "timeoutMs"])
            operation["kind"] = "command.run"
            operation["command"] = .string(try arguments.nonEmptyString("command"))
            if let timeout = try arguments.optionalInt("timeoutMs", in: 1...3_600_000) {
                operation["timeoutMs"] = JSONValue(timeout)
            }
            rendering = .process
        case .runTypeScript:
            try arguments.rejectUnknown(allowed: ["source", "timeoutMs"])
            operation["kind"] = "code.run"
            operation["language"] = "typescript"
            operation["source"] = .string(try arguments.nonEmptyString("source"))
            if let timeout = try arguments.optionalInt("timeoutMs", in: 1...3_600_000) {
                operation["timeoutMs"] = JSONValue(timeout)
            }
            rendering = .process
        }
        return ToolPlan(name: tool.rawValue, operation: .object(operation), rendering: rendering)
    }

    /// A capability method runs as a TypeScript program that imports the capability, calls the method with the
    /// arguments and prints the result as JSON: the call crosses the same bridge, policy and audit as any
    /// program's.
    func plan(
        _ capability: CapabilityDeclaration, _ method: CapabilityDeclaration.Method, _ arguments: Params
    ) throws(RPCError) -> ToolPlan {
        let value: JSONValue
        if Self.inputSchema(method).wrapped {
            try arguments.rejectUnknown(allowed: ["params"])
            guard let inner = arguments.members["params"] else {
                throw RPCError.invalidParams(
                    arguments.fieldPath("params"), "missing required field",
                    hint: "send the method's argument as params")
            }
            value = inner
            if let schema = method.params { try Self.check(value, against: schema, at: arguments.fieldPath("params")) }
        } else {
            value = .object(arguments.members)
            if let schema = method.params { try Self.check(value, against: schema, at: arguments.path) }
        }
        let source = """
            import { \(capability.name) } from "spaces:capabilities";
            try {
              const result = await \(capability.name)[\(JSONValue.string(method.name).encoded())](\(value.encoded()));
              console.log(result === undefined ? "null" : JSON.stringify(result, null, 2));
            } catch (error) {
              const failure = error as { code?: string; message?: string; hint?: string };
              console.error(
                failure && failure.code
                  ? `${failure.code}: ${failure.message}${failure.hint ? `\\nhint: ${failure.hint}` : ""}`
                  : String(error),
              );
              process.exit(1);
            }

            """
        let name = Self.toolName(capability, method)
        return ToolPlan(
            name: name,
            operation: ["id": .string(name), "kind": "code.run", "language": "typescript", "source": .string(source)],
            rendering: .process)
    }

    /// `-32602` naming the first place where `value` does not satisfy the method's `params` schema.
    static func check(_ value: JSONValue, against schema: JSONValue, at field: String) throws(RPCError) {
        let violations = JSONSchemaValidator(document: schema).validate(value, schemaAt: "#", instancePath: field)
        guard let first = violations.first else { return }
        let place = first.instancePath.isEmpty ? field : first.instancePath
        throw RPCError.invalidParams(
            place, first.message, hint: "send arguments that match the tool's inputSchema (tools/list shows it)")
    }
}

// MARK: rendering

extension ToolPlan {
    /// The tool result of a batch result: what a model should read.
    func answer(_ result: JSONValue) -> ToolAnswer {
        let events = result["events"]?.arrayValue ?? []
        func event(_ type: String) -> JSONValue? { events.last { $0["type"]?.stringValue == type } }
        if let denied = event("policy.denied") {
            return ToolAnswer(text: Self.denial(denied), isError: true)
        }
        let failure = event("operation.failed")?["error"]
        if case .process = rendering {
            return Self.processAnswer(exited: event("command.exited"), failure: failure)
        }
        if let failure { return ToolAnswer(text: Self.failureText(failure), isError: true) }
        if result["status"]?.stringValue == "cancelled" {
            return ToolAnswer(text: "Cancelled: the \(name) call was stopped before it finished.", isError: true)
        }
        switch rendering {
        case .read(let offset):
            guard let content = event("file.content") else { break }
            return ToolAnswer(text: Self.readText(content, offset: offset), isError: false)
        case .written:
            guard let written = event("file.written") else { break }
            let bytes = written["bytes"]?.intValue ?? 0
            return ToolAnswer(
                text: "Wrote \(bytes) byte\(bytes == 1 ? "" : "s") to \(written["path"]?.stringValue ?? "").",
                isError: false)
        case .edited:
            guard let edited = event("file.edited") else { break }
            let count = edited["replacements"]?.intValue ?? 0
            return ToolAnswer(
                text:
                    "Edited \(edited["path"]?.stringValue ?? ""): \(count) replacement\(count == 1 ? "" : "s").",
                isError: false)
        case .deleted:
            guard let deleted = event("file.deleted") else { break }
            return ToolAnswer(text: "Deleted \(deleted["path"]?.stringValue ?? "").", isError: false)
        case .listing:
            guard let listing = event("file.listing") else { break }
            return ToolAnswer(text: Self.listingText(listing), isError: false)
        case .process:
            break
        }
        return ToolAnswer(
            text: "The \(name) call ended without a result (batch status \(result["status"]?.stringValue ?? "?")).",
            isError: true)
    }

    static func denial(_ denied: JSONValue) -> String {
        var text = "Denied by the space's policy: \(denied["reason"]?.stringValue ?? "")\n"
        text += "rule: \(denied["rule"]?.stringValue ?? "")"
        if let suggestion = denied["suggestion"]?.stringValue, !suggestion.isEmpty {
            text += "\nsuggestion: \(suggestion)"
        }
        return text
    }

    static func failureText(_ error: JSONValue) -> String {
        var text = "Failed (\(error["code"]?.stringValue ?? "ERROR")): \(error["message"]?.stringValue ?? "")"
        if let hint = error["hint"]?.stringValue, !hint.isEmpty { text += "\nhint: \(hint)" }
        return text
    }

    static func readText(_ content: JSONValue, offset: Int) -> String {
        let text = content["content"]?.stringValue ?? ""
        let bytes = content["bytes"]?.intValue ?? 0
        let size = content["size"]?.intValue ?? 0
        if size == 0 { return "(empty file)" }
        if bytes == 0 { return "(nothing at offset \(offset): the file has \(size) bytes)" }
        guard content["truncated"] == .bool(true) else { return text }
        return text + (text.hasSuffix("\n") ? "" : "\n")
            + "[cut at the output limit: bytes \(offset) to \(offset + bytes) of \(size) shown; read on with "
            + "offset \(offset + bytes)]"
    }

    static func listingText(_ listing: JSONValue) -> String {
        let entries = listing["entries"]?.arrayValue ?? []
        if entries.isEmpty { return "(empty directory)" }
        var lines = entries.map { entry in
            (entry["path"]?.stringValue ?? "") + (entry["type"]?.stringValue == "directory" ? "/" : "")
        }
        if listing["truncated"] == .bool(true) { lines.append("[listing stopped after \(entries.count) entries]") }
        return lines.joined(separator: "\n")
    }

    /// stdout, then stderr under a `[stderr]` line, then how the process ended when that was not exit code 0.
    static func processAnswer(exited: JSONValue?, failure: JSONValue?) -> ToolAnswer {
        var parts: [String] = []
        func add(_ text: String) { parts.append(text.hasSuffix("\n") ? String(text.dropLast()) : text) }
        let stdout = exited?["stdout"]?.stringValue ?? ""
        let stderr = exited?["stderr"]?.stringValue ?? ""
        if !stdout.isEmpty { add(stdout) }
        if !stderr.isEmpty { add("[stderr]\n" + stderr) }
        var isError = failure != nil
        if let failure {
            var line = "[\(failure["code"]?.stringValue ?? "ERROR"): \(failure["message"]?.stringValue ?? "")]"
            if let hint = failure["hint"]?.stringValue, !hint.isEmpty { line += "\nhint: \(hint)" }
            add(line)
        } else if let signal = exited?["signal"]?.stringValue {
            add("[killed by \(signal)]")
            isError = true
        } else if let code = exited?["exitCode"]?.intValue, code != 0 {
            add("[exit code \(code)]")
            isError = true
        }
        if exited?["truncated"] == .bool(true) {
            add(
                "[output cut at the space's output limit: \(exited?["stdoutBytes"]?.intValue ?? 0) bytes of stdout "
                    + "and \(exited?["stderrBytes"]?.intValue ?? 0) of stderr were written; redirect to a file and "
                    + "read it in parts]")
        }
        if parts.isEmpty { parts.append("(no output)") }
        return ToolAnswer(text: parts.joined(separator: "\n"), isError: isError)
    }
}

// MARK: engine

/// A `tools/call` whose batch waits for a person: where its outcome goes once the batch continues.
enum BatchWaiter: Sendable {
    /// The call's batch is running; nobody waits yet.
    case expecting
    /// The call waits for the batch to continue.
    case waiting(CheckedContinuation<BatchContinuation, Never>)
    /// The batch continued before the call began to wait.
    case continued(BatchContinuation)
}

/// How a batch that waited for approval went on: the result of the rest of the batch, or nil when the approval
/// was denied without an answer (timeout, cancel, destroy), with the reason.
struct BatchContinuation: Sendable {
    var result: JSONValue?
    var reason: String?
}

extension Engine {
    /// `tools/list`: the space's tools, MCP-shaped.
    package func listTools(_ params: Params) throws(RPCError) -> JSONValue {
        let space = try space(try params.string("spaceId"))
        let catalog = ToolCatalog(policy: space.policy, capabilities: space.capabilities)
        return ["tools": .array(catalog.definitions.map(\.json))]
    }

    /// `tools/call`: runs the tool as a one-operation batch in order with the space's other batches, and
    /// answers the tool result through `answer`, exactly once.
    ///
    /// A call whose operation the policy asks about waits, without holding the space, until the approval is
    /// answered or denied (`batchContinued`). With `failClosed` (the MCP face, where nobody can answer), the
    /// approval is denied at once and the result says which policy change would allow it. `requestID` is the
    /// request's id, so that `notifications/cancelled` cancels the call's batch.
    package func callTool(
        _ params: Params, requestID: JSONValue?, failClosed: Bool = false,
        answer: @escaping @Sendable (Result<JSONValue, RPCError>) -> Void
    ) {
        do throws(RPCError) {
            let space = try space(try params.string("spaceId"))
            let catalog = ToolCatalog(policy: space.policy, capabilities: space.capabilities)
            let arguments = try Params(params.members["arguments"], path: params.fieldPath("arguments"))
            let plan = try catalog.plan(
                try params.nonEmptyString("name"), arguments: arguments, nameField: params.fieldPath("name"))
            var submit: [String: JSONValue] = ["spaceId": .string(space.id), "operations": [plan.operation]]
            if let runId = try params.optionalString("runId") { submit["runId"] = .string(runId) }
            let key = requestID ?? .string("tools/call " + Identifier.make("t_"))
            let (executor, preferred, job) = try Self.renamingOperationFields(params.fieldPath("arguments")) {
                () throws(RPCError) in try prepareSubmit(Params(members: submit, path: params.path), requestID: key)
            }
            // The batch is registered under the request until its job ends; the job has not started yet.
            let batchId = state.withLock { state -> String? in
                guard let batchId = state.batchByRequest[key] else { return nil }
                state.batchWaiters[batchId] = .expecting
                return batchId
            }
            guard let batchId else {
                throw RPCError(.internalError, "the tool call's batch was not registered", hint: "report this bug")
            }
            executor.submit(preferring: preferred) { [self] in
                let first = await job()
                guard case .success(let result) = first, result["status"]?.stringValue == "awaiting_approval" else {
                    _ = state.withLock { $0.batchWaiters.removeValue(forKey: batchId) }
                    answer(first.map { plan.answer($0).json })
                    return
                }
                // Denied now, the batch still goes on: an operation that never began ends there, a program whose
                // capability call was asked about gets the denial and runs to its end.
                let denial = failClosed ? denyAtOnce(batchId, plan: plan) : nil
                // Waiting here would hold the space's executor, which the rest of the batch needs: wait elsewhere.
                Task {
                    let outcome = await self.continuation(of: batchId)
                    guard let result = outcome.result else {
                        let text =
                            "Not run: the \(plan.name) call needed a person's approval, which was not given"
                            + (outcome.reason.map { " (\($0))." } ?? ".")
                        answer(.success((denial ?? ToolAnswer(text: text, isError: true)).json))
                        return
                    }
                    var final = plan.answer(result)
                    if let denial { final = ToolAnswer(text: final.text + "\n" + denial.text, isError: true) }
                    answer(.success(final.json))
                }
            }
        } catch {
            answer(.failure(error))
        }
    }

    /// Tells the `tools/call` waiting for this batch (if any) how it went on after its approval: `result` is the
    /// rest of the batch, nil when the approval was denied without an answer (`reason` says why).
    func batchContinued(_ batchId: String, result: JSONValue?, reason: String? = nil) {
        let outcome = BatchContinuation(result: result, reason: reason)
        let waiting = state.withLock { state -> CheckedContinuation<BatchContinuation, Never>? in
            switch state.batchWaiters[batchId] {
            case nil:
                return nil
            case .waiting(let continuation)?:
                state.batchWaiters[batchId] = nil
                return continuation
            case .expecting?, .continued?:
                state.batchWaiters[batchId] = .continued(outcome)
                return nil
            }
        }
        waiting?.resume(returning: outcome)
    }

    /// Waits until `batchContinued` reports on the batch (at once when it already has).
    func continuation(of batchId: String) async -> BatchContinuation {
        await withCheckedContinuation { continuation in
            let early = state.withLock { state -> BatchContinuation? in
                if case .continued(let outcome)? = state.batchWaiters[batchId] {
                    state.batchWaiters[batchId] = nil
                    return outcome
                }
                state.batchWaiters[batchId] = .waiting(continuation)
                return nil
            }
            if let early { continuation.resume(returning: early) }
        }
    }

    /// Where approvals cannot be answered, an `ask` is denied at once (audited like a timeout): what to tell the
    /// caller, with the policy change that would allow it. The batch reports how it went on (`batchContinued`).
    func denyAtOnce(_ batchId: String, plan: ToolPlan) -> ToolAnswer {
        guard let pending = state.withLock({ $0.approvals.values.first { $0.batchId == batchId } }) else {
            return ToolAnswer(text: "Denied: the \(plan.name) call needed a person's approval.", isError: true)
        }
        expire(pending.approvalId, .unanswerable)
        var change = pending.decision.suggestion
        for prefix in ["approve it, or ", "approve it"] where change.hasPrefix(prefix) {
            change = String(change.dropFirst(prefix.count))
        }
        var text =
            "Denied: the space's policy asks a person before it will \(pending.what), and this MCP session "
            + "cannot ask anyone.\nrule: \(pending.decision.rule)\nreason: \(pending.decision.reason)"
        text +=
            change.isEmpty
            ? "\nTo allow it, start the session with a policy that allows it (--policy or --space-config)."
            : "\nTo allow it, start the session with a policy that does: \(change) (--space-config)."
        return ToolAnswer(text: text, isError: true)
    }

    /// `prepareSubmit` names fields as `params.operations[0].…`; a tool's caller sent them as arguments.
    static func renamingOperationFields<Value>(
        _ argumentsPath: String, _ body: () throws(RPCError) -> Value
    ) throws(RPCError) -> Value {
        do {
            return try body()
        } catch {
            let prefix = "params.operations[0]"
            guard let field = error.field, field.hasPrefix(prefix) else { throw error }
            var renamed = error
            renamed.field = argumentsPath + field.dropFirst(prefix.count)
            renamed.message = error.message.replacing(prefix, with: argumentsPath)
            throw renamed
        }
    }
}
