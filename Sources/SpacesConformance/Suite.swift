import SpacesProtocol

/// Glue between the runner and the protocol's JSON Schema.
public enum ConformanceSuite {
    public struct SchemaError: Error, CustomStringConvertible {
        public var description: String
    }

    /// A validator for every message an engine writes: responses by the method of their request,
    /// notifications by their method, requests (`capabilities/invoke`) by theirs, which must be one the engine
    /// sends.
    public static func schemaValidator(path: String) throws(SchemaError) -> ConformanceRunner.Validator {
        guard let text = FixtureLoader.readFile(path) else {
            throw SchemaError(description: "cannot read the schema at \(path); pass --schema")
        }
        let document: JSONValue
        do {
            document = try JSONValue.parse(text)
        } catch {
            throw SchemaError(description: "\(path) is not valid JSON: \(error)")
        }
        let schema = ProtocolSchema(document: document)
        return { message, direction, method in
            guard direction == .received else { return [] }
            guard let name = message["method"]?.stringValue else {
                return schema.validateResponse(message, method: method).map(\.description)
            }
            if message["id"] == nil { return schema.validateNotification(message).map(\.description) }
            let problems = schema.validateRequest(message).map(\.description)
            return schema.engineMethods.contains(name) || !schema.methods.contains(name)
                ? problems : problems + ["method: the engine sent \(name), a method only the client sends"]
        }
    }
}
