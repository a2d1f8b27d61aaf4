import SpacesProtocol

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// A space's secrets: declared by reference (`{env: NAME}` or `{file: PATH}` on the engine's host), resolved
/// by the engine, given to a command only when it names them, and never sent back: every output is passed
/// through a ``Redactor`` first.
struct SecretReference: Sendable, Equatable {
    enum Source: Sendable, Equatable {
        case environment(String)
        case file(String)
    }

    var name: String
    var source: Source

    var json: JSONValue {
        switch source {
        case .environment(let variable): ["env": .string(variable)]
        case .file(let path): ["file": .string(path)]
        }
    }

    /// Parses `params.secrets` of `spaces/create`.
    static func parse(_ params: Params?) throws(RPCError) -> [SecretReference] {
        guard let params else { return [] }
        var references: [SecretReference] = []
        for name in params.members.keys.sorted() {
            let field = params.fieldPath(name)
            guard Operation.isEnvironmentName(name) else {
                throw RPCError.invalidParams(
                    field, "'\(name)' is not a valid secret name",
                    hint: "name secrets like environment variables: letters, digits and '_', not starting with a digit")
            }
            let reference = try Params(params.members[name], path: field)
            try reference.rejectUnknown(allowed: ["env", "file"])
            switch (try reference.optionalString("env"), try reference.optionalString("file")) {
            case (let variable?, nil): references.append(SecretReference(name: name, source: .environment(variable)))
            case (nil, let path?) where path.hasPrefix("/"):
                references.append(SecretReference(name: name, source: .file(path)))
            default:
                throw RPCError.invalidParams(
                    field, "a secret is {\"env\": \"VARIABLE\"} or {\"file\": \"/absolute/path\"}",
                    hint: "reference where the engine's host keeps the value; the value itself is never sent")
            }
        }
        return references
    }

    /// The value on this host, or why it cannot be had.
    func resolve() -> Result<String, RPCError> {
        switch source {
        case .environment(let variable):
            guard let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty else {
                return .failure(
                    RPCError.invalidParams(
                        "params.secrets.\(name)", "the engine's environment has no variable \(variable)",
                        hint: "start the engine with \(variable) set, or reference the secret by file"))
            }
            return .success(value)
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path),
                let text = String(data: data, encoding: .utf8)
            else {
                return .failure(
                    RPCError.invalidParams(
                        "params.secrets.\(name)", "the engine cannot read \(path)",
                        hint: "check that the file exists and that the engine's user may read it"))
            }
            var value = text
            while value.hasSuffix("\n") || value.hasSuffix("\r") { value.removeLast() }
            return .success(value)
        }
    }
}

/// Replaces every secret value in outputs — as is, base64-encoded and URL-encoded — by `[REDACTED:NAME]`.
///
/// Values shorter than four bytes are not redacted (they would match ordinary text) and are refused when
/// declared. Immutable once built, so it is shared freely.
struct Redactor: Sendable {
    private let patterns: [(text: String, replacement: String)]
    /// The longest pattern, in characters: streamed output keeps this much back until it knows no secret
    /// straddles two chunks.
    let longest: Int

    static let minimumLength = 4

    init(secrets: [String: String]) {
        var patterns: [(String, String)] = []
        for (name, value) in secrets where value.utf8.count >= Self.minimumLength {
            let replacement = "[REDACTED:\(name)]"
            var forms: Set<String> = [value]
            let base64 = Data(value.utf8).base64EncodedString()
            forms.insert(base64)
            forms.insert(String(base64.reversed().drop(while: { $0 == "=" }).reversed()))
            forms.insert(base64.replacingCharacters("+", "-").replacingCharacters("/", "_"))
            forms.insert(Self.percentEncoded(value))
            for form in forms where !form.isEmpty { patterns.append((form, replacement)) }
        }
        self.patterns = patterns.sorted { $0.0.count > $1.0.count }
        self.longest = self.patterns.first?.0.count ?? 0
    }

    var isEmpty: Bool { patterns.isEmpty }

    static func percentEncoded(_ value: String) -> String {
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
        let hex = Array("0123456789ABCDEF".utf8)
        var output: [UInt8] = []
        for byte in value.utf8 {
            if unreserved.contains(byte) {
                output.append(byte)
            } else {
                output.append(contentsOf: [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// The text with every secret form replaced, and how many were.
    func redact(_ text: String) -> (String, Int) {
        guard !patterns.isEmpty else { return (text, 0) }
        var result = text
        var count = 0
        for (pattern, replacement) in patterns where result.contains(pattern) {
            var pieces = result.components(separatedBy: pattern)
            count += pieces.count - 1
            result = pieces.joined(separator: replacement)
            pieces.removeAll()
        }
        return (result, count)
    }

    /// Every string inside a JSON value redacted, and the count.
    func redact(_ value: JSONValue) -> (JSONValue, Int) {
        guard !patterns.isEmpty else { return (value, 0) }
        switch value {
        case .string(let text):
            let (redacted, count) = redact(text)
            return (.string(redacted), count)
        case .array(let elements):
            var total = 0
            let redacted = elements.map { element -> JSONValue in
                let (value, count) = redact(element)
                total += count
                return value
            }
            return (.array(redacted), total)
        case .object(let members):
            var total = 0
            var redacted: [String: JSONValue] = [:]
            for (key, member) in members {
                let (value, count) = redact(member)
                total += count
                redacted[key] = value
            }
            return (.object(redacted), total)
        default:
            return (value, 0)
        }
    }

    /// Splits streamed text into what can be sent now (redacted) and what must wait for the next chunk because
    /// a secret might continue there: the last `longest - 1` characters, unless a whole secret ends later.
    func streamed(pending: String, chunk: String, final: Bool) -> (send: String, keep: String, count: Int) {
        let text = pending + chunk
        guard !patterns.isEmpty else { return (text, "", 0) }
        if final || text.count < longest {
            if final {
                let (redacted, count) = redact(text)
                return (redacted, "", count)
            }
            return ("", text, 0)
        }
        var cut = text.index(text.endIndex, offsetBy: -(longest - 1))
        // A secret that starts before the cut and is complete in the text moves the cut to its end.
        for (pattern, _) in patterns {
            var searchStart = text.startIndex
            while let range = text[searchStart...].firstRange(of: pattern) {
                if range.lowerBound < cut && range.upperBound > cut { cut = range.upperBound }
                searchStart = range.upperBound
            }
        }
        let (redacted, count) = redact(String(text[..<cut]))
        return (redacted, String(text[cut...]), count)
    }
}

extension String {
    fileprivate func replacingCharacters(_ target: Character, _ replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}
