import Logging
import SpacesEngine
import SpacesProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The write end of the termination-signal pipe: set once before the handler is installed, then only read by
/// the handler, which may run on any thread at any time.
nonisolated(unsafe) private var terminationSignalFD: Int32 = -1

/// JSON-RPC 2.0 over newline-delimited stdin/stdout: framing, routing and concurrency, no product logic.
///
/// A reader thread reads stdin in large chunks and hands every complete line of a chunk to the serving task
/// at once. The serving task routes lines in arrival order without waiting for any request to finish: each
/// request runs in its own task, except that batches of one space are queued on that space's executor in
/// arrival order.
public final class StdioServer: Sendable {
    let output: OutputChannel
    let logger: Logger
    let maxLineBytes: Int
    /// The Model Context Protocol face, for sessions that speak MCP (MCPServer.swift).
    let mcp = MCPFace()
    private let engine = Mutex<Engine?>(nil)
    private let lifecycle = Mutex(Lifecycle.uninitialized)
    /// Messages routed but not yet answered; at end of input the server waits for them before exiting.
    private let unanswered = Mutex(0)
    /// Requests sent to the client (`capabilities/invoke`) and not yet answered, by id (`e-1`, `e-2`, …).
    private let outgoing = Mutex<OutgoingRequests>(OutgoingRequests())

    private struct OutgoingRequests {
        var next = 1
        var waiting: [String: CheckedContinuation<Result<JSONValue, RPCError>, Never>] = [:]
    }

    enum Lifecycle {
        case uninitialized
        case initialized
        case shuttingDown
    }

    public init(output: OutputChannel, logger: Logger, maxLineBytes: Int) {
        self.output = output
        self.logger = logger
        self.maxLineBytes = maxLineBytes
    }

