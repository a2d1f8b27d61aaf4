import SpacesConformance
import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Capabilities called from real TypeScript in a real space: every call crosses to the engine, which checks it
/// against the schema and the policy, asks a person when told to, audits it and answers it through its handler.
@Suite("Capabilities from code in a space (needs user namespaces)")
struct CapabilityTests {
    static let customerSchema: JSONValue = [
        "type": "object", "required": ["id", "name", "tier"],
        "properties": [
            "id": ["type": "integer"], "name": ["type": "string"],
            "tier": ["enum": ["gold", "silver", "bronze"]], "revenue": ["type": "number"],
        ],
    ]

    /// A `crm` capability answered by the test client: `search` (read), `delete` (destructive by default).
    static let crm: JSONValue = [
        "name": "crm", "description": "Customer records",
        "methods": [
            "search": [
                "description": "Find customers.", "effect": "read",
                "params": [
                    "type": "object", "required": ["tier"], "additionalProperties": false,
                    "properties": ["tier": ["enum": ["gold", "silver", "bronze"]], "limit": ["type": "integer"]],
                ],
                "result": ["type": "array", "items": customerSchema],
            ],
            "delete": [
                "params": ["type": "object", "required": ["id"], "properties": ["id": ["type": "integer"]]],
                "result": ["type": "object"],
            ],
        ],
        "handler": ["kind": "client", "timeoutMs": 2_000],
    ]

    static func records(_ count: Int) -> JSONValue {
        .array(
            (1...count).map { id in
                let tier = ["gold", "silver", "bronze"][id % 3]
                return [
                    "id": JSONValue(id), "name": .string("Customer \(id)"), "tier": .string(tier),
                    "revenue": JSONValue(id * 1000),
                ]
            })
    }

    /// An engine whose client answers the crm capability like a real CRM of 1,000 customers.
    static func engine(policy: JSONValue = "default") throws -> (AttackEngine, String) {
        let engine = try AttackEngine()
        let all = records(1000)
        engine.onInvoke = { params in
            switch params["method"]?.stringValue {
            case "search":
                let tier = params["params"]?["tier"]
                return .success(.array((all.arrayValue ?? []).filter { $0["tier"] == tier }))
            case "delete":
                return .success(["deleted": params["params"]?["id"] ?? .null])
            default:
                return .failure(AttackFailure(description: "no such method"))
            }
        }
        let space = try engine.createSpace(["name": "caps", "policy": policy, "capabilities": [crm]])
        return (engine, space)
    }

