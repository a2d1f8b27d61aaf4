import SpacesProtocol

/// A capability: a named code API that programs in a space import (`import { crm } from "spaces:capabilities"`)
/// and call. Every call crosses to the engine, which checks, audits and dispatches it to the handler.
struct CapabilityDeclaration: Sendable {
    /// What a method does to the world it reaches; the policy's `capabilities.effects` decides by it when no
    /// pattern names the call. A method that does not say is `destructive`.
    enum Effect: String, Sendable, CaseIterable {
        case read, write, destructive
    }

    struct Method: Sendable {
        var name: String
        var description: String?
        /// JSON Schemas; nil accepts anything.
        var params: JSONValue?
        var result: JSONValue?
        var effect: Effect
        /// `http` handlers: the request for this method (default `POST /<method>`).
        var http: HTTPRoute?
    }

    struct HTTPRoute: Sendable, Equatable {
        var method: String
        /// A path template: `{name}` is replaced by the URL-encoded param `name`.
        var path: String
    }

    enum Handler: Sendable {
        /// The embedding client answers `capabilities/invoke`.
        case client(timeoutMs: Int)
        /// The engine calls an HTTP API itself; header values may hold `${secret:NAME}`.
        case http(baseURL: String, headers: [(name: String, value: String)], timeoutMs: Int)
        /// The engine runs an MCP server on the host (one per space) and calls its tools.
        case mcp(command: [String], env: [String: String], cwd: String?, timeoutMs: Int)

        var kind: String {
            switch self {
            case .client: "client"
            case .http: "http"
            case .mcp: "mcp"
            }
        }

        var timeoutMs: Int {
            switch self {
            case .client(let timeoutMs), .http(_, _, let timeoutMs), .mcp(_, _, _, let timeoutMs): timeoutMs
            }
        }
    }

    var name: String
    var description: String?
    /// In declaration order (sorted by name: JSON objects have no order).
    var methods: [Method]
    var handler: Handler

    func method(_ name: String) -> Method? { methods.first { $0.name == name } }

    static let defaultTimeoutMs = 30_000
    /// Names a program cannot import as a capability: the module's own exports and JavaScript's reserved words.
    static let reservedNames: Set<String> = [
        "default", "CapabilityError", "capabilities", "call", "await", "break", "case", "catch", "class", "const",
        "continue", "debugger", "delete", "do", "else", "enum", "export", "extends", "false", "finally", "for",
        "function", "if", "import", "in", "instanceof", "new", "null", "return", "super", "switch", "this", "throw",
        "true", "try", "typeof", "var", "void", "while", "with", "yield", "let", "static", "implements", "interface",
        "package", "private", "protected", "public", "arguments", "eval", "Error", "Promise", "undefined", "NaN",
        "Infinity", "globalThis",
    ]
    static let maxCapabilities = 64
    static let maxMethods = 256

    /// A capability name: a JavaScript identifier of ASCII letters, digits and `_`, not starting with a digit.
    static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), let first = name.utf8.first, !(0x30...0x39).contains(first) else {
            return false
        }
        return name.utf8.allSatisfy { isWordByte($0) } && !reservedNames.contains(name)
    }

    /// A method name: letters, digits, `_` and `-` (MCP tools often use `-`), not starting with a digit or `-`.
    static func isValidMethodName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), let first = name.utf8.first, !(0x30...0x39).contains(first),
            first != 0x2D
        else { return false }
        return name.utf8.allSatisfy { isWordByte($0) || $0 == 0x2D }
    }

    private static func isWordByte(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x5F
    }
}

// MARK: Parsing

