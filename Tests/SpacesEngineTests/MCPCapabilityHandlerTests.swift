import Foundation
import SpacesProtocol
import Testing

@testable import SpacesEngine

#if canImport(Glibc)
    import Glibc
#endif

/// Drives `Fixtures/mcp/crm_server.py`, a real MCP server built with the `mcp` package, through the handler.
/// Serialized: each test starts a Python server (about half a second of CPU), and the timeouts measured here should
/// not depend on how many start at once on a small machine.
@Suite(.serialized) struct MCPCapabilityHandlerTests {
    typealias Method = CapabilityDeclaration.Method

    static let secrets = ["CRM_TOKEN": "tok-7f3a"]

    init() {
        // The engine ignores SIGPIPE (a server that died must not take the engine with it); so do these tests.
        signal(SIGPIPE, SIG_IGN)
    }

    func capability(timeoutMs: Int = 20_000) -> CapabilityDeclaration {
        CapabilityDeclaration(
            name: "crm", description: nil, methods: [],
            handler: .mcp(
                command: ["python3", HandlerFixtures.path("mcp/crm_server.py")],
                env: ["CRM_TOKEN": "${secret:CRM_TOKEN}"], cwd: nil, timeoutMs: timeoutMs))
    }

    /// Runs `body` with a handler for the CRM server, and stops the handler afterwards, whatever happens.
    func withHandler(
        timeoutMs: Int = 20_000, secrets: [String: String] = secrets,
        _ body: (MCPCapabilityHandler) async throws -> Void
    ) async throws {
        if let problem = await HandlerFixtures.pythonMCPProblem() {
            throw HandlerFixtures.Problem(description: problem)
        }
        let handler = MCPCapabilityHandler(capability: capability(timeoutMs: timeoutMs), secrets: secrets)
        do {
            try await body(handler)
        } catch {
            await handler.stop()
            throw error
        }
        await handler.stop()
    }

    func method(_ name: String) -> Method {
        Method(name: name, description: nil, params: nil, result: nil, effect: .read, http: nil)
    }

    func call(_ handler: MCPCapabilityHandler, _ name: String, _ params: JSONValue = [:]) async
        -> Result<JSONValue, CapabilityFailure>
    {
        await handler.call(capability: capability(), method: method(name), params: params, secrets: Self.secrets)
    }

    /// Whether a process with this pid exists (a zombie counts).
    func exists(_ pid: pid_t) -> Bool { kill(pid, 0) == 0 }

