import SpacesConformance
import SpacesProtocol
import Testing

/// The golden cases themselves: they parse, there are enough of them, and every message they expect from an
/// engine is valid under the protocol's schema (placeholders stand for values of the right type).
@Suite struct FixtureTests {
    static let root: String = {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path
    }()

    static let fixtures: [Fixture] = (try? FixtureLoader.load(directory: root + "/Fixtures/conformance")) ?? []

    static let schema: ProtocolSchema = {
        let text = FixtureLoader.readFile(root + "/Schemas/protocol.schema.json") ?? "{}"
        return ProtocolSchema(document: (try? JSONValue.parse(text)) ?? .object([:]))
    }()

    @Test func thereAreAtLeastFortyCasesAndAllParse() throws {
        let loaded = try FixtureLoader.load(directory: Self.root + "/Fixtures/conformance")
        #expect(loaded.count >= 40)
        for fixture in loaded {
            #expect(!fixture.description.isEmpty, "\(fixture.name) has no description line")
            #expect(
                fixture.steps.contains { if case .expect = $0 { true } else { false } },
                "\(fixture.name) expects nothing")
        }
    }

    @Test(arguments: fixtures.map(\.name))
    func expectedMessagesValidate(name: String) throws {
        let fixture = try #require(Self.fixtures.first { $0.name == name })
        var methods: [JSONValue: String] = [:]
        for step in fixture.steps {
            switch step {
            case .send(let text), .sendCRLF(let text):
                for request in Self.messages(in: try? JSONValue.parse(text)) {
                    if let id = request["id"], let method = request["method"]?.stringValue { methods[id] = method }
                }
            case .expect(let expected):
                try check(expected, methods: methods, fixture: name)
            case .expectUnordered(let group):
                for expected in group { try check(expected, methods: methods, fixture: name) }
            default:
                break
            }
        }
    }

    func check(_ expected: JSONValue, methods: [JSONValue: String], fixture: String) throws {
        for element in Self.messages(in: expected) {
            var wildcards: [String] = []
            let concrete = Self.concretize(element, path: "", wildcards: &wildcards)
            let violations =
                if element["method"] == nil {
                    Self.schema.validateResponse(concrete, method: element["id"].flatMap { methods[$0] })
                } else if element["id"] == nil {
                    Self.schema.validateNotification(concrete)
                } else {
                    // A request the engine sends (capabilities/invoke).
                    Self.schema.validateRequest(concrete)
                }
            let real = violations.filter { violation in
                !wildcards.contains {
                    violation.instancePath == $0 || violation.instancePath.hasPrefix($0 + ".")
                        || violation.instancePath.hasPrefix($0 + "[")
                }
            }
            #expect(real.isEmpty, "\(fixture): \(real.map(\.description).joined(separator: "; "))\n  in \(element)")
        }
    }

    static func messages(in value: JSONValue?) -> [JSONValue] {
        guard let value else { return [] }
        return value.arrayValue ?? [value]
    }

    /// Replaces typed placeholders by sample values; `<any>` and captures are left to the caller to ignore.
    static func concretize(_ value: JSONValue, path: String, wildcards: inout [String]) -> JSONValue {
        switch value {
        case .string(let text) where text.hasPrefix("$") && text.count > 1:
            wildcards.append(path)
            return value
        case .string(let text) where text.hasPrefix("<") && text.hasSuffix(">"):
            switch text {
            case "<number>", "<int>": return 1
            case "<bool>": return true
            case "<string>": return "text"
            case "<time>": return "2026-01-01T00:00:00.000Z"
            case "<sha256>": return .string(String(repeating: "0", count: 64))
            default:
                if text.hasPrefix("<id:") {
                    return .string(String(text.dropFirst(4).dropLast()) + String(repeating: "0", count: 16))
                }
                wildcards.append(path)
                return value
            }
        case .object(let members):
            var result: [String: JSONValue] = [:]
            for (key, member) in members {
                result[key] = concretize(member, path: path.isEmpty ? key : "\(path).\(key)", wildcards: &wildcards)
            }
            return .object(result)
        case .array(let elements):
            return .array(elements.enumerated().map { concretize($1, path: "\(path)[\($0)]", wildcards: &wildcards) })
        default:
            return value
        }
    }
}
