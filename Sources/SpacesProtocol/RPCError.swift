/// A JSON-RPC error as the engine answers it: a code, a message, and data telling the caller how to fix it.
///
/// Errors are built deep in the engine with a ``Code``; the JSON shape is chosen only here, at the edge.
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable {
        public var rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }

        public static let parseError = Code(rawValue: -32700)
        public static let invalidRequest = Code(rawValue: -32600)
        public static let methodNotFound = Code(rawValue: -32601)
        public static let invalidParams = Code(rawValue: -32602)
        public static let internalError = Code(rawValue: -32603)
        public static let notInitialized = Code(rawValue: -32002)
        public static let spaceNotFound = Code(rawValue: -32010)
        public static let runNotFound = Code(rawValue: -32011)
        public static let approvalNotFound = Code(rawValue: -32012)
        public static let busy = Code(rawValue: -32013)
        public static let isolationUnavailable = Code(rawValue: -32020)
    }

    public var code: Code
    public var message: String
    /// A sentence telling the caller what to do.
    public var hint: String
    /// The offending field as a path into the request (`params.operations[2].path`), when one field is at fault.
    public var field: String?

    public init(_ code: Code, _ message: String, hint: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
        self.field = field
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public var json: JSONValue {
        var data: [String: JSONValue] = ["hint": .string(hint)]
        if let field { data["field"] = .string(field) }
        return ["code": JSONValue(code.rawValue), "message": .string(message), "data": .object(data)]
    }

    public static func invalidParams(_ field: String, _ message: String, hint: String) -> RPCError {
        RPCError(.invalidParams, "\(field): \(message)", hint: hint, field: field)
    }

    public static func spaceNotFound(_ spaceId: String) -> RPCError {
        RPCError(
            .spaceNotFound, "no space with id '\(spaceId)'",
            hint: "call spaces/list to see the spaces this engine knows, or spaces/create to make one",
            field: "params.spaceId")
    }
}

/// A JSON-RPC message envelope, built for the output side.
public enum RPCMessage {
    public static func response(id: JSONValue, result: JSONValue) -> JSONValue {
        ["jsonrpc": "2.0", "id": id, "result": result]
    }

    public static func error(id: JSONValue, _ error: RPCError) -> JSONValue {
        ["jsonrpc": "2.0", "id": id, "error": error.json]
    }

    public static func notification(method: String, params: JSONValue) -> JSONValue {
        ["jsonrpc": "2.0", "method": .string(method), "params": params]
    }
}