    /// Routes SIGTERM and SIGINT to a pipe; returns its read end.
    static func installTerminationHandler() -> Int32 {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return -1 }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        terminationSignalFD = fds[1]
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            var byte: UInt8 = 1
            _ = write(terminationSignalFD, &byte, 1)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        sigaction(SIGTERM, &action, nil)
        sigaction(SIGINT, &action, nil)
        return fds[0]
    }

    public func attach(_ engine: Engine) {
        self.engine.withLock { $0 = engine }
        engine.setClientRequester { [weak self] method, params, timeoutMs in
            guard let self else {
                return .failure(RPCError(.internalError, "the server stopped", hint: "start a new engine"))
            }
            return await self.request(method, params: params, timeoutMs: timeoutMs)
        }
    }

    /// Sends a request to the client and waits for its answer, at most `timeoutMs` (then -32603).
    func request(_ method: String, params: JSONValue, timeoutMs: Int) async -> Result<JSONValue, RPCError> {
        let id = outgoing.withLock { state in
            defer { state.next += 1 }
            return "e-\(state.next)"
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(timeoutMs))
            guard !Task.isCancelled else { return }
            self?.settle(
                id,
                .failure(
                    RPCError(
                        .internalError, "the client did not answer \(method) within \(timeoutMs) ms",
                        hint: "answer every capabilities/invoke request, with a result or an error")))
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            outgoing.withLock { $0.waiting[id] = continuation }
            output.send(["jsonrpc": "2.0", "id": .string(id), "method": .string(method), "params": params])
        }
    }

    /// Resumes the request `id` waits on; later answers to it are ignored.
    private func settle(_ id: String, _ result: Result<JSONValue, RPCError>) {
        let waiter = outgoing.withLock { $0.waiting.removeValue(forKey: id) }
        waiter?.resume(returning: result)
    }

    /// A response from the client to one of our requests.
    private func receiveResponse(_ fields: [String: JSONValue]) {
        guard let id = fields["id"]?.stringValue else { return }
        if let result = fields["result"] {
            settle(id, .success(result))
        } else {
            let error = fields["error"]
            let message = error?["message"]?.stringValue ?? "the client answered with an error"
            let hint = error?["data"]?["hint"]?.stringValue ?? ""
            settle(id, .failure(RPCError(.internalError, message, hint: hint)))
        }
    }

    var currentEngine: Engine {
        engine.withLock { $0! }
    }

    /// Serves until stdin ends or `shutdown` is answered, then stops every space. Returns the exit code.
    public func run(inputFD: Int32 = 0) async -> Int32 {
        let maxLineBytes = self.maxLineBytes
        let (done, doneContinuation) = AsyncStream<Void>.makeStream()
        // SIGTERM and SIGINT stop the engine like the end of input: running work is cancelled, every space is
        // stopped, exit 0. The handler only writes a byte to a pipe (async-signal-safe); this thread does the rest.
        let signalFD = Self.installTerminationHandler()
        startThread(name: "signals") { [logger] in
            var byte: UInt8 = 0
            while true {
                let count = read(signalFD, &byte, 1)
                if count == 1 { break }
                if count < 0 && errno == EINTR { continue }
                return
            }
            logger.info("received a termination signal")
            doneContinuation.finish()
        }
        // The reader thread routes each line itself, in arrival order: routing never waits for a request to
        // finish (work runs in tasks), so reading goes on while requests run, with no hop per line.
        startThread(name: "stdin-reader") { [self] in
            var splitter = LineSplitter(maxLineBytes: maxLineBytes)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
            defer { buffer.deallocate() }
            var lines: [LineSplitter.Line] = []
            while true {
                let count = (try? FileDescriptorIO.read(inputFD, into: buffer)) ?? 0
                if count == 0 {
                    splitter.finish(into: &lines)
                } else {
                    splitter.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), into: &lines)
                }
                for line in lines { handle(line, stop: doneContinuation) }
                lines.removeAll(keepingCapacity: true)
                if count == 0 {
                    doneContinuation.finish()
                    return
                }
            }
        }
        for await _ in done { break }
        logger.info("stopping: cancelling running work and stopping every space")
        await mcp.end(currentEngine)
        await currentEngine.shutdown()
        // Cancelled batches still answer; give them a moment to be written before the process ends.
        for _ in 0..<1000 where unanswered.withLock({ $0 }) > 0 {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return 0
    }

    func handle(_ line: LineSplitter.Line, stop: AsyncStream<Void>.Continuation) {
        switch line {
        case .oversized(let byteCount):
            output.send(
                RPCMessage.error(
                    id: .null,
                    RPCError(
                        .invalidRequest, "line of \(byteCount) bytes is longer than the maximum of \(maxLineBytes)",
                        hint: "send smaller messages: split the batch, or write large files in parts")))
        case .complete(let bytes):
            if bytes.isEmpty || bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
            let message: JSONValue
            do {
                message = try JSONValue.parse(bytes)
            } catch {
                output.send(
                    RPCMessage.error(
                        id: .null,
                        RPCError(
                            .parseError, "parse error: \(error)",
                            hint: "send one complete JSON-RPC message per line, UTF-8, with no raw newlines inside")))
                return
            }
            if case .array(let elements) = message {
                handleBatch(elements, stop: stop)
            } else {
                unanswered.withLock { $0 += 1 }
                dispatch(message, stop: stop) { response in
                    if let response { self.output.send(response) }
                    self.unanswered.withLock { $0 -= 1 }
                }
            }
        }
    }

    /// A JSON-RPC batch: each element is dispatched as if alone; the answers go back together as one array.
    func handleBatch(_ elements: [JSONValue], stop: AsyncStream<Void>.Continuation) {
        guard !elements.isEmpty else {
            output.send(
                RPCMessage.error(
                    id: .null,
                    RPCError(.invalidRequest, "empty batch", hint: "send at least one request in a batch array")))
            return
        }
        unanswered.withLock { $0 += 1 }
        let collector = BatchCollector(count: elements.count) { responses in
            if !responses.isEmpty { self.output.send(.array(responses)) }
            self.unanswered.withLock { $0 -= 1 }
        }
        for (index, element) in elements.enumerated() {
            dispatch(element, stop: stop) { response in collector.set(index, response) }
        }
    }

    /// Routes one message. `respond` is called exactly once, with nil for notifications.
    func dispatch(
        _ message: JSONValue, stop: AsyncStream<Void>.Continuation, respond: @escaping @Sendable (JSONValue?) -> Void
    ) {
        guard case .object(let fields) = message else {
            respond(
                RPCMessage.error(
                    id: .null,
                    RPCError(
                        .invalidRequest, "a request must be a JSON object, got \(message.typeName)",
                        hint: "send {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"…\",\"params\":{…}}")))
            return
        }
        let rawID = fields["id"]
        let id: JSONValue
        switch rawID {
        case nil: id = .null
        case .string?, .number?, .null?: id = rawID!
        case let other?:
            respond(
                RPCMessage.error(
                    id: .null,
                    RPCError(
                        .invalidRequest, "id must be a string, a number or null, got \(other.typeName)",
                        hint: "use a string or integer id", field: "id")))
            return
        }
        let isNotification = rawID == nil
        func fail(_ error: RPCError) { respond(isNotification ? nil : RPCMessage.error(id: id, error)) }

        guard fields["jsonrpc"] == .string("2.0") else {
            fail(
                RPCError(
                    .invalidRequest, "jsonrpc must be \"2.0\"", hint: "add \"jsonrpc\":\"2.0\" to every message",
                    field: "jsonrpc"))
            return
        }
        guard case .string(let method)? = fields["method"] else {
            if fields["result"] != nil || fields["error"] != nil {
                receiveResponse(fields)
                respond(nil)
                return
            }
            fail(
                RPCError(
                    .invalidRequest, "method must be a string", hint: "name the method, e.g. \"spaces/list\"",
                    field: "method"))
            return
        }
        let params: Params
        do {
            params = try Params(fields["params"], path: "params")
        } catch {
            fail(error)
            return
        }

        let state = lifecycle.withLock { $0 }
        if mcp.takes(method, params, engineUninitialized: state == .uninitialized) {
            let engine = currentEngine
            mcp.handle(
                method, params: params, id: id, isNotification: isNotification, engine: engine, logger: logger,
                respond: respond)
            return
        }
        if method == "initialize" {
            guard state == .uninitialized else {
                fail(
                    RPCError(.invalidRequest, "initialize was already called", hint: "send initialize once per session")
                )
                return
            }
            do {
                let result = try currentEngine.initialize(params)
                lifecycle.withLock { $0 = .initialized }
                respond(isNotification ? nil : RPCMessage.response(id: id, result: result))
            } catch {
                fail(error)
            }
            return
        }
        if method == "notifications/initialized" || method == "initialized" {
            respond(nil)
            return
        }
        guard state == .initialized else {
            if state == .uninitialized {
                fail(
                    RPCError(
                        .notInitialized, "the engine is not initialized",
                        hint: "send initialize first, with protocolVersion \"0.1\""))
            } else {
                fail(RPCError(.invalidRequest, "the engine is shutting down", hint: "start a new engine"))
            }
            return
        }
        route(method, params: params, id: id, isNotification: isNotification, stop: stop, respond: respond)
    }

    func route(
        _ method: String, params: Params, id: JSONValue, isNotification: Bool, stop: AsyncStream<Void>.Continuation,
        respond: @escaping @Sendable (JSONValue?) -> Void
    ) {
        let engine = currentEngine
        let answer: @Sendable (Result<JSONValue, RPCError>) -> Void = { result in
            guard !isNotification else { return respond(nil) }
            switch result {
            case .success(let value): respond(RPCMessage.response(id: id, result: value))
            case .failure(let error): respond(RPCMessage.error(id: id, error))
            }
        }
        func now(_ body: () throws(RPCError) -> JSONValue) {
            do throws(RPCError) {
                answer(.success(try body()))
            } catch {
                answer(.failure(error))
            }
        }
        /// Work that must keep its place among a space's batches: validated now, queued on the space's executor.
        func ordered(
            _ prepare: () throws(RPCError) -> (
                SerialExecutor, (any TaskExecutor)?, @Sendable () async -> Result<JSONValue, RPCError>
            )
        ) {
            do throws(RPCError) {
                let (executor, preferred, job) = try prepare()
                executor.submit(preferring: preferred) { answer(await job()) }
            } catch {
                answer(.failure(error))
            }
        }
        func later(_ body: @escaping @Sendable () async throws(RPCError) -> JSONValue) {
            Task {
                do throws(RPCError) {
                    answer(.success(try await body()))
                } catch {
                    answer(.failure(error))
                }
            }
        }
        switch method {
        case "spaces/create": later { () async throws(RPCError) in try await engine.createSpace(params) }
        case "spaces/list": now { engine.listSpaces() }
        case "spaces/get": later { () throws(RPCError) in try engine.getSpace(params) }
        case "spaces/updatePolicy":
            ordered { () throws(RPCError) in
                let (executor, job) = try engine.prepareUpdatePolicy(params)
                return (executor, nil, job)
            }
        case "spaces/addCapability":
            ordered { () throws(RPCError) in
                let (executor, job) = try engine.prepareAddCapability(params)
                return (executor, nil, job)
            }
        case "spaces/destroy": later { () async throws(RPCError) in try await engine.destroySpace(params) }
        case "runs/start": now { () throws(RPCError) in try engine.startRun(params) }
        case "runs/end": now { () throws(RPCError) in try engine.endRun(params) }
        case "operations/submit":
            ordered { () throws(RPCError) in try engine.prepareSubmit(params, requestID: isNotification ? nil : id) }
        case "operations/cancel": now { () throws(RPCError) in try engine.cancelBatch(params) }
        case "approvals/resolve":
            ordered { () throws(RPCError) in
                let (executor, job) = try engine.prepareResolve(params)
                return (executor, nil, job)
            }
        case "runs/transcript": later { () throws(RPCError) in try engine.transcript(params) }
        case "runs/replay": later { () async throws(RPCError) in try await engine.replay(params) }
        case "approvals/list": now { () throws(RPCError) in try engine.listApprovals(params) }
        case "grants/list": now { () throws(RPCError) in try engine.listGrants(params) }
        case "grants/revoke": now { () throws(RPCError) in try engine.revokeGrant(params) }
        case "audit/read": later { () throws(RPCError) in try engine.readAudit(params) }
        case "audit/verify": later { () throws(RPCError) in try engine.verifyAudit(params) }
        case "tools/list": now { () throws(RPCError) in try engine.listTools(params) }
        case "tools/call": engine.callTool(params, requestID: isNotification ? nil : id, answer: answer)
        case "notifications/cancelled":
            if let requestID = params.members["requestId"] { engine.cancelRequest(requestID) }
            respond(nil)
        case "shutdown":
            lifecycle.withLock { $0 = .shuttingDown }
            Task {
                await engine.shutdown()
                answer(.success(.object([:])))
                stop.yield()
            }
        default:
            let known = Self.laterMethods.contains(method)
            answer(
                .failure(
                    RPCError(
                        .methodNotFound,
                        known ? "\(method) is not served by this engine version" : "unknown method '\(method)'",
                        hint: known
                            ? "see docs/PROTOCOL.md for the methods this version serves"
                            : "check the spelling; methods include initialize, spaces/create, operations/submit",
                        field: "method")))
        }
    }

    static let laterMethods: Set<String> = []
}

/// Gathers the answers of a JSON-RPC batch; sends them once every element has answered.
final class BatchCollector: Sendable {
    private struct State {
        var responses: [JSONValue?]
        var remaining: Int
    }

    private let state: Mutex<State>
    private let completion: @Sendable ([JSONValue]) -> Void

    init(count: Int, completion: @escaping @Sendable ([JSONValue]) -> Void) {
        self.state = Mutex(State(responses: Array(repeating: nil, count: count), remaining: count))
        self.completion = completion
    }

    func set(_ index: Int, _ response: JSONValue?) {
        let finished = state.withLock { state -> [JSONValue]? in
            state.responses[index] = response
            state.remaining -= 1
            return state.remaining == 0 ? state.responses.compactMap { $0 } : nil
        }
        if let finished { completion(finished) }
    }
}
