import SpacesConformance
import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `tools/list` and `tools/call`: the MCP-shaped tools of a space, run end to end in a real space through the
/// normal batch path, so that policy, approvals and the workspace boundary apply to them as to any operation.
@Suite("Tools: tools/list and tools/call in a real space (needs user namespaces)")
struct ToolTests {
    static let builtinNames = [
        "read_file", "write_file", "edit_file", "delete_file", "list_files", "run_command", "run_typescript",
    ]

    /// The `tools/call` result, or a thrown failure for a JSON-RPC error.
    static func call(
        _ engine: AttackEngine, _ space: String, _ name: String, _ arguments: JSONValue = .object([:])
    ) throws -> (text: String, isError: Bool) {
        let result = try engine.call(
            "tools/call", ["spaceId": .string(space), "name": .string(name), "arguments": arguments])
        return answer(result)
    }

    static func answer(_ result: JSONValue) -> (text: String, isError: Bool) {
        let content = result["content"]?.arrayValue ?? []
        #expect(content.count == 1 && content.first?["type"] == "text", "\(result)")
        return (content.first?["text"]?.stringValue ?? "", result["isError"]?.boolValue ?? true)
    }

    /// The JSON-RPC error of a `tools/call` that should be refused.
    static func refusal(
        _ engine: AttackEngine, _ space: String, _ name: String, _ arguments: JSONValue
    ) throws -> JSONValue {
        let id = engine.send("tools/call", ["spaceId": .string(space), "name": .string(name), "arguments": arguments])
        return try engine.response(id)["error"] ?? .null
    }

