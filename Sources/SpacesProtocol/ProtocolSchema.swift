/// The protocol's JSON Schema (`Schemas/protocol.schema.json`) put to work on whole messages.
///
/// The document's `x-methods` table maps each method to its params and result definitions, `x-notifications`
/// each notification to its params; this type checks a message's JSON-RPC envelope and then its params or
/// result by method. Paths in violations start at the message: `params.operations[0].path`, `result.events[2]`.
/// It does no I/O: whoever holds the schema text parses it and passes the value in.
public struct ProtocolSchema: Sendable {
    /// One entry of `x-methods` or `x-notifications`.
    struct Entry: Sendable {
        var params: String
        var result: String?
        /// `engine-to-client` for what the engine sends (`capabilities/invoke`, `events/emitted`).
        var direction: String
        /// `served`, or `planned` for methods this engine version answers with -32601.
        var status: String
    }

    public let validator: JSONSchemaValidator
    /// Every method in `x-methods`, sorted.
    public let methods: [String]
    /// Every notification in `x-notifications`, sorted.
    public let notifications: [String]
    /// The methods whose `status` is `planned`: defined by the protocol, not yet served (-32601), sorted.
    public let plannedMethods: [String]
    /// The methods the engine sends to the client (`direction: engine-to-client`, `capabilities/invoke`), sorted.
    public let engineMethods: [String]

    private let methodTable: [String: Entry]
    private let notificationTable: [String: Entry]

    public init(document: JSONValue) {
        validator = JSONSchemaValidator(document: document)
        methodTable = Self.entries(document["x-methods"])
        notificationTable = Self.entries(document["x-notifications"])
        methods = methodTable.keys.sorted()
        notifications = notificationTable.keys.sorted()
        plannedMethods = methodTable.filter { $0.value.status == "planned" }.keys.sorted()
        engineMethods = methodTable.filter { $0.value.direction == "engine-to-client" }.keys.sorted()
    }

    /// Reads a method table; an entry is `{"params": "#/$defs/…", "result": "#/$defs/…", …}` or just the params
    /// pointer as a string.
    private static func entries(_ table: JSONValue?) -> [String: Entry] {
        var entries: [String: Entry] = [:]
        for (name, value) in table?.objectValue ?? [:] {
            if let params = value.stringValue {
                entries[name] = Entry(params: params, result: nil, direction: "client-to-engine", status: "served")
            } else if let params = value["params"]?.stringValue {
                entries[name] = Entry(
                    params: params,
                    result: value["result"]?.stringValue,
                    direction: value["direction"]?.stringValue ?? "client-to-engine",
                    status: value["status"]?.stringValue ?? "served"
                )
            }
        }
        return entries
    }

    /// The violations of a request: its envelope (`$defs/Request`), its method (one of ``methods``), and its
    /// params (an absent `params` is checked as `{}`).
    public func validateRequest(_ message: JSONValue) -> [SchemaViolation] {
        guard case .object(let members) = message else {
            return [SchemaViolation(instancePath: "", message: "expected a request object, got \(message.typeName)")]
        }
        var violations = validator.validate(message, schemaAt: "#/$defs/Request")
        guard let method = members["method"]?.stringValue else { return violations }
        guard let entry = methodTable[method] else {
            violations.append(unknown("method", method, known: methods))
            return violations
        }
        let params = members["params"] ?? .object([:])
        if case .object = params {
            violations += validator.validate(params, schemaAt: entry.params, instancePath: "params")
        }
        return violations
    }

    /// The violations of a response to a request for `method` (nil when unknown or unreadable).
    ///
    /// An error response is checked against `$defs/ErrorResponse`, or `$defs/ClientErrorResponse` for a method
    /// the client serves; its method may be any, known or not (`-32601` answers unknown ones). A success
    /// response is checked against `$defs/SuccessResponse` and, when `method` is given, its result against the
    /// method's result definition; a success for a method the protocol does not define is a violation.
    public func validateResponse(_ message: JSONValue, method: String?) -> [SchemaViolation] {
        guard case .object(let members) = message else {
            return [SchemaViolation(instancePath: "", message: "expected a response object, got \(message.typeName)")]
        }
        let entry = method.flatMap { methodTable[$0] }
        if members["error"] != nil {
            let definition = entry?.direction == "engine-to-client" ? "ClientErrorResponse" : "ErrorResponse"
            return validator.validate(message, schemaAt: "#/$defs/\(definition)")
        }
        var violations = validator.validate(message, schemaAt: "#/$defs/SuccessResponse")
        if let method, entry == nil {
            violations.append(unknown("", method, known: methods))
        } else if let result = members["result"], let pointer = entry?.result {
            violations += validator.validate(result, schemaAt: pointer, instancePath: "result")
        }
        return violations
    }

    /// The violations of a notification: its envelope (`$defs/Notification`), its method (one of
    /// ``notifications``), and its params (an absent `params` is checked as `{}`).
    public func validateNotification(_ message: JSONValue) -> [SchemaViolation] {
        guard case .object(let members) = message else {
            return [
                SchemaViolation(instancePath: "", message: "expected a notification object, got \(message.typeName)")
            ]
        }
        var violations = validator.validate(message, schemaAt: "#/$defs/Notification")
        guard let method = members["method"]?.stringValue else { return violations }
        guard let entry = notificationTable[method] else {
            violations.append(unknown("method", method, known: notifications))
            return violations
        }
        let params = members["params"] ?? .object([:])
        if case .object = params {
            violations += validator.validate(params, schemaAt: entry.params, instancePath: "params")
        }
        return violations
    }

    /// The violations of `instance` against `#/$defs/<name>` (`Space`, `Event`, `Operation`, …).
    public func validate(_ instance: JSONValue, def name: String) -> [SchemaViolation] {
        let token = name.replacing("%", with: "%25").replacing("~", with: "~0").replacing("/", with: "~1")
        return validator.validate(instance, schemaAt: "#/$defs/\(token)")
    }

    private func unknown(_ path: String, _ method: String, known: [String]) -> SchemaViolation {
        SchemaViolation(
            instancePath: path,
            message: "unknown method '\(method)' (known: \(known.joined(separator: ", ")))"
        )
    }
}
