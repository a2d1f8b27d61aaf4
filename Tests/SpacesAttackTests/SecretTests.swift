import SpacesConformance
import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Secrets are used without being shown: canary values planted in the engine's environment are given to the
/// commands that name them, and never appear in anything the engine sends or keeps — exact, base64-encoded or
/// URL-encoded, whole or split across streamed chunks.
@Suite("Secrets never leave the engine (needs user namespaces)")
struct SecretTests {
    static let canary = "cnry-" + Host.marker("") + "/+=&"

    static func forms(_ value: String) -> [String] {
        let base64 = base64Encode(Array(value.utf8))
        return [value, base64, String(base64.prefix { $0 != "=" }), Self.percentEncode(value)]
    }

    static func base64Encode(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var output = ""
        var index = 0
        while index < bytes.count {
            let chunk = Array(bytes[index..<min(index + 3, bytes.count)])
            let value = chunk.enumerated().reduce(0) { $0 | Int($1.element) << (16 - 8 * $1.offset) }
            for position in 0..<4 {
                output.append(position <= chunk.count ? alphabet[(value >> (18 - 6 * position)) & 63] : "=")
            }
            index += 3
        }
        return output
    }

    static func percentEncode(_ value: String) -> String {
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
        return value.utf8.map { unreserved.contains($0) ? String(UnicodeScalar($0)) : String(format2: $0) }.joined()
    }

    static func engine() throws -> (AttackEngine, String) {
        let engine = try AttackEngine(environment: ["SPACES_TEST_CANARY": canary])
        let space = try engine.createSpace(["name": "secrets", "secrets": ["TOKEN": ["env": "SPACES_TEST_CANARY"]]])
        return (engine, space)
    }

    static func leaks(in text: String) -> [String] { forms(canary).filter { text.contains($0) } }

    /// A host command's standard output.
    static func run(_ arguments: [String]) throws -> String {
        let process = try EngineProcess(arguments: arguments, logPath: "/dev/null")
        process.closeInput()
        var output = ""
        while let line = try process.nextLine(timeoutMs: 20_000) {
            output += String(decoding: line, as: UTF8.self) + "\n"
        }
        _ = process.waitForExit(timeoutMs: 20_000)
        return output
    }

    @Test("A command that names the secret gets it; every output form of it is redacted and counted")
    func outputsAreRedacted() throws {
        let (engine, space) = try Self.engine()
        let result = try engine.submit(
            space,
            [
                ["kind": "command.run", "command": "echo \"$TOKEN\"", "secrets": ["TOKEN"]],
                ["kind": "command.run", "command": "printf %s \"$TOKEN\" | base64", "secrets": ["TOKEN"]],
                [
                    "kind": "command.run", "secrets": ["TOKEN"],
                    "argv": [
                        "python3", "-c",
                        "import os,urllib.parse;print(urllib.parse.quote(os.environ['TOKEN'],safe=''))",
                    ],
                ],
                ["kind": "command.run", "command": "ls \"/nonexistent/$TOKEN\"", "secrets": ["TOKEN"]],
                ["kind": "command.run", "command": "printf %s \"$TOKEN\" > leak.txt", "secrets": ["TOKEN"]],
                ["kind": "file.read", "path": "leak.txt"],
                [
                    "kind": "code.run", "language": "typescript", "secrets": ["TOKEN"],
                    "source": "console.log(process.env.TOKEN); throw new Error(`bad ${process.env.TOKEN}`)",
                ],
            ], extra: ["onError": "continue"])
        let text = result.description
        #expect(Self.leaks(in: text).isEmpty, "a secret form leaked: \(text)")
        #expect(text.contains("[REDACTED:TOKEN]"))
        let counts = (result["events"]?.arrayValue ?? []).filter { $0["type"] == "output.redacted" }
        // Every operation but the one that only writes the file produced output with the secret in it.
        #expect(counts.count == 6, "\(counts)")
        #expect(counts.allSatisfy { ($0["count"]?.intValue ?? 0) >= 1 })
    }

    @Test("A secret split across streamed chunks is still redacted")
    func streamedSplitsAreRedacted() throws {
        let (engine, space) = try Self.engine()
        let result = try engine.submit(
            space,
            [
                [
                    "kind": "command.run", "secrets": ["TOKEN"],
                    "argv": ["bash", "-c", "printf %s \"${TOKEN:0:9}\"; sleep 0.4; printf %s \"${TOKEN:9}\"; echo"],
                ]
            ], extra: ["stream": true])
        let notifications = engine.notifications
        let streamed = notifications.compactMap { $0["params"]?["event"] }.filter { $0["type"] == "command.output" }
        let joined = streamed.compactMap { $0["data"]?.stringValue }.joined()
        #expect(streamed.count >= 1)
        #expect(joined == "[REDACTED:TOKEN]\n", "\(streamed)")
        #expect(Self.leaks(in: result.description + notifications.description).isEmpty)
    }

    @Test("A command that does not name the secret does not get it")
    func unnamedSecretsAreNotGiven() throws {
        let (engine, space) = try Self.engine()
        let exited = try engine.shell(space, "echo \"${TOKEN:-unset}\"")
        #expect(exited.stdout == "unset\n")
    }

    @Test("An undeclared secret is refused with -32602 naming the operation's field")
    func undeclaredSecretsAreRefused() throws {
        let (engine, space) = try Self.engine()
        let id = engine.client.send(
            "operations/submit",
            [
                "spaceId": .string(space),
                "operations": [["kind": "command.run", "argv": ["true"], "secrets": ["OTHER"]]],
            ])
        let response = try engine.client.awaitResponse(id: id)
        #expect(response["error"]?["code"] == -32602)
        #expect(response["error"]?["data"]?["field"] == "params.operations[0].secrets")
    }

    @Test("No form of the secret is in the engine's log, the state directory (but the workspace) or the audit log")
    func nothingKeepsTheSecret() throws {
        let (engine, space) = try Self.engine()
        _ = try engine.submit(
            space,
            [
                ["kind": "command.run", "command": "echo \"$TOKEN\"; echo \"$TOKEN\" >&2", "secrets": ["TOKEN"]],
                ["kind": "file.write", "path": "note.txt", "content": .string("pasted: " + Self.canary)],
            ])
        _ = try engine.client.call("audit/read", ["spaceId": .string(space)])
        let listing = try Self.run(["/usr/bin/find", engine.stateDir, "-type", "f", "-not", "-path", "*/workspace/*"])
        for file in listing.split(separator: "\n") {
            let content = Host.read(String(file)) ?? ""
            #expect(Self.leaks(in: content).isEmpty, "\(file) holds the secret")
        }
        #expect(listing.contains("/audit/"), "the audit log was not found: \(listing)")
    }
}

extension String {
    fileprivate init(format2 byte: UInt8) {
        let hex = Array("0123456789ABCDEF")
        self = "%" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 0xF)])
    }
}
