import Foundation
import SpacesProtocol
import Testing

@testable import SpacesEngine

/// The Python fixtures the capability handler tests run: found from this file's path, started with `python3`.
enum HandlerFixtures {
    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    /// `Fixtures/<relative>` of the repository.
    static func path(_ relative: String, file: String = #filePath) -> String {
        let testsFolder = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent()
        return testsFolder.deletingLastPathComponent().appendingPathComponent("Fixtures/" + relative).path
    }

    /// Why python3 with the `mcp` package cannot run here, or nil when it can. Asked once.
    static func pythonMCPProblem() async -> String? { await mcpCheck.value }

    private static let mcpCheck = Task<String?, Never> {
        await offThePool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", "import mcp"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            do {
                try process.run()
            } catch {
                return "cannot run /usr/bin/env python3: \(error)"
            }
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                return "python3 with the mcp package is needed (python3 -c 'import mcp' exited with "
                    + "\(process.terminationStatus)): run scripts/setup --build-tests, or pip install mcp"
            }
            return nil
        }
    }

    /// Runs blocking work (waiting for a process, reading a pipe) on a thread of its own: blocking the
    /// cooperative pool would stall the other tests, and the timeouts that the handlers measure with it.
    static func offThePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            startThread(name: "test-fixture") { continuation.resume(returning: body()) }
        }
    }
}

/// `Fixtures/http/echo_server.py`, started on a free port of 127.0.0.1 for one test.
///
/// `@unchecked Sendable`: its process and pipe are set once, before it is shared, and only closed afterwards.
final class EchoServer: @unchecked Sendable {
    let process: Process
    private let input: Pipe
    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)" }

    private init(process: Process, input: Pipe, port: Int) {
        self.process = process
        self.input = input
        self.port = port
    }

    /// Starts the server and reads the port it prints first.
    static func start() async throws -> EchoServer {
        let started = await HandlerFixtures.offThePool { () -> Result<EchoServer, HandlerFixtures.Problem> in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", HandlerFixtures.path("http/echo_server.py"), "0"]
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            do {
                try process.run()
            } catch {
                return .failure(HandlerFixtures.Problem(description: "cannot run /usr/bin/env python3: \(error)"))
            }
            var firstLine = Data()
            while !firstLine.contains(0x0A) {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                firstLine.append(chunk)
            }
            let text = String(decoding: firstLine, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            guard let port = Int(text) else {
                process.terminate()
                return .failure(
                    HandlerFixtures.Problem(
                        description: "the echo server did not print its port (is python3 on PATH?): '\(text)'"))
            }
            return .success(EchoServer(process: process, input: input, port: port))
        }
        return try started.get()
    }

    /// Closes its stdin and sends SIGTERM; it exits on either.
    func stop() {
        try? input.fileHandleForWriting.close()
        process.terminate()
    }
}

@Suite struct HTTPCapabilityHandlerTests {
    typealias Method = CapabilityDeclaration.Method
    typealias Route = CapabilityDeclaration.HTTPRoute

    static let secrets = ["CRM_TOKEN": "tok-7f3a"]

    func capability(
        _ baseURL: String, headers: [(name: String, value: String)] = [], timeoutMs: Int = 5000
    ) -> CapabilityDeclaration {
        CapabilityDeclaration(
            name: "crm", description: nil, methods: [],
            handler: .http(baseURL: baseURL, headers: headers, timeoutMs: timeoutMs))
    }

    func method(_ name: String, _ verb: String? = nil, _ path: String? = nil) -> Method {
        Method(
            name: name, description: nil, params: nil, result: nil, effect: .read,
            http: verb.map { Route(method: $0, path: path ?? "/" + name) })
    }

    func build(
        _ route: Route?, name: String = "op", base: String = "http://api.test/v1/", params: JSONValue,
        headers: [(name: String, value: String)] = []
    ) -> Result<HTTPCapabilityHandler.Request, CapabilityFailure> {
        HTTPCapabilityHandler.request(
            route: route, methodName: name, baseURL: base, headers: headers, params: params,
            secrets: Self.secrets)
    }