extension CapabilityDeclaration {
    /// Parses `params.capabilities` of `spaces/create`: throws `-32602` naming the field at fault. `secrets` are
    /// the names the space declares; a handler may reference only those.
    static func parseList(_ values: [JSONValue]?, path: String, secrets: Set<String>) throws(RPCError)
        -> [CapabilityDeclaration]
    {
        guard let values else { return [] }
        guard values.count <= maxCapabilities else {
            throw RPCError.invalidParams(
                path, "a space takes at most \(maxCapabilities) capabilities, got \(values.count)",
                hint: "group related methods into fewer capabilities")
        }
        var result: [CapabilityDeclaration] = []
        for (index, value) in values.enumerated() {
            let declaration = try parse(value, path: "\(path)[\(index)]", secrets: secrets)
            if result.contains(where: { $0.name == declaration.name }) {
                throw RPCError.invalidParams(
                    "\(path)[\(index)].name", "a capability named '\(declaration.name)' is declared twice",
                    hint: "give each capability its own name")
            }
            result.append(declaration)
        }
        return result
    }

    static func parse(_ value: JSONValue, path: String, secrets: Set<String>) throws(RPCError)
        -> CapabilityDeclaration
    {
        let params = try Params(value, path: path)
        try params.rejectUnknown(allowed: ["name", "description", "methods", "handler"])
        let name = try params.string("name")
        guard isValidName(name) else {
            throw RPCError.invalidParams(
                params.fieldPath("name"), "'\(name)' cannot be a capability name",
                hint:
                    "use a JavaScript identifier of letters, digits and '_' (1 to 64, not starting with a digit, not a reserved word), e.g. \"crm\""
            )
        }
        let description = try params.optionalString("description")
        let handlerParams = try Params(params.members["handler"], path: params.fieldPath("handler"))
        guard params.has("handler") else {
            throw RPCError.invalidParams(
                params.fieldPath("handler"), "missing required field",
                hint: "add handler: {\"kind\": \"client\"} (your client answers), \"http\" or \"mcp\"")
        }
        let handler = try parseHandler(handlerParams, secrets: secrets)
        var methods: [Method] = []
        if let methodsParams = try params.optionalObject("methods") {
            guard methodsParams.members.count <= maxMethods else {
                throw RPCError.invalidParams(
                    params.fieldPath("methods"), "a capability has at most \(maxMethods) methods",
                    hint: "split it into several capabilities")
            }
            for methodName in methodsParams.members.keys.sorted() {
                methods.append(try parseMethod(methodName, in: methodsParams, handler: handler))
            }
        }
        if methods.isEmpty, handler.kind != "mcp" {
            throw RPCError.invalidParams(
                params.fieldPath("methods"), "a capability needs at least one method",
                hint: "add methods: {\"search\": {\"params\": {…}, \"result\": {…}, \"effect\": \"read\"}}")
        }
        return CapabilityDeclaration(name: name, description: description, methods: methods, handler: handler)
    }

    static func parseMethod(_ name: String, in methods: Params, handler: Handler) throws(RPCError) -> Method {
        let field = methods.fieldPath(name)
        guard isValidMethodName(name) else {
            throw RPCError.invalidParams(
                field, "'\(name)' cannot be a method name",
                hint: "use letters, digits, '_' and '-' (1 to 64, starting with a letter or '_')")
        }
        let params = try Params(methods.members[name], path: field)
        try params.rejectUnknown(allowed: ["description", "params", "result", "effect", "http"])
        let effect = Effect(rawValue: try params.oneOf("effect", Effect.allCases.map(\.rawValue)) ?? "destructive")!
        var method = Method(
            name: name, description: try params.optionalString("description"), params: nil, result: nil,
            effect: effect, http: nil)
        for key in ["params", "result"] {
            guard let schema = params.members[key], !schema.isNull else { continue }
            try checkSchema(schema, field: params.fieldPath(key))
            if key == "params" { method.params = schema } else { method.result = schema }
        }
        if let route = try params.optionalObject("http") {
            guard case .http = handler else {
                throw RPCError.invalidParams(
                    params.fieldPath("http"), "only methods of an http handler take an http route",
                    hint: "remove http, or use handler {\"kind\": \"http\", \"baseUrl\": …}")
            }
            try route.rejectUnknown(allowed: ["method", "path"])
            let verb = try route.oneOf("method", ["GET", "POST", "PUT", "PATCH", "DELETE"]) ?? "POST"
            let path = try route.optionalString("path") ?? "/\(name)"
            guard path.hasPrefix("/"), !path.contains("#") else {
                throw RPCError.invalidParams(
                    route.fieldPath("path"), "'\(path)' is not a path template",
                    hint: "start it with '/', e.g. \"/customers/{id}\"")
            }
            method.http = HTTPRoute(method: verb, path: path)
        }
        return method
    }

