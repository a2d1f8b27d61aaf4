public import SpacesProtocol

/// Compares an actual message with an expected one, placeholders and captures included.
public struct Matcher: Sendable {
    /// Values captured by `"$name"` placeholders, kept across the steps of a case.
    public var captures: [String: JSONValue] = [:]

    public init() {}

    /// The first difference, as a path and a reason; nil when they match. Captures are kept only on a match.
    public mutating func mismatch(expected: JSONValue, actual: JSONValue) -> String? {
        var trial = captures
        if let difference = Self.compare(expected, actual, path: "$", captures: &trial) { return difference }
        captures = trial
        return nil
    }

    /// Replaces each `"$name"` in a line to send with the captured value's JSON.
    public func substitute(_ line: String) -> String {
        guard line.contains("\"$") else { return line }
        var result = line
        for (name, value) in captures.sorted(by: { $0.key.count > $1.key.count }) {
            result = result.replacingAll("\"$\(name)\"", with: value.encoded(sortedKeys: true))
        }
        return result
    }

    static func compare(_ expected: JSONValue, _ actual: JSONValue, path: String, captures: inout [String: JSONValue])
        -> String?
    {
        switch expected {
        case .string(let text) where text.hasPrefix("$") && text.count > 1:
            let name = String(text.dropFirst())
            if let captured = captures[name] {
                return captured == actual ? nil : "\(path): expected $\(name) = \(captured), got \(actual)"
            }
            captures[name] = actual
            return nil
        case .string(let text) where text.hasPrefix("<") && text.hasSuffix(">"):
            return placeholder(String(text.dropFirst().dropLast()), actual, path: path)
        case .object(let expectedMembers):
            guard case .object(let actualMembers) = actual else {
                return "\(path): expected an object, got \(actual)"
            }
            for key in expectedMembers.keys.sorted() {
                guard let actualValue = actualMembers[key] else { return "\(path).\(key): missing" }
                if let difference = compare(
                    expectedMembers[key]!, actualValue, path: "\(path).\(key)", captures: &captures)
                {
                    return difference
                }
            }
            for key in actualMembers.keys.sorted() where expectedMembers[key] == nil {
                return "\(path).\(key): unexpected \(actualMembers[key]!)"
            }
            return nil
        case .array(let expectedElements):
            guard case .array(let actualElements) = actual else { return "\(path): expected an array, got \(actual)" }
            guard expectedElements.count == actualElements.count else {
                return "\(path): expected \(expectedElements.count) elements, got \(actualElements.count): \(actual)"
            }
            for (index, element) in expectedElements.enumerated() {
                if let difference = compare(
                    element, actualElements[index], path: "\(path)[\(index)]", captures: &captures)
                {
                    return difference
                }
            }
            return nil
        default:
            return expected == actual ? nil : "\(path): expected \(expected), got \(actual)"
        }
    }

    static func placeholder(_ kind: String, _ actual: JSONValue, path: String) -> String? {
        let ok: Bool
        switch kind {
        case "any": ok = true
        case "string": ok = actual.stringValue != nil
        case "number": ok = actual.doubleValue != nil
        case "int": ok = actual.intValue != nil
        case "bool": ok = actual.boolValue != nil
        case "time": ok = actual.stringValue.map(isTimestamp) ?? false
        case "sha256": ok = actual.stringValue.map { $0.utf8.count == 64 && $0.utf8.allSatisfy(isHex) } ?? false
        default:
            if kind.hasPrefix("id:") {
                let prefix = String(kind.dropFirst(3))
                ok = actual.stringValue.map { $0.hasPrefix(prefix) && isHexTail($0.dropFirst(prefix.count)) } ?? false
            } else {
                return "\(path): unknown placeholder <\(kind)>"
            }
        }
        return ok ? nil : "\(path): expected <\(kind)>, got \(actual)"
    }

    static func isHex(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66)
    }

    static func isHexTail(_ text: Substring) -> Bool { text.utf8.count == 16 && text.utf8.allSatisfy(isHex) }

    /// `2026-11-26T00:17:12.123Z`
    static func isTimestamp(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 24 else { return false }
        for (index, byte) in bytes.enumerated() {
            switch index {
            case 4, 7: if byte != UInt8(ascii: "-") { return false }
            case 10: if byte != UInt8(ascii: "T") { return false }
            case 13, 16: if byte != UInt8(ascii: ":") { return false }
            case 19: if byte != UInt8(ascii: ".") { return false }
            case 23: if byte != UInt8(ascii: "Z") { return false }
            default: if !(byte >= 0x30 && byte <= 0x39) { return false }
            }
        }
        return true
    }
}

extension String {
    /// Every occurrence of `target` replaced (the standard library has no such method without Foundation).
    public func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }
}