    @Test func discoveryListsTheToolsWithTheirSchemasAndEffects() async throws {
        try await withHandler { handler in
            let tools = try await handler.discoverTools().get()
            #expect(
                Set(tools.map(\.name)) == ["search", "get_customer", "delete_customer", "whoami", "slow_report"])
            let methods = MCPCapabilityHandler.methods(from: tools, declared: [])
            #expect(methods.map(\.name) == ["delete_customer", "get_customer", "search", "slow_report", "whoami"])
            let byName = Dictionary(uniqueKeysWithValues: methods.map { ($0.name, $0) })
            #expect(byName["search"]?.effect == .read)
            #expect(byName["delete_customer"]?.effect == .destructive)
            #expect(byName["search"]?.description?.contains("Customers") == true)
            let properties = try #require(byName["search"]?.params?["properties"]?.objectValue)
            #expect(Set(properties.keys) == ["q", "tier", "limit"])
            #expect(byName["get_customer"]?.params?["required"] == ["id"])
            // The server wraps a list in {"result": …}; the method's result schema is the list's, with its $defs.
            let searchResult = try #require(byName["search"]?.result)
            #expect(searchResult["type"] == "array")
            #expect(searchResult["$defs"]?["Customer"] != nil)
            #expect(byName["whoami"]?.result?["type"] == "string")
            #expect(byName["get_customer"]?.result?["required"]?.arrayValue?.count == 5)
            for method in methods {
                for schema in [method.params, method.result].compactMap({ $0 }) {
                    #expect(JSONSchemaValidator.problem(in: schema) == nil, "\(method.name): \(schema)")
                }
            }
        }
    }

    @Test func declaredMethodsTakeTheToolsSchemasWhereTheyHaveNone() async throws {
        try await withHandler { handler in
            let tools = try await handler.discoverTools().get()
            let declared = [
                Method(
                    name: "search", description: "Find customers", params: nil, result: nil, effect: .write, http: nil),
                Method(
                    name: "get_customer", description: nil, params: ["type": "object"], result: nil, effect: .read,
                    http: nil),
                method("no_such_tool"),
            ]
            let methods = MCPCapabilityHandler.methods(from: tools, declared: declared)
            #expect(methods.map(\.name) == ["search", "get_customer", "no_such_tool"])
            #expect(methods[0].description == "Find customers")
            #expect(methods[0].effect == .write)
            #expect(methods[0].params?["properties"]?["q"] != nil)
            #expect(methods[1].params == ["type": "object"])
            #expect(methods[1].result?["properties"]?["tier"] != nil)
            #expect(MCPCapabilityHandler.missingTools(declared: declared, tools: tools) == ["no_such_tool"])
        }
    }

    @Test func effectsFollowTheAnnotations() {
        #expect(MCPTool(name: "a", readOnlyHint: true, destructiveHint: true).effect == .read)
        #expect(MCPTool(name: "b", readOnlyHint: false, destructiveHint: false).effect == .write)
        #expect(MCPTool(name: "c").effect == .destructive)
        #expect(MCPTool(name: "d", destructiveHint: true).effect == .destructive)
        let tools = [MCPTool(name: "ok-name"), MCPTool(name: "has space"), MCPTool(name: "9lives")]
        #expect(MCPCapabilityHandler.methods(from: tools, declared: []).map(\.name) == ["ok-name"])
    }

    @Test func searchReturnsRecordsAsJSONMatchingTheirSchema() async throws {
        try await withHandler { handler in
            let tools = try await handler.discoverTools().get()
            let all = try #require(try await call(handler, "search").get().arrayValue)
            #expect(all.count == 1000)
            #expect(
                all.first == ["id": 1, "name": "Globex #1", "tier": "silver", "region": "amer", "annualRevenue": 1125])
            let gold = try #require(try await call(handler, "search", ["tier": "gold"]).get().arrayValue)
            #expect(gold.count == 333)
            #expect(gold.allSatisfy { $0["tier"] == "gold" })
            let acme = try #require(try await call(handler, "search", ["q": "ACME", "limit": 5]).get().arrayValue)
            #expect(acme.map { $0["id"] } == [10, 20, 30, 40, 50])
            // The engine checks every result against the method's result schema: the unwrapped list must pass.
            let schema = try #require(
                MCPCapabilityHandler.methods(from: tools, declared: []).first { $0.name == "search" }?.result)
            #expect(
                JSONSchemaValidator(document: schema).validate(.array(all), schemaAt: "#", instancePath: "result")
                    .isEmpty)
            let one = try await call(handler, "get_customer", ["id": 42]).get()
            #expect(one["id"] == 42)
            #expect(one["name"] == "Initech #42")
        }
    }

    @Test func anUnknownCustomerIsAHandlerError() async throws {
        try await withHandler { handler in
            let result = await call(handler, "get_customer", ["id": 5000])
            guard case .failure(let failure) = result else {
                Issue.record("expected a failure, got \(result)")
                return
            }
            #expect(failure.code == .handlerError)
            #expect(failure.message.contains("no customer with id 5000"))
            // The server is still there for the next call.
            let next = try await call(handler, "get_customer", ["id": 1]).get()
            #expect(next["id"] == 1)
        }
    }

    @Test func paramsThatAreNotAnObjectAreInvalid() async throws {
        try await withHandler { handler in
            let result = await call(handler, "search", ["not", "an", "object"])
            guard case .failure(let failure) = result else {
                Issue.record("expected a failure, got \(result)")
                return
            }
            #expect(failure.code == .invalidParams)
            #expect(handler.serverPID == nil)
        }
    }

    @Test func theServerEnvironmentHasTheSecretFilledIn() async throws {
        try await withHandler { handler in
            let token = try await call(handler, "whoami").get()
            #expect(token == "tok-7f3a")
        }
    }

    @Test func aServerDiscoveredWithoutSecretsIsRestartedWithThem() async throws {
        try await withHandler(secrets: [:]) { handler in
            _ = try await handler.discoverTools().get()
            let first = try #require(handler.serverPID)
            #expect(try await call(handler, "whoami").get() == "tok-7f3a")
            #expect(handler.serverPID != first)
        }
    }

    @Test func stopLeavesNoProcessBehind() async throws {
        try await withHandler { handler in
            #expect(try await call(handler, "whoami").get() == "tok-7f3a")
            let pid = try #require(handler.serverPID)
            #expect(exists(pid))
            let start = ContinuousClock.now
            await handler.stop()
            #expect(ContinuousClock.now - start < .seconds(2))
            #expect(!exists(pid), "the server \(pid) (or its zombie) is still there")
            #expect(kill(-pid, 0) != 0, "something is left in the server's process group")
            let after = await call(handler, "whoami")
            guard case .failure(let failure) = after else {
                Issue.record("a call after stop() succeeded")
                return
            }
            #expect(failure.code == .handlerError)
        }
    }

    @Test func aServerKilledDuringACallFailsItAndTheNextCallRestartsIt() async throws {
        try await withHandler { handler in
            #expect(try await call(handler, "whoami").get() == "tok-7f3a")
            let pid = try #require(handler.serverPID)
            async let slow = call(handler, "slow_report", ["seconds": 10])
            try await Task.sleep(for: .milliseconds(300))
            kill(pid, SIGKILL)
            let result = await slow
            guard case .failure(let failure) = result else {
                Issue.record("expected a failure, got \(result)")
                return
            }
            #expect(failure.code == .handlerError)
            #expect(failure.message.contains("killed by signal 9"), "\(failure.message)")
            #expect(try await call(handler, "whoami").get() == "tok-7f3a")
            let restarted = try #require(handler.serverPID)
            #expect(restarted != pid)
            #expect(!exists(pid))
        }
    }

    @Test func aServerKilledBetweenCallsIsRestartedByTheNextCall() async throws {
        try await withHandler { handler in
            _ = try await call(handler, "whoami").get()
            let pid = try #require(handler.serverPID)
            kill(pid, SIGKILL)
            // Reaped by the handler's reaper thread: gone, zombie included.
            let deadline = ContinuousClock.now + .seconds(5)
            while exists(pid), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(!exists(pid))
            #expect(try await call(handler, "get_customer", ["id": 7]).get()["id"] == 7)
            #expect(handler.serverPID != pid)
        }
    }

    @Test func aCallWithNoAnswerInTimeIsATimeoutAndTheServerGoesOn() async throws {
        try await withHandler(timeoutMs: 800) { handler in
            _ = try await call(handler, "whoami").get()
            let pid = handler.serverPID
            let start = ContinuousClock.now
            let result = await call(handler, "slow_report", ["seconds": 3])
            guard case .failure(let failure) = result else {
                Issue.record("expected a failure, got \(result)")
                return
            }
            #expect(failure.code == .timeout)
            #expect(ContinuousClock.now - start < .seconds(2))
            #expect(try await call(handler, "whoami").get() == "tok-7f3a")
            #expect(handler.serverPID == pid)
        }
    }

    @Test func concurrentCallsShareOneServer() async throws {
        try await withHandler { handler in
            let ids = try await withThrowingTaskGroup(of: JSONValue.self) { group in
                for id in 1...16 {
                    group.addTask {
                        try await call(handler, "get_customer", ["id": JSONValue(id)]).get()["id"] ?? .null
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(ids) == Set((1...16).map { JSONValue($0) }))
        }
    }

    @Test func aCommandThatCannotStartIsAHandlerError() async throws {
        let capability = CapabilityDeclaration(
            name: "crm", description: nil, methods: [],
            handler: .mcp(command: ["no-such-mcp-server-here"], env: [:], cwd: nil, timeoutMs: 2000))
        let result = await MCPCapabilityHandler(capability: capability).discoverTools()
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(failure.code == .handlerError)
        #expect(failure.message.contains("no-such-mcp-server-here"))
    }

    @Test func aServerThatExitsAtOnceSaysHow() async throws {
        let capability = CapabilityDeclaration(
            name: "crm", description: nil, methods: [],
            handler: .mcp(command: ["sh", "-c", "exit 3"], env: [:], cwd: "/", timeoutMs: 2000))
        let result = await MCPCapabilityHandler(capability: capability).discoverTools()
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(failure.code == .handlerError)
        #expect(failure.message.contains("exited with status 3"), "\(failure.message)")
    }

    @Test func oneCallRoundTripIsFast() async throws {
        try await withHandler { handler in
            let startup = ContinuousClock.now
            _ = try await call(handler, "get_customer", ["id": 1]).get()
            let firstCall = ContinuousClock.now - startup
            let rounds = 200
            let start = ContinuousClock.now
            for id in 1...rounds { _ = try await call(handler, "get_customer", ["id": JSONValue(id)]).get() }
            let each = (ContinuousClock.now - start) / rounds
            print("mcp: first call (start + initialize + tools/list + call) \(firstCall), then \(each) per call")
            #expect(each < .milliseconds(50))
        }
    }
}
