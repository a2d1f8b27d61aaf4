import SpacesProtocol

/// Glue between the runner and the protocol's JSON Schema.
public enum ConformanceSuite {
    public struct SchemaError: Error, CustomStringConvertible {
        public var description: String
    }

    /// A validator for every message an engine writes: responses by the method of their request,
    /// notifications by their method.
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
            let violations: [SchemaViolation] =
                message["method"] != nil && message["id"] == nil
                ? schema.validateNotification(message) : schema.validateResponse(message, method: method)
            return violations.map(\.description)
        }
    }
}