    /// A schema must be an object (or a boolean) that our validator can load.
    static func checkSchema(_ schema: JSONValue, field: String) throws(RPCError) {
        switch schema {
        case .object, .bool: break
        default:
            throw RPCError.invalidParams(
                field, "a JSON Schema is an object or a boolean, got \(schema.typeName)",
                hint: "write e.g. {\"type\": \"object\", \"properties\": {\"q\": {\"type\": \"string\"}}}")
        }
        if let problem = JSONSchemaValidator.problem(in: schema) {
            throw RPCError.invalidParams(field, "the schema is not usable: \(problem)", hint: "fix the schema")
        }
    }

    static func parseHandler(_ params: Params, secrets: Set<String>) throws(RPCError) -> Handler {
        guard let kind = try params.oneOf("kind", ["client", "http", "mcp"]) else {
            throw RPCError.invalidParams(
                params.fieldPath("kind"), "missing required field",
                hint: "say who answers the calls: \"client\", \"http\" or \"mcp\"")
        }
        let timeoutMs = try params.optionalInt("timeoutMs", in: 1...600_000) ?? defaultTimeoutMs
        switch kind {
        case "client":
            try params.rejectUnknown(allowed: ["kind", "timeoutMs"])
            return .client(timeoutMs: timeoutMs)
        case "http":
            try params.rejectUnknown(allowed: ["kind", "baseUrl", "headers", "timeoutMs"])
            let baseURL = try params.string("baseUrl")
            guard baseURL.hasPrefix("http://") || baseURL.hasPrefix("https://"), baseURL.count > 8,
                !baseURL.contains(" ")
            else {
                throw RPCError.invalidParams(
                    params.fieldPath("baseUrl"), "'\(baseURL)' is not an http or https URL",
                    hint: "write e.g. \"https://api.example.com/v1\"")
            }
            var headers: [(String, String)] = []
            let headerMap = try params.optionalStringMap("headers") ?? [:]
            let headerParams = Params(members: [:], path: params.fieldPath("headers"))
            for (header, value) in headerMap.sorted(by: { $0.key < $1.key }) {
                guard !header.isEmpty, header.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x3A }) else {
                    throw RPCError.invalidParams(
                        headerParams.fieldPath(header), "'\(header)' is not an HTTP header name",
                        hint: "use a token such as \"Authorization\"")
                }
                try checkSecretReferences(value, field: headerParams.fieldPath(header), secrets: secrets)
                headers.append((header, value))
            }
            return .http(baseURL: baseURL, headers: headers, timeoutMs: timeoutMs)
        default:
            try params.rejectUnknown(allowed: ["kind", "command", "env", "cwd", "timeoutMs"])
            guard let command = try params.optionalStringArray("command"), !command.isEmpty else {
                throw RPCError.invalidParams(
                    params.fieldPath("command"), "missing or empty",
                    hint: "give the command line that starts the MCP server, e.g. [\"python3\", \"server.py\"]")
            }
            let env = try params.optionalStringMap("env") ?? [:]
            let envParams = Params(members: [:], path: params.fieldPath("env"))
            for (key, value) in env {
                try checkSecretReferences(value, field: envParams.fieldPath(key), secrets: secrets)
            }
            let cwd = try params.optionalString("cwd")
            if let cwd, !cwd.hasPrefix("/") {
                throw RPCError.invalidParams(
                    params.fieldPath("cwd"), "'\(cwd)' is not an absolute path",
                    hint: "give the server's working directory on the engine's host as an absolute path")
            }
            return .mcp(command: command, env: env, cwd: cwd, timeoutMs: timeoutMs)
        }
    }

    /// `${secret:NAME}` must name a secret of the space.
    static func checkSecretReferences(_ value: String, field: String, secrets: Set<String>) throws(RPCError) {
        for name in secretNames(in: value) where !secrets.contains(name) {
            throw RPCError.invalidParams(
                field, "references ${secret:\(name)}, which this space does not declare",
                hint: "declare it in spaces/create: secrets: {\"\(name)\": {\"env\": \"VARIABLE\"}}")
        }
    }

    /// The names in every `${secret:NAME}` of a text.
    static func secretNames(in text: String) -> [String] {
        text.split(separator: "${secret:", omittingEmptySubsequences: false).dropFirst().compactMap { part in
            part.firstIndex(of: "}").map { String(part[..<$0]) }
        }
    }

    /// The text with every `${secret:NAME}` replaced by the secret's value (on the host only).
    static func fillSecrets(_ text: String, values: [String: String]) -> String {
        var result = text
        for name in secretNames(in: text) {
            result = result.replacing("${secret:\(name)}", with: values[name] ?? "")
        }
        return result
    }
}

