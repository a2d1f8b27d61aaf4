/// Reads typed fields out of a params object, naming the exact field in every error.
///
/// `Params(value, path: "params")` then `try params.string("spaceId")` either returns the value or throws
/// `-32602` with `field: "params.spaceId"` and a hint. Unknown keys are rejected by ``rejectUnknown(allowed:)``
/// where the protocol is strict (operations), and ignored elsewhere.
public struct Params: Sendable {
    public let members: [String: JSONValue]
    public let path: String

    public init(_ value: JSONValue?, path: String) throws(RPCError) {
        switch value {
        case .object(let members)?:
            self.members = members
        case nil, .null?:
            self.members = [:]
        case let other?:
            throw RPCError.invalidParams(
                path, "expected an object, got \(other.typeName)", hint: "send \(path) as a JSON object")
        }
        self.path = path
    }

    public init(members: [String: JSONValue], path: String) {
        self.members = members
        self.path = path
    }

    /// `path.key`, or `path["key"]` when the key is not an identifier (`files["notes.md"]`).
    public func fieldPath(_ key: String) -> String {
        let isIdentifier =
            key.utf8.first.map { !($0 >= 0x30 && $0 <= 0x39) } ?? false
            && key.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F
            }
        return isIdentifier ? "\(path).\(key)" : "\(path)[\(JSONValue.string(key).encoded())]"
    }

    public func has(_ key: String) -> Bool {
        if let value = members[key], !value.isNull { return true }
        return false
    }

    func mismatch(_ key: String, expected: String, got value: JSONValue) -> RPCError {
        RPCError.invalidParams(
            fieldPath(key), "expected \(expected), got \(value.typeName)",
            hint: "send \(fieldPath(key)) as \(expected)")
    }

    func missing(_ key: String, expected: String) -> RPCError {
        RPCError.invalidParams(
            fieldPath(key), "missing required field", hint: "add \(fieldPath(key)) (\(expected)) to the request")
    }

    public func string(_ key: String) throws(RPCError) -> String {
        guard let value = try optionalString(key) else { throw missing(key, expected: "a string") }
        return value
    }

    public func optionalString(_ key: String) throws(RPCError) -> String? {
        guard let value = members[key], !value.isNull else { return nil }
        guard case .string(let text) = value else { throw mismatch(key, expected: "a string", got: value) }
        return text
    }

    public func nonEmptyString(_ key: String) throws(RPCError) -> String {
        let value = try string(key)
        if value.isEmpty {
            throw RPCError.invalidParams(
                fieldPath(key), "must not be empty", hint: "send a non-empty string as \(fieldPath(key))")
        }
        return value
    }

    public func optionalBool(_ key: String) throws(RPCError) -> Bool? {
        guard let value = members[key], !value.isNull else { return nil }
        guard case .bool(let flag) = value else { throw mismatch(key, expected: "true or false", got: value) }
        return flag
    }

    public func optionalInt(_ key: String, in range: ClosedRange<Int>) throws(RPCError) -> Int? {
        guard let value = members[key], !value.isNull else { return nil }
        guard let number = value.intValue else { throw mismatch(key, expected: "an integer", got: value) }
        guard range.contains(number) else {
            throw RPCError.invalidParams(
                fieldPath(key), "\(number) is out of range",
                hint: "send an integer from \(range.lowerBound) to \(range.upperBound) as \(fieldPath(key))")
        }
        return number
    }

    public func optionalObject(_ key: String) throws(RPCError) -> Params? {
        guard let value = members[key], !value.isNull else { return nil }
        guard case .object(let object) = value else { throw mismatch(key, expected: "an object", got: value) }
        return Params(members: object, path: fieldPath(key))
    }

    public func optionalArray(_ key: String) throws(RPCError) -> [JSONValue]? {
        guard let value = members[key], !value.isNull else { return nil }
        guard case .array(let elements) = value else { throw mismatch(key, expected: "an array", got: value) }
        return elements
    }

    public func optionalStringArray(_ key: String) throws(RPCError) -> [String]? {
        guard let elements = try optionalArray(key) else { return nil }
        var strings: [String] = []
        strings.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            guard case .string(let text) = element else {
                throw RPCError.invalidParams(
                    "\(fieldPath(key))[\(index)]", "expected a string, got \(element.typeName)",
                    hint: "send \(fieldPath(key)) as an array of strings")
            }
            strings.append(text)
        }
        return strings
    }

    public func optionalStringMap(_ key: String) throws(RPCError) -> [String: String]? {
        guard let object = try optionalObject(key) else { return nil }
        var map: [String: String] = [:]
        for (name, value) in object.members {
            guard case .string(let text) = value else {
                throw RPCError.invalidParams(
                    object.fieldPath(name), "expected a string, got \(value.typeName)",
                    hint: "send \(object.path) as an object whose values are strings")
            }
            map[name] = text
        }
        return map
    }

    public func oneOf(_ key: String, _ allowed: [String]) throws(RPCError) -> String? {
        guard let value = try optionalString(key) else { return nil }
        guard allowed.contains(value) else {
            throw RPCError.invalidParams(
                fieldPath(key), "'\(value)' is not one of \(allowed.joined(separator: ", "))",
                hint: "send one of \(allowed.map { "\"\($0)\"" }.joined(separator: ", ")) as \(fieldPath(key))")
        }
        return value
    }

    /// Rejects keys the protocol does not define here, naming the first unknown one.
    public func rejectUnknown(allowed: Set<String>) throws(RPCError) {
        for key in members.keys.sorted() where !allowed.contains(key) {
            throw RPCError.invalidParams(
                fieldPath(key), "unknown field '\(key)'",
                hint: "remove it; allowed fields here are \(allowed.sorted().joined(separator: ", "))")
        }
    }
}