    @Test("a program imports crm, filters 1,000 records in code, and prints only the three that matter")
    func clientHandlerEndToEnd() throws {
        let (engine, space) = try Self.engine()
        let result = try engine.submit(
            space,
            [
                Op.typescript(
                    """
                    import { crm } from "spaces:capabilities";
                    const gold = await crm.search({ tier: "gold" });
                    const top = gold.sort((a, b) => b.revenue - a.revenue).slice(0, 3);
                    console.log(gold.length, top.map((c) => c.name).join(", "));
                    """)
            ])
        #expect(result.exited.stdout == "333 Customer 999, Customer 996, Customer 993\n", "\(result)")
        let called = result.event("capability.called")
        #expect(called?["capability"] == "crm" && called?["method"] == "search" && called?["ok"] == true)
        #expect(
            (called?["bytes"]?.intValue ?? 0) > 20_000, "the program got all 333 records: \(String(describing: called))"
        )
        #expect(engine.invocations.count == 1)
        #expect(engine.invocations.first?["spaceId"] == .string(space))
        // The call is in the audit log, decided and answered.
        let audit = try engine.call("audit/read", ["spaceId": .string(space)])
        let kinds = (audit["entries"]?.arrayValue ?? []).compactMap { $0["kind"]?.stringValue }
        #expect(kinds.contains("capability.call") && kinds.contains("capability.result"), "\(kinds)")
    }

    @Test("the engine writes .spaces/capabilities.d.ts into the workspace")
    func declarationsWritten() throws {
        let (engine, space) = try Self.engine()
        let read = try engine.submit(space, [Op.read(".spaces/capabilities.d.ts")])
        let content = read.event("file.content")?["content"]?.stringValue ?? ""
        #expect(content.contains("declare module \"spaces:capabilities\""), "\(content.prefix(400))")
        #expect(content.contains("search("), "\(content.prefix(400))")
    }

    @Test("params that break the schema, an unknown method and an unknown capability fail with INVALID_PARAMS")
    func invalidCalls() throws {
        let (engine, space) = try Self.engine()
        let result = try engine.submit(
            space,
            [
                Op.typescript(
                    """
                    import caps, { crm, CapabilityError } from "spaces:capabilities";
                    for (const attempt of [
                      () => crm.search({ tier: "platinum" }),
                      () => crm.search({ tier: "gold", extra: 1 }),
                      () => (crm as any).serch({ tier: "gold" }),
                      () => (caps as any).crm.search(),
                    ]) {
                      try { await attempt(); console.log("passed?!"); }
                      catch (e) { console.log(e instanceof CapabilityError, e.code, e.message); }
                    }
                    """)
            ])
        let lines = result.exited.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(result.exited)")
        #expect(lines.allSatisfy { $0.hasPrefix("true INVALID_PARAMS") }, "\(lines)")
        #expect(lines[0].contains("params.tier"), "the error names the field: \(lines[0])")
        #expect(lines[2].contains("no method 'serch'"), "\(lines[2])")
        #expect(engine.invocations.isEmpty, "no invalid call reached the client")
    }

    @Test("a call the policy denies never reaches the handler; the code sees DENIED with the rule's reason")
    func deniedByPolicy() throws {
        let (engine, space) = try Self.engine(policy: ["capabilities": ["deny": ["crm.delete"]]])
        let result = try engine.submit(
            space,
            [
                Op.typescript(
                    """
                    import { crm } from "spaces:capabilities";
                    try { await crm.delete({ id: 7 }); console.log("deleted?!"); }
                    catch (e: any) { console.log(e.code, "|", e.message, "|", e.hint); }
                    """)
            ])
        let out = result.exited.stdout
        #expect(out.hasPrefix("DENIED | crm.delete matches capabilities.deny \"crm.delete\""), "\(out)")
        #expect(out.contains("remove \"crm.delete\" from capabilities.deny"), "\(out)")
        #expect(engine.invocations.isEmpty)
        #expect(result.event("capability.called")?["error"]?["code"] == "DENIED")
    }

    @Test("ask: the program's call waits while the batch answers awaiting_approval; allow lets it go on")
    func askThenAllow() throws {
        let (engine, space) = try Self.engine()
        let id = engine.send(
            "operations/submit",
            [
                "spaceId": .string(space),
                "operations": [
                    Op.typescript(
                        """
                        import { crm } from "spaces:capabilities";
                        console.log("before");
                        const r = await crm.delete({ id: 7 });
                        console.log("after", JSON.stringify(r));
                        """, timeoutMs: 5_000),
                    Op.shell("echo next"),
                ],
            ])
        let first = try engine.result(id)
        #expect(first["status"] == "awaiting_approval", "\(first)")
        let requested = first.event("approval.requested")
        #expect(requested?["what"]?.stringValue == "call crm.delete({\"id\":7})", "\(String(describing: requested))")
        #expect(requested?["why"]?.stringValue?.contains("destructive") == true)
        #expect(engine.invocations.isEmpty, "nothing reached the client before the approval")
        // The program keeps waiting, longer than its own timeout: the clock stops while a call waits.
        usleep(6_000_000)
        let approvalId = requested?["approvalId"] ?? .null
        let rest = try engine.call(
            "approvals/resolve", ["approvalId": approvalId, "decision": "allow_once"], timeoutMs: 30_000)
        #expect(rest["status"] == "completed", "\(rest)")
        #expect(rest.event("approval.resolved")?["decision"] == "allow_once")
        let outputs = rest.events.filter { $0["type"] == "command.exited" }.map { $0["stdout"]?.stringValue ?? "" }
        #expect(outputs == ["before\nafter {\"deleted\":7}\n", "next\n"], "\(rest)")
        #expect(engine.invocations.count == 1)
    }

    @Test("ask then deny: the code gets APPROVAL_DENIED and goes on; allow_for_space grants the next calls")
    func askThenDenyAndGrant() throws {
        let (engine, space) = try Self.engine()
        let program = Op.typescript(
            """
            import { crm } from "spaces:capabilities";
            try { await crm.delete({ id: 1 }); console.log("deleted"); }
            catch (e: any) { console.log(e.code); }
            """)
        let first = try engine.submit(space, [program])
        #expect(first["status"] == "awaiting_approval")
        let denied = try engine.call(
            "approvals/resolve",
            ["approvalId": first.event("approval.requested")?["approvalId"] ?? .null, "decision": "deny"])
        #expect(denied.exited.stdout == "APPROVAL_DENIED\n", "\(denied)")
        #expect(engine.invocations.isEmpty)

        let second = try engine.submit(space, [program])
        let granted = try engine.call(
            "approvals/resolve",
            ["approvalId": second.event("approval.requested")?["approvalId"] ?? .null, "decision": "allow_for_space"])
        #expect(granted.exited.stdout == "deleted\n", "\(granted)")
        let third = try engine.submit(space, [program])
        #expect(third["status"] == "completed" && third.exited.stdout == "deleted\n", "granted: \(third)")
        #expect(engine.invocations.count == 2)
    }

    @Test("bounds: params over 1 MiB are INVALID_PARAMS; past 64 calls in flight, more are DENIED until some end")
    func callBounds() throws {
        let (engine, space) = try Self.engine()
        engine.onInvoke = { _ in nil }  // nobody answers: every admitted call stays in flight until its timeout
        let result = try engine.submit(
            space,
            [
                Op.typescript(
                    """
                    import { crm } from "spaces:capabilities";
                    try { await crm.search({ tier: "gold", pad: "x".repeat(1_100_000) } as any); }
                    catch (e: any) { console.log(e.code, e.message.includes("over the limit of 1048576")); }
                    const settled = await Promise.allSettled(
                      Array.from({ length: 70 }, () => crm.search({ tier: "gold" })));
                    const codes: Record<string, number> = {};
                    for (const s of settled) {
                      const code = s.status === "rejected" ? (s.reason as any).code : "OK";
                      codes[code] = (codes[code] ?? 0) + 1;
                    }
                    console.log(Object.entries(codes).sort().map(([code, n]) => `${code}=${n}`).join(" "));
                    """, timeoutMs: 30_000)
            ])
        let lines = result.exited.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "INVALID_PARAMS true", "\(result)")
        #expect(lines.last == "DENIED=6 TIMEOUT=64", "\(result)")
        #expect(engine.invocations.count == 64, "only admitted calls reach the client")
    }

    @Test("a result that breaks its schema, a client error and a client that never answers reach the code")
    func handlerFailures() throws {
        let (engine, space) = try Self.engine()
        var mode = "bad"
        engine.onInvoke = { _ in
            switch mode {
            case "bad": return .success([["id": "not a number"]])
            case "error": return .failure(AttackFailure(description: "CRM is down"))
            default: return nil
            }
        }
        let program = Op.typescript(
            """
            import { crm } from "spaces:capabilities";
            try { await crm.search({ tier: "gold" }); console.log("ok?!"); }
            catch (e: any) { console.log(e.code, "|", e.message); }
            """)
        let bad = try engine.submit(space, [program])
        #expect(bad.exited.stdout.hasPrefix("HANDLER_ERROR | crm.search answered a result that does not match"))
        mode = "error"
        let failed = try engine.submit(space, [program])
        #expect(failed.exited.stdout.contains("HANDLER_ERROR |") && failed.exited.stdout.contains("CRM is down"))
        mode = "silent"
        let silent = try engine.submit(space, [program])
        #expect(silent.exited.stdout.hasPrefix("TIMEOUT | crm.search did not answer within 2000 ms"), "\(silent)")
    }

    @Test("a program that outlives its operation cannot call capabilities any more")
    func callAfterTheOperationEnded() throws {
        let (engine, space) = try Self.engine()
        _ = try engine.submit(
            space,
            [
                Op.shell(
                    """
                    cat > late.ts <<'EOF'
                    import { crm } from "spaces:capabilities";
                    await Bun.sleep(1500);
                    try { await crm.search({ tier: "gold" }); await Bun.write("late.txt", "called"); }
                    catch (e: any) { await Bun.write("late.txt", e.code + " " + e.message); }
                    EOF
                    setsid bun late.ts >/dev/null 2>&1 &
                    echo started
                    """)
            ])
        usleep(4_000_000)
        let read = try engine.submit(space, [Op.read("late.txt")])
        let content = read.event("file.content")?["content"]?.stringValue ?? ""
        #expect(content.hasPrefix("DENIED the operation that started this program has ended"), "\(read)")
        #expect(engine.invocations.isEmpty)
    }

    @Test("a capability is declared with a clear -32602 naming the field when it is wrong")
    func invalidDeclarations() throws {
        let engine = try AttackEngine()
        let cases: [(JSONValue, String)] = [
            (["name": "default", "methods": ["a": [:]], "handler": ["kind": "client"]], "params.capabilities[0].name"),
            (["name": "crm", "methods": ["a": [:]]], "params.capabilities[0].handler"),
            (["name": "crm", "methods": [:], "handler": ["kind": "client"]], "params.capabilities[0].methods"),
            (
                ["name": "crm", "methods": ["a": ["effect": "harmless"]], "handler": ["kind": "client"]],
                "params.capabilities[0].methods.a.effect"
            ),
            (
                ["name": "crm", "methods": ["a": ["params": ["type": "strnig"]]], "handler": ["kind": "client"]],
                "params.capabilities[0].methods.a.params"
            ),
            (
                [
                    "name": "crm", "methods": ["a": [:]],
                    "handler": ["kind": "http", "baseUrl": "https://x.example", "headers": ["X": "${secret:NOPE}"]],
                ], "params.capabilities[0].handler.headers.X"
            ),
            (
                ["name": "crm", "methods": ["a": [:]], "handler": ["kind": "ftp"]],
                "params.capabilities[0].handler.kind"
            ),
        ]
        for (declaration, field) in cases {
            let response = try engine.response(
                engine.send("spaces/create", ["capabilities": .array([declaration])]))
            #expect(response["error"]?["code"] == -32602, "\(declaration): \(response)")
            #expect(response["error"]?["data"]?["field"]?.stringValue == field, "\(declaration): \(response)")
        }
    }
}