    @Test("tools/list answers the built-in tools, each with a description and a usable JSON Schema")
    func listShape() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "tools"])
        let tools = try engine.call("tools/list", ["spaceId": .string(space)])["tools"]?.arrayValue ?? []
        #expect(tools.compactMap { $0["name"]?.stringValue } == Self.builtinNames)
        for tool in tools {
            let name = tool["name"]?.stringValue ?? "?"
            #expect((tool["description"]?.stringValue ?? "").count > 40, "\(name) needs a real description")
            let schema = tool["inputSchema"] ?? .null
            #expect(schema["type"] == "object", "\(name): \(schema)")
            #expect(JSONSchemaValidator.problem(in: schema) == nil, "\(name): \(schema)")
            #expect(tool["annotations"]?["readOnlyHint"]?.boolValue != nil, "\(name)")
        }
        let schemas = Dictionary(
            uniqueKeysWithValues: tools.map {
                ($0["name"]?.stringValue ?? "", JSONSchemaValidator(document: $0["inputSchema"] ?? .null))
            })
        #expect(schemas["read_file"]?.isValid(["path": "a.txt", "offset": 2]) == true)
        #expect(schemas["read_file"]?.isValid(["offset": 2]) == false)
        #expect(schemas["edit_file"]?.isValid(["path": "a", "edits": [["oldText": "x", "newText": "y"]]]) == true)
        #expect(schemas["edit_file"]?.isValid(["path": "a", "oldText": "x", "newText": "y"]) == false)
        #expect(schemas["list_files"]?.isValid([:]) == true)
        #expect(schemas["run_command"]?.isValid(["command": "ls", "timeoutMs": 0]) == false)

        let unknown = try engine.response(engine.send("tools/list", ["spaceId": "sp_0000000000000000"]))
        #expect(unknown["error"]?["code"]?.intValue == -32010, "\(unknown)")
    }

    @Test("Every built-in tool works end to end, and answers what a model should read")
    func eachTool() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "tools"])

        var answer = try Self.call(engine, space, "write_file", ["path": "notes/a.txt", "content": "hello\nworld\n"])
        #expect(answer.text == "Wrote 12 bytes to notes/a.txt." && !answer.isError, "\(answer)")
        #expect(Host.read(engine.workspacePath(space) + "/notes/a.txt") == "hello\nworld\n")

        answer = try Self.call(engine, space, "read_file", ["path": "/workspace/notes/a.txt"])
        #expect(answer.text == "hello\nworld\n" && !answer.isError, "\(answer)")
        answer = try Self.call(engine, space, "read_file", ["path": "notes/a.txt", "offset": 6, "length": 5])
        #expect(answer.text == "world", "\(answer)")

        answer = try Self.call(
            engine, space, "edit_file", ["path": "notes/a.txt", "edits": [["oldText": "world", "newText": "tools"]]])
        #expect(answer.text == "Edited notes/a.txt: 1 replacement." && !answer.isError, "\(answer)")
        answer = try Self.call(
            engine, space, "edit_file", ["path": "notes/a.txt", "edits": [["oldText": "absent", "newText": "x"]]])
        #expect(answer.isError && answer.text.hasPrefix("Failed (EDIT_NO_MATCH): "), "\(answer)")
        #expect(answer.text.contains("\nhint: "), "\(answer)")

        _ = try Self.call(engine, space, "write_file", ["path": "notes/sub/b.txt", "content": ""])
        answer = try Self.call(engine, space, "list_files")
        #expect(answer.text == "notes/" && !answer.isError, "\(answer)")
        answer = try Self.call(engine, space, "list_files", ["path": "notes", "recursive": true])
        #expect(answer.text == "notes/a.txt\nnotes/sub/\nnotes/sub/b.txt", "\(answer)")
        answer = try Self.call(engine, space, "list_files", ["path": "notes/sub/b.txt"])
        #expect(answer.isError, "\(answer)")

        answer = try Self.call(engine, space, "run_command", ["command": "cat notes/a.txt | tr a-z A-Z"])
        #expect(answer.text == "HELLO\nTOOLS" && !answer.isError, "\(answer)")
        answer = try Self.call(engine, space, "run_command", ["command": "echo out; echo oops >&2; exit 3"])
        #expect(answer.text == "out\n[stderr]\noops\n[exit code 3]" && answer.isError, "\(answer)")
        answer = try Self.call(engine, space, "run_command", ["command": "true"])
        #expect(answer.text == "(no output)" && !answer.isError, "\(answer)")
        answer = try Self.call(engine, space, "run_command", ["command": "echo early; sleep 10", "timeoutMs": 300])
        #expect(answer.isError && answer.text.hasPrefix("early\n[TIMEOUT: "), "\(answer)")

        answer = try Self.call(
            engine, space, "run_typescript",
            ["source": "const text = await Bun.file('notes/a.txt').text();\nconsole.log(text.length, 6 * 7);"])
        #expect(answer.text == "12 42" && !answer.isError, "\(answer)")
        answer = try Self.call(engine, space, "run_typescript", ["source": "throw new Error('typed failure')"])
        #expect(answer.isError && answer.text.contains("typed failure") && answer.text.contains("[exit code 1]"))

        answer = try Self.call(engine, space, "delete_file", ["path": "notes/sub"])
        #expect(answer.isError && answer.text.hasPrefix("Failed (ENOTEMPTY): "), "\(answer)")
        answer = try Self.call(engine, space, "delete_file", ["path": "notes", "recursive": true])
        #expect(answer.text == "Deleted notes." && !answer.isError, "\(answer)")
        answer = try Self.call(engine, space, "read_file", ["path": "notes/a.txt"])
        #expect(answer.isError && answer.text.hasPrefix("Failed (ENOENT): "), "\(answer)")

        answer = try Self.call(engine, space, "read_file", ["path": "../../etc/passwd"])
        #expect(answer.isError && answer.text.contains("rule: workspace.boundary"), "\(answer)")

        // Each call was an audited batch like any other.
        let audit = try engine.call("audit/read", ["spaceId": .string(space), "limit": 10_000])["entries"]?.arrayValue
        let requests = (audit ?? []).filter { $0["kind"] == "request" }
        #expect(requests.count == 19, "\(requests.count) request entries")
        #expect(requests.first?["data"]?["operations"]?.arrayValue?.first?["id"] == "write_file")
    }

    @Test("A long file is read in parts: the result says where it stopped")
    func readInParts() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "long", "limits": ["outputBytes": 10]])
        _ = try Self.call(engine, space, "write_file", ["path": "long.txt", "content": "0123456789abcdefghij"])
        let answer = try Self.call(engine, space, "read_file", ["path": "long.txt"])
        #expect(
            answer.text == "0123456789\n[cut at the output limit: bytes 0 to 10 of 20 shown; read on with offset 10]")
        #expect(
            try Self.call(engine, space, "read_file", ["path": "long.txt", "offset": 10]).text.hasPrefix("abcdefghij"))
    }

    @Test("A tool the policy denies answers isError with the reason, the rule and the suggestion")
    func denied() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace([
            "name": "strict", "policy": "strict", "workspace": ["files": ["a.txt": "A"]],
        ])
        let decision =
            try engine.submit(
                space, [Op.write("b.txt", "B")], extra: ["dryRun": true])["decisions"]?.arrayValue?.first ?? .null
        let answer = try Self.call(engine, space, "write_file", ["path": "b.txt", "content": "B"])
        #expect(answer.isError, "\(answer)")
        #expect(answer.text.hasPrefix("Denied by the space's policy: \(decision["reason"]?.stringValue ?? "?")\n"))
        #expect(answer.text.contains("\nrule: \(decision["rule"]?.stringValue ?? "?")"), "\(answer)")
        #expect(answer.text.contains("\nsuggestion: \(decision["suggestion"]?.stringValue ?? "?")"), "\(answer)")
        #expect(!Host.exists(engine.workspacePath(space) + "/b.txt"))
        // Reads are allowed in a strict space.
        #expect(try Self.call(engine, space, "read_file", ["path": "a.txt"]).text == "A")

        let open = try engine.createSpace(["name": "nocurl", "policy": ["commands": ["deny": ["curl *"]]]])
        let curl = try Self.call(engine, open, "run_command", ["command": "curl https://example.com"])
        #expect(curl.isError && curl.text.contains("\nrule: commands.deny: curl *"), "\(curl)")
    }

    /// A space whose policy asks before `echo`; returns the request id of a pending `tools/call` and its approval.
    static func askedCall(_ engine: AttackEngine, approvalTimeoutMs: Int = 600_000) throws -> (Int, String) {
        let space = try engine.createSpace([
            "name": "careful",
            "policy": ["commands": ["ask": ["echo *"]], "approvalTimeoutMs": JSONValue(approvalTimeoutMs)],
        ])
        let id = engine.send(
            "tools/call",
            ["spaceId": .string(space), "name": "run_command", "arguments": ["command": "echo approved"]])
        let requested = try engine.waitForNotification { $0["method"] == "approvals/requested" }
        let approvalId = requested["params"]?["approval"]?["approvalId"]?.stringValue ?? ""
        #expect(approvalId.hasPrefix("ap_"))
        // No answer while the approval is pending.
        #expect(throws: (any Error).self) { try engine.response(id, timeoutMs: 300) }
        return (id, approvalId)
    }

    @Test("An asked tool answers only once the approval is resolved: allowed, it runs")
    func askAllowed() throws {
        let engine = try AttackEngine()
        let (id, approvalId) = try Self.askedCall(engine)
        let resolved = try engine.call(
            "approvals/resolve", ["approvalId": .string(approvalId), "decision": "allow_once"])
        #expect(resolved["status"] == "completed", "\(resolved)")
        let answer = Self.answer(try engine.result(id))
        #expect(answer.text == "approved" && !answer.isError, "\(answer)")
    }

    @Test("An asked tool answers only once the approval is resolved: denied, it is an error")
    func askDenied() throws {
        let engine = try AttackEngine()
        let (id, approvalId) = try Self.askedCall(engine)
        _ = try engine.call("approvals/resolve", ["approvalId": .string(approvalId), "decision": "deny"])
        let answer = Self.answer(try engine.result(id))
        #expect(answer.isError && answer.text.contains("rule: approval.denied"), "\(answer)")
    }

    @Test("An asked tool nobody answers is denied when the approval times out")
    func askExpired() throws {
        let engine = try AttackEngine()
        let (id, _) = try Self.askedCall(engine, approvalTimeoutMs: 1000)
        let answer = Self.answer(try engine.result(id, timeoutMs: 10_000))
        #expect(answer.isError && answer.text.contains("approvalTimeoutMs"), "\(answer)")
    }

    @Test("notifications/cancelled with a tools/call's id stops its command")
    func cancelled() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "cancel"])
        let start = Host.nowMs()
        let id = engine.send(
            "tools/call", ["spaceId": .string(space), "name": "run_command", "arguments": ["command": "sleep 30"]])
        usleep(500_000)
        try engine.notify("notifications/cancelled", ["requestId": JSONValue(id)])
        let answer = Self.answer(try engine.result(id))
        #expect(answer.isError && answer.text.contains("CANCELLED"), "\(answer)")
        #expect(Host.nowMs() - start < 10_000)
    }

    static let badArguments: [(name: String, arguments: JSONValue, field: String)] = [
        ("read_file", [:], "params.arguments.path"),
        ("read_file", ["path": 7], "params.arguments.path"),
        ("read_file", ["path": "a", "offset": -1], "params.arguments.offset"),
        ("write_file", ["path": "a"], "params.arguments.content"),
        ("write_file", ["path": "a", "content": "x", "mode": 420], "params.arguments.mode"),
        ("edit_file", ["path": "a", "edits": []], "params.arguments.edits"),
        ("edit_file", ["path": "a", "edits": [["oldText": "", "newText": "x"]]], "params.arguments.edits[0].oldText"),
        ("edit_file", ["path": "a", "oldText": "x", "newText": "y"], "params.arguments.edits"),
        ("delete_file", ["path": "a", "recursive": "yes"], "params.arguments.recursive"),
        ("list_files", ["path": ["a"]], "params.arguments.path"),
        ("run_command", ["command": ""], "params.arguments.command"),
        ("run_command", ["command": "ls", "timeoutMs": 0], "params.arguments.timeoutMs"),
        ("run_typescript", ["code": "1"], "params.arguments.code"),
        ("no_such_tool", [:], "params.name"),
        ("read_file", ["a.txt"], "params.arguments"),
    ]

    @Test("Bad arguments get -32602 naming the field under params.arguments, with a hint; nothing runs")
    func badArgumentsAreRefused() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "arguments"])
        for (name, arguments, field) in Self.badArguments {
            let error = try Self.refusal(engine, space, name, arguments)
            #expect(error["code"]?.intValue == -32602, "\(name) \(arguments): \(error)")
            #expect(error["data"]?["field"]?.stringValue == field, "\(name) \(arguments): \(error)")
            #expect(error["data"]?["hint"]?.stringValue?.isEmpty == false, "\(error)")
        }
        let missingName = try engine.response(engine.send("tools/call", ["spaceId": .string(space)]))["error"]
        #expect(missingName?["data"]?["field"] == "params.name", "\(String(describing: missingName))")
        let stats = try engine.call("spaces/get", ["spaceId": .string(space)])["stats"]
        #expect(stats?["batches"]?.intValue == 0, "\(String(describing: stats))")
    }

    /// `Fixtures/http/echo_server.py` on a free port of 127.0.0.1 (it exits when its stdin closes), and the port.
    static func echoServer() throws -> (EngineProcess, Int) {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin"
        let candidates: [String] = path.split(separator: ":").map { String($0) + "/python3" }
        let python = candidates.first { candidate in access(candidate, X_OK) == 0 }
        let fixtures = String(#filePath.split(separator: "/").dropLast(3).joined(separator: "/"))
        let process = try EngineProcess(
            arguments: [python ?? "/usr/bin/python3", "/" + fixtures + "/Fixtures/http/echo_server.py", "0"],
            logPath: "/dev/null")
        guard let line = try process.nextLine(timeoutMs: 10_000), let port = Int(String(decoding: line, as: UTF8.self))
        else { throw AttackFailure(description: "the echo server did not start") }
        return (process, port)
    }

    @Test("A capability method is a tool: its params schema is the inputSchema, and the call crosses the bridge")
    func capabilityTool() throws {
        let (server, port) = try Self.echoServer()
        defer {
            server.closeInput()
            _ = server.waitForExit(timeoutMs: 5_000)
        }
        let engine = try AttackEngine()
        let space = try engine.createSpace([
            "name": "crm",
            "capabilities": [
                [
                    "name": "crm", "description": "the customer database",
                    "handler": ["kind": "http", "baseUrl": .string("http://127.0.0.1:\(port)")],
                    "methods": [
                        "customer": [
                            "description": "Find one customer by id.", "effect": "read",
                            "http": ["method": "GET", "path": "/customers/{id}"],
                            "params": [
                                "type": "object", "properties": ["id": ["type": "integer"]], "required": ["id"],
                            ],
                        ]
                    ],
                ]
            ],
        ])
        let tools = try engine.call("tools/list", ["spaceId": .string(space)])["tools"]?.arrayValue ?? []
        #expect(tools.compactMap { $0["name"]?.stringValue } == Self.builtinNames + ["crm_customer"])
        let tool = tools.first { $0["name"] == "crm_customer" }
        #expect(tool?["inputSchema"]?["required"] == ["id"], "\(tools)")
        #expect(tool?["description"]?.stringValue?.hasPrefix("Find one customer by id.") == true)
        #expect(tool?["annotations"]?["readOnlyHint"] == true)
        let typescript = tools.first { $0["name"] == "run_typescript" }?["description"]?.stringValue ?? ""
        #expect(typescript.contains("import { crm } from \"spaces:capabilities\""), "\(typescript)")

        let error = try Self.refusal(engine, space, "crm_customer", ["id": "four"])
        #expect(error["code"]?.intValue == -32602 && error["data"]?["field"] == "params.arguments.id", "\(error)")

        let answer = try Self.call(engine, space, "crm_customer", ["id": 4])
        #expect(!answer.isError, "\(answer)")
        let customer = try JSONValue.parse(answer.text)
        #expect(customer["id"]?.intValue == 4 && customer["name"]?.stringValue != nil, "\(answer)")
        let missing = try Self.call(engine, space, "crm_customer", ["id": 999])
        #expect(missing.isError && missing.text.contains("[exit code 1]"), "\(missing)")
    }
}
