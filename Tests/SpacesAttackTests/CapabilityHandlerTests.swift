import SpacesConformance
import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The `http` and `mcp` handlers end to end, from TypeScript in a real space to a real server on the host, and the
/// engine's declarations checked by a real `tsc`.
@Suite("Capability handlers end to end (needs user namespaces, python3 with mcp, tsc)")
struct CapabilityHandlerTests {
    static let fixtures: String = {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) }
        return path + "/Fixtures"
    }()

    static let canary = "crm-token-" + Host.marker("") + "/+="

    /// `Fixtures/http/echo_server.py` on a free port of 127.0.0.1; it exits when its stdin closes.
    final class EchoServer {
        let process: EngineProcess
        let port: Int

        init() throws {
            process = try EngineProcess(
                arguments: ["/usr/bin/env", "python3", CapabilityHandlerTests.fixtures + "/http/echo_server.py", "0"],
                logPath: "/dev/null")
            guard let line = try process.nextLine(timeoutMs: 10_000),
                let port = Int(String(decoding: line, as: UTF8.self))
            else { throw AttackFailure(description: "the echo server did not start (is python3 on PATH?)") }
            self.port = port
        }

        deinit {
            process.closeInput()
            _ = process.waitForExit(timeoutMs: 5_000)
        }
    }

    @Test("http: the engine calls the API with the secret header filled in host-side; the space never sees it")
    func httpHandlerWithSecretHeader() throws {
        let server = try EchoServer()
        let engine = try AttackEngine(environment: ["SPACES_TEST_CRM_TOKEN": Self.canary])
        let space = try engine.createSpace([
            "name": "http-caps",
            "secrets": ["CRM_TOKEN": ["env": "SPACES_TEST_CRM_TOKEN"]],
            "capabilities": [
                [
                    "name": "api",
                    "methods": [
                        "customers": ["effect": "read", "http": ["method": "GET", "path": "/customers"]],
                        "customer": ["effect": "read", "http": ["method": "GET", "path": "/customers/{id}"]],
                        "echo": ["effect": "read", "http": ["method": "POST", "path": "/echo"]],
                    ],
                    "handler": [
                        "kind": "http", "baseUrl": .string("http://127.0.0.1:\(server.port)"),
                        "headers": ["Authorization": "Bearer ${secret:CRM_TOKEN}"],
                    ],
                ]
            ],
        ])
        let result = try engine.submit(
            space,
            [
                Op.typescript(
                    """
                    import { api } from "spaces:capabilities";
                    const gold = await api.customers({ tier: "gold" }) as any[];
                    const one = await api.customer({ id: 4 }) as any;
                    const echo = await api.echo({ hello: "world" }) as any;
                    const headers = Object.fromEntries(Object.entries(echo.headers).map(([k, v]) => [k.toLowerCase(), v]));
                    console.log(gold.length, gold.every((c) => c.tier === "gold"), one.name);
                    console.log("auth:", headers["authorization"]);
                    console.log("body:", JSON.stringify(echo.body ?? echo.json));
                    try { await api.customer({ id: 999 }); } catch (e: any) { console.log(e.code, e.message.slice(0, 40)); }
                    // The needle is built, so that this program's own source (under /tmp) does not hold it.
                    console.log("env has it:", JSON.stringify(process.env).includes("crm-" + "token-"));
                    """),
                Op.shell("grep -rl \"crm-\"'token-' /workspace /tmp 2>/dev/null | head -3; echo searched"),
            ])
        let outputs = result.events.filter { $0["type"] == "command.exited" }.map { $0["stdout"]?.stringValue ?? "" }
        #expect(outputs.count == 2, "\(result)")
        let lines = (outputs.first ?? "").split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("10 true Customer 0004") == true, "\(lines)")
        // The header arrived with the value itself: the echo of it comes back redacted, so only the engine saw it.
        #expect(lines.contains("auth: Bearer [REDACTED:CRM_TOKEN]"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("HANDLER_ERROR HTTP 404 from GET") }, "\(lines)")
        #expect(lines.contains("env has it: false"), "\(lines)")
        #expect(outputs.last == "searched\n", "no file in the space holds the secret: \(outputs)")
        let audit = try engine.call("audit/read", ["spaceId": .string(space)])
        let everything = result.description + engine.notifications.description + audit.description
        #expect(SecretTests.leaks(in: everything).isEmpty == true || !everything.contains(Self.canary))
        #expect(!everything.contains(Self.canary), "the secret left the engine")
    }

    static let mcpCapability: JSONValue = [
        "name": "crm", "description": "The company CRM (an MCP server)",
        "handler": [
            "kind": "mcp", "command": ["python3", .string(fixtures + "/mcp/crm_server.py")],
            "env": ["CRM_TOKEN": "${secret:CRM_TOKEN}"],
        ],
    ]

    @Test("mcp: the server's tools become methods; code filters 1,000 records; a destructive tool asks first")
    func mcpHandler() throws {
        let engine = try AttackEngine(environment: ["SPACES_TEST_CRM_TOKEN": Self.canary])
        let space = try engine.createSpace([
            "name": "mcp-caps", "secrets": ["CRM_TOKEN": ["env": "SPACES_TEST_CRM_TOKEN"]],
            "capabilities": [Self.mcpCapability],
        ])
        let described = try engine.call("spaces/get", ["spaceId": .string(space)])
        let methods = described["capabilities"]?.arrayValue?.first?["methods"]?.arrayValue?.compactMap(\.stringValue)
        #expect(methods?.contains("search") == true && methods?.contains("delete_customer") == true, "\(described)")
        let result = try engine.submit(
            space,
            [
                Op.typescript(
                    """
                    import { crm } from "spaces:capabilities";
                    const all = await crm.search({}) as any[];
                    const top = all.filter((c) => c.tier === "gold").sort((a, b) => b.annualRevenue - a.annualRevenue).slice(0, 3);
                    console.log(all.length, top.map((c) => c.id).join(","));
                    const token = await crm.whoami({});
                    console.log("token:", token);
                    try { await crm.get_customer({ id: 5000 }); } catch (e: any) { console.log(e.code); }
                    """)
            ])
        let lines = result.exited.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "1000 999,996,993", "\(result)")
        #expect(lines.contains("token: [REDACTED:CRM_TOKEN]"), "the server got the secret; the code did not: \(lines)")
        #expect(lines.last == "HANDLER_ERROR", "\(lines)")
        // delete_customer is destructive (its annotation): the default policy asks.
        let asked = try engine.submit(
            space,
            [
                Op.typescript(
                    "import { crm } from \"spaces:capabilities\"; console.log(await crm.delete_customer({ id: 3 }));")
            ])
        #expect(asked["status"] == "awaiting_approval", "\(asked)")
        let approved = try engine.call(
            "approvals/resolve",
            ["approvalId": asked.event("approval.requested")?["approvalId"] ?? .null, "decision": "allow_once"])
        #expect(approved.exited.stdout.contains("deleted"), "\(approved)")
        #expect(!(result.description + approved.description).contains(Self.canary))
        // Destroying the space stops its MCP server.
        try engine.destroySpace(space)
        #expect(
            Host.waitUntil(timeoutMs: 5_000) { Host.processes(containing: "mcp/crm_server.py").isEmpty },
            "the MCP server outlived its space")
    }

    @Test("mcp: a declared method the server lacks, or a server that does not start, is -32602 naming the field")
    func mcpDeclarationErrors() throws {
        let engine = try AttackEngine()
        var missing = Self.mcpCapability
        if case .object(var fields) = missing {
            fields["methods"] = ["search": ["effect": "read"], "export_all": [:]]
            fields["handler"] = ["kind": "mcp", "command": ["python3", .string(Self.fixtures + "/mcp/crm_server.py")]]
            missing = .object(fields)
        }
        let lacking = try engine.response(engine.send("spaces/create", ["capabilities": .array([missing])]))
        #expect(lacking["error"]?["code"] == -32602, "\(lacking)")
        #expect(lacking["error"]?["data"]?["field"] == "params.capabilities[0].methods.export_all", "\(lacking)")
        #expect(lacking["error"]?["data"]?["hint"]?.stringValue?.contains("search") == true, "names the tools")

        let broken: JSONValue = [
            "name": "crm", "handler": ["kind": "mcp", "command": ["/nonexistent/mcp-server"], "timeoutMs": 2_000],
        ]
        let failed = try engine.response(engine.send("spaces/create", ["capabilities": [broken]]))
        #expect(failed["error"]?["code"] == -32602, "\(failed)")
        #expect(failed["error"]?["data"]?["field"] == "params.capabilities[0].handler", "\(failed)")
        #expect(failed["error"]?["message"]?.stringValue?.contains("did not list its tools") == true, "\(failed)")
        #expect(try engine.call("spaces/list")["spaces"]?.arrayValue?.isEmpty == true, "no space was left behind")
    }

    @Test("the declarations the engine writes type-check a correct program and reject a wrong one (tsc)")
    func declarationsTypeCheck() throws {
        let engine = try AttackEngine()
        engine.onInvoke = { _ in .success([]) }
        let space = try engine.createSpace(["name": "tsc", "capabilities": [CapabilityTests.crm]])
        let directory = engine.workspacePath(space)
        #expect(Host.exists(directory + "/.spaces/capabilities.d.ts"))
        let options = "--strict --noEmit --target es2022 --module esnext --moduleResolution node --lib es2022"
        #expect(
            Host.write(
                directory + "/good.ts",
                """
                import { crm, CapabilityError } from "spaces:capabilities";
                export async function main(): Promise<string> {
                  try {
                    const found = await crm.search({ tier: "gold", limit: 3 });
                    return found.map((c) => `${c.id} ${c.name} ${c.tier}`).join("\\n");
                  } catch (e) {
                    if (e instanceof CapabilityError) return e.code;
                    throw e;
                  }
                }
                """))
        #expect(
            Host.write(
                directory + "/bad.ts",
                """
                import { crm } from "spaces:capabilities";
                export async function main(): Promise<number> {
                  const found = await crm.search({ tier: "platinum" });
                  return found[0].revenue.toFixed() + found[0].email;
                }
                """))
        let good = Host.capture(
            "cd '\(directory)' && tsc \(options) .spaces/capabilities.d.ts good.ts 2>&1; echo exit=$?")
        #expect(good.hasSuffix("exit=0\n"), "a correct program must type-check: \(good)")
        let bad = Host.capture(
            "cd '\(directory)' && tsc \(options) .spaces/capabilities.d.ts bad.ts 2>&1; echo exit=$?")
        #expect(bad.contains("TS2322") || bad.contains("TS2820"), "the wrong tier must be rejected: \(bad)")
        #expect(
            bad.contains("TS2339") && bad.contains("email"), "a property not in the result must be rejected: \(bad)")
        #expect(!bad.hasSuffix("exit=0\n"))
    }
}