    func call(
        _ server: EchoServer, _ method: Method, _ params: JSONValue = [:],
        headers: [(name: String, value: String)] = [], timeoutMs: Int = 5000
    ) async -> Result<JSONValue, CapabilityFailure> {
        await HTTPCapabilityHandler().call(
            capability: capability(server.baseURL + "/", headers: headers, timeoutMs: timeoutMs), method: method,
            params: params, secrets: Self.secrets)
    }

    // MARK: Building requests

    @Test func pathParamsAreURLEncodedAndTakenOutOfTheQuery() throws {
        let request = try build(
            Route(method: "GET", path: "/customers/{id}/notes/{slug}"),
            params: ["id": 42, "slug": "a b/ü~-._?&", "filter": "x y"]
        ).get()
        #expect(request.method == "GET")
        #expect(request.url == "http://api.test/v1/customers/42/notes/a%20b%2F%C3%BC~-._%3F%26?filter=x%20y")
        #expect(request.body == nil)
    }

    @Test func numbersAndBooleansInThePathAreTheirJSONText() throws {
        let request = try build(Route(method: "DELETE", path: "/x/{n}/{b}"), params: ["n": 2.5, "b": true]).get()
        #expect(request.url == "http://api.test/v1/x/2.5/true")
    }

    @Test func aPlaceholderWithNoParamIsInvalidParams() {
        let result = build(Route(method: "GET", path: "/customers/{id}"), params: ["name": "x"])
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(failure.code == .invalidParams)
        #expect(failure.message.contains("'id'"))
    }

