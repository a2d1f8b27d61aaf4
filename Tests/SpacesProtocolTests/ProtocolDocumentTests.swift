import Foundation
import SpacesProtocol
import Testing

/// `docs/PROTOCOL.md` and the schema describe the same protocol: every example exchange in the document is a
/// valid message, and every method, event type and operation error code of the schema is documented.
@Suite("Protocol document")
struct ProtocolDocumentTests {
    static func document() throws -> String {
        String(decoding: try SchemaFile.packageFile("docs/PROTOCOL.md"), as: UTF8.self)
    }

    /// One line of an example exchange: a message sent → (client to engine) or ← (engine to client).
    struct ExampleLine {
        var line: Int
        var json: String
        /// In a ```` ```jsonrpc rejected ```` block, the client's messages are examples of what the engine
        /// refuses.
        var rejected: Bool
    }

    /// The → and ← lines of the document's ```` ```jsonrpc ```` blocks, each block's lines together.
    static func exchanges() throws -> [[ExampleLine]] {
        var blocks: [[ExampleLine]] = []
        var current: [ExampleLine]?
        var rejected = false
        for (number, line) in try document().split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.hasPrefix("```") {
                if let block = current {
                    blocks.append(block)
                    current = nil
                } else if line == "```jsonrpc" || line == "```jsonrpc rejected" {
                    current = []
                    rejected = line.hasSuffix("rejected")
                }
                continue
            }
            guard current != nil else { continue }
            if line.hasPrefix("→ ") || line.hasPrefix("← ") {
                let json = String(line.dropFirst(2))
                current!.append(ExampleLine(line: number + 1, json: json, rejected: rejected && line.hasPrefix("→")))
            }
        }
        return blocks
    }

    @Test func examplesAreValidMessages() throws {
        let schema = try SchemaFile.schema()
        let blocks = try Self.exchanges()
        #expect(blocks.count >= 15)
        var checked = 0
        var rejected = 0
        // Requests seen so far, by id, to check each response against its method; a later request may reuse an id.
        var methods: [JSONValue: String] = [:]
        for block in blocks {
            for example in block {
                let (line, json) = (example.line, example.json)
                let message: JSONValue
                do {
                    message = try JSONValue.parse(json)
                } catch {
                    Issue.record("PROTOCOL.md line \(line): \(error)")
                    continue
                }
                let violations: [SchemaViolation]
                if let method = message["method"]?.stringValue {
                    if let id = message["id"] {
                        methods[id] = method
                        violations = schema.validateRequest(message)
                    } else {
                        violations = schema.validateNotification(message)
                    }
                } else {
                    let id = message["id"] ?? .null
                    let method = methods[id]
                    #expect(method != nil || id == .null, "PROTOCOL.md line \(line): a response to no request above it")
                    violations = schema.validateResponse(message, method: method)
                }
                if example.rejected {
                    #expect(violations != [], "PROTOCOL.md line \(line): an example of a rejected message is valid")
                    rejected += 1
                } else {
                    #expect(violations == [], "PROTOCOL.md line \(line): \(violations)")
                }
                checked += 1
            }
        }
        #expect(checked >= 30)
        #expect(rejected >= 1)
    }

    @Test func everyMethodHasASection() throws {
        let text = try Self.document()
        for method in try SchemaFile.schema().methods {
            #expect(text.contains("\n### \(method)\n"), "no section for \(method)")
        }
    }

    @Test func everyEventTypeAndErrorCodeIsDocumented() throws {
        let text = try Self.document()
        let definitions = try SchemaFile.document()["$defs"]
        let codes = definitions?["OperationErrorCode"]?["enum"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(codes.count > 20)
        for code in codes { #expect(text.contains("`\(code)`"), "\(code) is not documented") }
        let rpcCodes = definitions?["ErrorCode"]?["enum"]?.arrayValue?.compactMap(\.intValue) ?? []
        for code in rpcCodes { #expect(text.contains("| \(code) |"), "\(code) is not in the error table") }
        let statuses = definitions?["BatchStatus"]?["enum"]?.arrayValue?.compactMap(\.stringValue) ?? []
        for status in statuses { #expect(text.contains("| `\(status)` |"), "batch status \(status)") }
        for branch in definitions?["Event"]?["oneOf"]?.arrayValue ?? [] {
            guard let name = branch["$ref"]?.stringValue?.split(separator: "/").last,
                let type = definitions?[String(name)]?["properties"]?["type"]?["const"]?.stringValue
            else {
                Issue.record("event branch \(branch) has no type")
                continue
            }
            #expect(text.contains("| `\(type)` |"), "event \(type) is not in the events table")
        }
        for branch in definitions?["Operation"]?["oneOf"]?.arrayValue ?? [] {
            guard let name = branch["$ref"]?.stringValue?.split(separator: "/").last,
                let kind = definitions?[String(name)]?["properties"]?["kind"]?["const"]?.stringValue
            else { continue }
            #expect(text.contains("| `\(kind)` |"), "operation \(kind) is not in the operations table")
        }
    }
}