// MARK: JSON

extension CapabilityDeclaration {
    /// As stored in the space's record and shown in the Space object (secrets stay references).
    var json: JSONValue {
        var methodsJSON: [String: JSONValue] = [:]
        for method in methods {
            var fields: [String: JSONValue] = ["effect": .string(method.effect.rawValue)]
            if let description = method.description { fields["description"] = .string(description) }
            if let params = method.params { fields["params"] = params }
            if let result = method.result { fields["result"] = result }
            if let http = method.http { fields["http"] = ["method": .string(http.method), "path": .string(http.path)] }
            methodsJSON[method.name] = .object(fields)
        }
        var handlerJSON: [String: JSONValue] = [
            "kind": .string(handler.kind), "timeoutMs": JSONValue(handler.timeoutMs),
        ]
        switch handler {
        case .client: break
        case .http(let baseURL, let headers, _):
            handlerJSON["baseUrl"] = .string(baseURL)
            handlerJSON["headers"] = .object(
                Dictionary(uniqueKeysWithValues: headers.map { ($0.name, .string($0.value)) }))
        case .mcp(let command, let env, let cwd, _):
            handlerJSON["command"] = .array(command.map(JSONValue.string))
            handlerJSON["env"] = .object(env.mapValues(JSONValue.string))
            if let cwd { handlerJSON["cwd"] = .string(cwd) }
        }
        var result: [String: JSONValue] = [
            "name": .string(name), "methods": .object(methodsJSON), "handler": .object(handlerJSON),
        ]
        if let description { result["description"] = .string(description) }
        return .object(result)
    }

    /// What a program in the space learns about the capabilities: names and methods, no handler details.
    static func manifest(_ capabilities: [CapabilityDeclaration]) -> JSONValue {
        .array(
            capabilities.map { capability in
                ["name": .string(capability.name), "methods": .array(capability.methods.map { .string($0.name) })]
            })
    }
}

/// Why a capability call failed, as the calling program sees it (`CapabilityError.code`).
struct CapabilityFailure: Error, Sendable {
    enum Code: String, Sendable {
        case denied = "DENIED"
        case approvalDenied = "APPROVAL_DENIED"
        case invalidParams = "INVALID_PARAMS"
        case handlerError = "HANDLER_ERROR"
        case timeout = "TIMEOUT"
        case resultTooLarge = "RESULT_TOO_LARGE"
    }

    var code: Code
    var message: String
    var hint: String

    init(_ code: Code, _ message: String, hint: String) {
        self.code = code
        self.message = message
        self.hint = hint
    }

    var json: JSONValue { ["code": .string(code.rawValue), "message": .string(message), "hint": .string(hint)] }
}

/// Performs calls for one handler kind, on the host. Implementations bound their own time by `timeoutMs`.
protocol CapabilityHandler: Sendable {
    /// Calls `method` with params already checked against its schema; the result is checked by the caller.
    /// `secrets` holds the space's secret values by name, for filling `${secret:NAME}`.
    func call(
        capability: CapabilityDeclaration, method: CapabilityDeclaration.Method, params: JSONValue,
        secrets: [String: String]
    ) async -> Result<JSONValue, CapabilityFailure>

    /// Stops whatever the handler keeps running for the space (an MCP server); called when the space goes away.
    func stop() async
}