    @Test func theQueryRepeatsArraysAndEncodesObjectsAsJSON() throws {
        let request = try build(
            Route(method: "GET", path: "/search"),
            params: [
                "tier": ["gold", "silver"], "limit": 10, "exact": false, "skip": nil,
                "where": ["region": "emea"], "rows": [["a": 1]],
            ]
        ).get()
        #expect(
            request.url
                == "http://api.test/v1/search?exact=false&limit=10&rows=%5B%7B%22a%22%3A1%7D%5D&tier=gold&tier=silver"
                + "&where=%7B%22region%22%3A%22emea%22%7D")
    }

    @Test func postSendsTheRemainingParamsAsJSON() throws {
        let request = try build(Route(method: "POST", path: "/customers/{id}"), params: ["id": 7, "name": "Ada"]).get()
        #expect(request.url == "http://api.test/v1/customers/7")
        #expect(try JSONValue.parse(request.body ?? []) == ["name": "Ada"])
        #expect(request.header("content-type") == "application/json")
        let empty = try build(Route(method: "PUT", path: "/reset"), params: .null).get()
        #expect(empty.body == Array("{}".utf8))
    }

    @Test func theDefaultRouteIsPostToTheMethodName() throws {
        let request = try build(nil, name: "search", params: [:]).get()
        #expect(request.method == "POST")
        #expect(request.url == "http://api.test/v1/search")
        #expect(request.body == Array("{}".utf8))
    }

    @Test func headersGetSecretsAndDefaultsUnlessDeclared() throws {
        let request = try build(
            Route(method: "GET", path: "/me"), params: [:],
            headers: [("Authorization", "Bearer ${secret:CRM_TOKEN}"), ("accept", "text/csv")]
        ).get()
        #expect(request.header("Authorization") == "Bearer tok-7f3a")
        #expect(request.header("Accept") == "text/csv")
        #expect(request.header("User-Agent") == "agent-spaces")
        #expect(request.header("Content-Type") == nil)
        #expect(request.headers.filter { $0.name.lowercased() == "accept" }.count == 1)
    }

    @Test func aSecretWithALineBreakCannotAddHeaders() {
        let result = HTTPCapabilityHandler.request(
            route: nil, methodName: "op", baseURL: "http://api.test", headers: [("X-Key", "${secret:K}")],
            params: [:], secrets: ["K": "v\r\nX-Evil: 1"])
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(failure.code == .handlerError)
        #expect(!failure.message.contains("Evil"))
    }

    // MARK: Against a real server

    @Test func getSendsTheQueryAndReturnsTheJSONList() async throws {
        let server = try await EchoServer.start()
        defer { server.stop() }
        let gold = try await call(server, method("list", "GET", "/customers"), ["tier": "gold"]).get()
        let records = try #require(gold.arrayValue)
        #expect(records.count == 10)
        #expect(records.allSatisfy { $0["tier"] == "gold" })
        let one = try await call(server, method("get", "GET", "/customers/{id}"), ["id": 4]).get()
        #expect(one["name"] == "Customer 0004")
    }

    @Test func postSendsJSONAndTheFilledSecretHeaderArrives() async throws {
        let server = try await EchoServer.start()
        defer { server.stop() }
        let echoed = try await call(
            server, method("update", "POST", "/echo/customers/{id}"), ["id": "a b/c", "note": "ünïcode", "n": 3],
            headers: [("Authorization", "Bearer ${secret:CRM_TOKEN}")]
        ).get()
        #expect(echoed["method"] == "POST")
        #expect(echoed["rawPath"] == "/echo/customers/a%20b%2Fc")
        #expect(echoed["headers"]?["authorization"] == "Bearer tok-7f3a")
        #expect(echoed["headers"]?["content-type"] == "application/json")
        #expect(echoed["headers"]?["accept"] == "application/json")
        #expect(echoed["headers"]?["user-agent"] == "agent-spaces")
        let body = try JSONValue.parse(try #require(echoed["body"]?.stringValue))
        #expect(body == ["note": "ünïcode", "n": 3])
    }

    @Test func theDefaultRoutePostsAnEmptyObject() async throws {
        let server = try await EchoServer.start()
        defer { server.stop() }
        let echoed = try await call(server, method("echo"), .null).get()
        #expect(echoed["method"] == "POST")
        #expect(echoed["path"] == "/echo")
        #expect(echoed["body"] == "{}")
    }

    @Test func aNotFoundIsAHandlerErrorWithTheStatusAndBody() async throws {
        let server = try await EchoServer.start()
        defer { server.stop() }
        let result = await call(server, method("get", "GET", "/customers/{id}"), ["id": 99])
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(failure.code == .handlerError)
        #expect(
            failure.message == "HTTP 404 from GET \(server.baseURL)/customers/99: {\"error\": \"no customer 99\"}")
        #expect(!failure.hint.isEmpty)
    }

    @Test func aSlowAnswerIsATimeout() async throws {
        let server = try await EchoServer.start()
        defer { server.stop() }
        let start = ContinuousClock.now
        let result = await call(server, method("slow", "GET", "/slow"), timeoutMs: 400)
        let elapsed = ContinuousClock.now - start
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(failure.code == .timeout)
        #expect(failure.message.contains("400 ms"))
        #expect(elapsed < .seconds(3))
    }

    @Test func aBodyOverSixteenMebibytesIsTooLarge() async throws {
        let server = try await EchoServer.start()
        defer { server.stop() }
        let result = await call(server, method("big", "GET", "/big"))
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got a result")
            return
        }
        #expect(failure.code == .resultTooLarge)
    }

    @Test func aRedirectIsNotFollowed() async throws {
        let server = try await EchoServer.start()
        defer { server.stop() }
        let result = await call(
            server, method("moved", "GET", "/redirect"), headers: [("Authorization", "Bearer ${secret:CRM_TOKEN}")])
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(failure.code == .handlerError)
        #expect(failure.message.contains("HTTP 302"))
        #expect(failure.message.contains("/echo?redirected=1"))
        let seen = try await call(server, method("requests", "GET", "/requests")).get()
        #expect(seen == [["GET", "/redirect"]])
    }

    @Test func textIsAStringAndNoBodyIsNull() async throws {
        let server = try await EchoServer.start()
        defer { server.stop() }
        #expect(try await call(server, method("text", "GET", "/text")).get() == "hello, plain text")
        #expect(try await call(server, method("empty", "GET", "/empty")).get() == .null)
    }

    @Test func aRefusedConnectionIsAHandlerErrorNamingTheURL() async throws {
        let server = try await EchoServer.start()
        let deadURL = server.baseURL
        server.stop()
        let result = await HTTPCapabilityHandler().call(
            capability: capability(deadURL), method: method("get", "GET", "/customers"), params: [:], secrets: [:])
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(failure.code == .handlerError)
        #expect(failure.message.hasPrefix("GET \(deadURL)/customers failed: "))
    }
}
