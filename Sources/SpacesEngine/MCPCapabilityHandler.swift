import Logging
import SpacesProtocol
import SpacesSandbox
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A tool that an MCP server offers: one entry of its `tools/list` answer.
struct MCPTool: Sendable, Equatable {
    var name: String
    var description: String?
    /// JSON Schemas as the server gives them.
    var inputSchema: JSONValue?
    var outputSchema: JSONValue?
    /// The tool's annotations; MCP's defaults when absent are not read-only and destructive.
    var readOnlyHint: Bool?
    var destructiveHint: Bool?

    init(
        name: String, description: String? = nil, inputSchema: JSONValue? = nil, outputSchema: JSONValue? = nil,
        readOnlyHint: Bool? = nil, destructiveHint: Bool? = nil
    ) {
        self.name = name
        self.description = description
        self.inputSchema = inputSchema
        self.outputSchema = outputSchema
        self.readOnlyHint = readOnlyHint
        self.destructiveHint = destructiveHint
    }

    /// Reads one entry of `tools/list`; nil when it has no name.
    init?(json: JSONValue) {
        guard let name = json["name"]?.stringValue, !name.isEmpty else { return nil }
        self.init(
            name: name, description: json["description"]?.stringValue,
            inputSchema: json["inputSchema"].flatMap { $0.isNull ? nil : $0 },
            outputSchema: json["outputSchema"].flatMap { $0.isNull ? nil : $0 },
            readOnlyHint: json["annotations"]?["readOnlyHint"]?.boolValue,
            destructiveHint: json["annotations"]?["destructiveHint"]?.boolValue)
    }

    /// The method's effect: read-only tools read, tools that say they are not destructive write, and every other
    /// tool is destructive (as MCP assumes when a tool does not say).
    var effect: CapabilityDeclaration.Effect {
        if readOnlyHint == true { return .read }
        if destructiveHint == false { return .write }
        return .destructive
    }

    /// Whether the server wraps this tool's results in `{"result": …}`.
    ///
    /// MCP's `structuredContent` must be an object, so servers built with the Python SDK (`FastMCP`, `MCPServer`)
    /// wrap any other return value, declaring an output schema of exactly one required property `result`. The
    /// handler unwraps such results, so that a program's `await crm.search({})` gets the list itself.
    var wrapsResult: Bool {
        guard let schema = outputSchema?.objectValue, let properties = schema["properties"]?.objectValue,
            properties.count == 1, properties["result"] != nil,
            schema["required"]?.arrayValue == [.string("result")]
        else { return false }
        return schema["type"] == nil || schema["type"] == .string("object")
    }

    /// The schema of what a call returns, as a program sees it: the output schema, unwrapped when
    /// ``wrapsResult`` (keeping the wrapper's `$defs`, which the unwrapped schema may refer to).
    var resultSchema: JSONValue? {
        guard wrapsResult, let schema = outputSchema?.objectValue, let inner = schema["properties"]?["result"] else {
            return outputSchema
        }
        guard case .object(var members) = inner else { return inner }
        for key in ["$defs", "definitions"] where members[key] == nil {
            if let definitions = schema[key] { members[key] = definitions }
        }
        return .object(members)
    }
}

/// Runs a space's MCP server on the host and calls its tools, for a capability with an `mcp` handler.
///
/// The server (one per space) is started on first use, or by ``discoverTools()``, and speaks the Model Context
/// Protocol over its stdin and stdout: newline-delimited JSON-RPC 2.0. Its environment is PATH, HOME and LANG
/// of the engine plus the declared `env`, whose `${secret:NAME}` are filled in here, on the host. When the server
/// exits, the calls waiting for it fail and the next call starts it again. Its lifecycle is `state.server`, an
/// explicit state machine behind a `Mutex`.
///
/// Nothing outlives the engine as long as the server ends when its stdin closes, as MCP's stdio transport asks:
/// `spawnHostProgram` runs no code between fork and exec, so the child gets no `PR_SET_PDEATHSIG`.
final class MCPCapabilityHandler: CapabilityHandler {
    /// The MCP revision the handler speaks.
    static let protocolVersion = "2025-06-18"
    /// The longest message the server may send (a result is also limited by the engine, to 16 MiB).
    static let maxMessageBytes = 32 << 20
    /// How many pages of `tools/list` the handler follows.
    static let maxToolPages = 100
    /// How long a server may take to start and answer `initialize`, at least.
    static let minimumStartTimeoutMs = 10_000
    /// How long ``stop()`` waits after SIGTERM before SIGKILL.
    static let stopGraceMs = 1000

    let capabilityName: String
    let command: [String]
    /// The declared environment, with `${secret:NAME}` references.
    let declaredEnvironment: [String: String]
    let workingDirectory: String?
    let timeoutMs: Int
    private let logger: Logger
    private let state: Mutex<State>

    private typealias StartWaiter = CheckedContinuation<Result<MCPServerProcess, CapabilityFailure>, Never>

    private struct State {
        var server: ServerState = .idle
        /// The secret values the server's environment is filled from: those given at creation, updated by calls.
        var secrets: [String: String]
        /// Tools whose results the server wraps (see ``MCPTool/wrapsResult``); nil until `tools/list` was read.
        var wrappedResultTools: Set<String>?
    }

    /// `idle` → `starting` (spawned, `initialize` under way, callers waiting) → `running`; `running` whose
    /// process exited → `starting` again on the next call; a failed start → `idle`; anything → `stopped`, final.
    private enum ServerState {
        case idle
        case starting(MCPServerProcess, waiters: [StartWaiter])
        case running(MCPServerProcess)
        case stopped
    }

    init(
        capability: CapabilityDeclaration, secrets: [String: String] = [:],
        logger: Logger = Logger(label: "spaces.capabilities.mcp")
    ) {
        capabilityName = capability.name
        if case .mcp(let command, let env, let cwd, _) = capability.handler {
            self.command = command
            declaredEnvironment = env
            workingDirectory = cwd
        } else {
            command = []
            declaredEnvironment = [:]
            workingDirectory = nil
        }
        timeoutMs = capability.handler.timeoutMs
        self.logger = logger
        state = Mutex(State(secrets: secrets))
    }

    /// The pid of the running server, if any.
    var serverPID: pid_t? {
        state.withLock { state in
            switch state.server {
            case .starting(let process, _), .running(let process): process.pid
            case .idle, .stopped: nil
            }
        }
    }

    private var serverName: String { "the MCP server of capability '\(capabilityName)'" }

    // MARK: Tools

    /// Starts the server if it is not running and lists its tools, following `nextCursor` pages.
    func discoverTools() async -> Result<[MCPTool], CapabilityFailure> {
        switch await runningServer() {
        case .failure(let failure): return .failure(failure)
        case .success(let server): return await listTools(on: server)
        }
    }

    private func listTools(on server: MCPServerProcess) async -> Result<[MCPTool], CapabilityFailure> {
        var tools: [MCPTool] = []
        var cursor: String?
        for _ in 0..<Self.maxToolPages {
            let params: JSONValue = cursor.map { ["cursor": .string($0)] } ?? [:]
            let answer = await server.request("tools/list", params, timeoutMs: timeoutMs)
            guard case .result(let result) = answer else { return .failure(failure(answer, during: "tools/list")) }
            guard let entries = result["tools"]?.arrayValue else {
                return .failure(
                    CapabilityFailure(
                        .handlerError, "\(serverName) answered tools/list without a list of tools",
                        hint: "check that the command starts an MCP server that offers tools"))
            }
            tools += entries.compactMap(MCPTool.init(json:))
            guard let next = result["nextCursor"]?.stringValue, !next.isEmpty else {
                let wrapped = Set(tools.filter(\.wrapsResult).map(\.name))
                state.withLock { $0.wrappedResultTools = wrapped }
                return .success(tools)
            }
            cursor = next
        }
        return .failure(
            CapabilityFailure(
                .handlerError, "\(serverName) lists its tools in more than \(Self.maxToolPages) pages",
                hint: "check the server: its nextCursor may never end"))
    }

    /// A capability's methods from its server's tools. With no declared methods, every tool whose name is a valid
    /// method name becomes one (sorted by name); with declared methods, only those, each taking the tool's
    /// description and schemas where it has none. Declared methods with no tool stay as declared: see
    /// ``missingTools(declared:tools:)``.
    static func methods(from tools: [MCPTool], declared: [CapabilityDeclaration.Method])
        -> [CapabilityDeclaration.Method]
    {
        guard !declared.isEmpty else {
            return
                tools
                .filter { CapabilityDeclaration.isValidMethodName($0.name) }
                .sorted { $0.name < $1.name }
                .map { tool in
                    CapabilityDeclaration.Method(
                        name: tool.name, description: tool.description, params: tool.inputSchema,
                        result: tool.resultSchema, effect: tool.effect, http: nil)
                }
        }
        return declared.map { method in
            guard let tool = tools.first(where: { $0.name == method.name }) else { return method }
            var method = method
            if method.description == nil { method.description = tool.description }
            if method.params == nil { method.params = tool.inputSchema }
            if method.result == nil { method.result = tool.resultSchema }
            return method
        }
    }

    /// The declared methods the server has no tool for, in declaration order.
    static func missingTools(declared: [CapabilityDeclaration.Method], tools: [MCPTool]) -> [String] {
        declared.map(\.name).filter { name in !tools.contains { $0.name == name } }
    }

    // MARK: Calls

    func call(
        capability: CapabilityDeclaration, method: CapabilityDeclaration.Method, params: JSONValue,
        secrets: [String: String]
    ) async -> Result<JSONValue, CapabilityFailure> {
        let arguments: JSONValue
        switch params {
        case .object: arguments = params
        case .null: arguments = [:]
        default:
            return .failure(
                CapabilityFailure(
                    .invalidParams,
                    "\(capabilityName).\(method.name) takes an object of params, got \(params.typeName)",
                    hint: "call it with an object, e.g. {\"q\": \"acme\"}"))
        }
        state.withLock { $0.secrets.merge(secrets) { $1 } }
        let server: MCPServerProcess
        switch await runningServer() {
        case .success(let running): server = running
        case .failure(let failure): return .failure(failure)
        }
        // After an engine restart the tools were not listed by this handler: learn how results are wrapped.
        if state.withLock({ $0.wrappedResultTools == nil }) { _ = await listTools(on: server) }
        let during = "tools/call \(method.name)"
        let answer = await server.request(
            "tools/call", ["name": .string(method.name), "arguments": arguments], timeoutMs: timeoutMs)
        guard case .result(let result) = answer else { return .failure(failure(answer, during: during)) }
        let wraps = state.withLock { $0.wrappedResultTools?.contains(method.name) ?? false }
        return toolResult(result, method: method.name, unwrapping: wraps)
    }

    /// A `tools/call` result as the program sees it: an error's text, else the structured content, else the one
    /// text content (parsed as JSON when it is JSON), else the content list.
    private func toolResult(_ result: JSONValue, method: String, unwrapping: Bool)
        -> Result<JSONValue, CapabilityFailure>
    {
        let content = result["content"]?.arrayValue ?? []
        if result["isError"]?.boolValue == true {
            let texts = content.compactMap { $0["type"] == .string("text") ? $0["text"]?.stringValue : nil }
            let message = texts.isEmpty ? "the tool reported an error without a message" : texts.joined(separator: "\n")
            return .failure(
                CapabilityFailure(
                    .handlerError, "\(capabilityName).\(method) failed: \(message)",
                    hint: "check the params against the tool's description; the message above is the server's"))
        }
        if let structured = result["structuredContent"], !structured.isNull {
            if unwrapping, let members = structured.objectValue, members.count == 1, let inner = members["result"] {
                return .success(inner)
            }
            return .success(structured)
        }
        if content.count == 1, content[0]["type"] == .string("text"), let text = content[0]["text"]?.stringValue {
            if let value = try? JSONValue.parse(text) { return .success(value) }
            return .success(.string(text))
        }
        return .success(.array(content))
    }

    private func failure(_ answer: MCPServerProcess.Answer, during operation: String) -> CapabilityFailure {
        switch answer {
        case .result:
            CapabilityFailure(
                .handlerError, "\(serverName) gave an unexpected answer to \(operation)",
                hint: "this is a bug in the engine: report it")
        case .error(let code, let message):
            CapabilityFailure(
                .handlerError, "\(serverName) answered \(operation) with error \(code): \(message)",
                hint: code == -32601
                    ? "the server does not offer this; check the tool's name with tools/list"
                    : "check the params against the tool's input schema")
        case .exited(let status):
            CapabilityFailure(
                .handlerError, "\(serverName) \(status) during \(operation)",
                hint: "the next call starts it again; its stderr is in the engine's log")
        case .timedOut(let afterMs):
            CapabilityFailure(
                .timeout, "\(serverName) did not answer \(operation) within \(afterMs) ms (the request was cancelled)",
                hint: "retry later, ask for less, or raise the handler's timeoutMs")
        case .tooLarge(let bytes):
            CapabilityFailure(
                .resultTooLarge,
                "\(serverName) answered \(operation) with \(bytes) bytes, over the limit of \(Self.maxMessageBytes)",
                hint: "ask for less per call (filter or page)")
        }
    }

    // MARK: Lifecycle

    /// The environment the server runs with: PATH, HOME and LANG of the engine, then the declared variables.
    private func serverEnvironment(secrets: [String: String]) -> [String: String] {
        var environment: [String: String] = [:]
        for name in ["PATH", "HOME", "LANG"] {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        for (name, value) in declaredEnvironment {
            environment[name] = CapabilityDeclaration.fillSecrets(value, values: secrets)
        }
        return environment
    }

    /// The running server, started (once for this call) when there is none, it exited, or the secrets its
    /// environment holds changed. Callers that arrive while it starts wait for the same start.
    private func runningServer() async -> Result<MCPServerProcess, CapabilityFailure> {
        enum Step {
            case done(Result<MCPServerProcess, CapabilityFailure>)
            case waiting
            case started(MCPServerProcess, replacing: MCPServerProcess?)
        }
        return await withCheckedContinuation { (continuation: StartWaiter) in
            let step = state.withLock { state -> Step in
                let environment = serverEnvironment(secrets: state.secrets)
                var replaced: MCPServerProcess?
                switch state.server {
                case .stopped:
                    return .done(.failure(stoppedFailure))
                case .starting(let process, var waiters):
                    waiters.append(continuation)
                    state.server = .starting(process, waiters: waiters)
                    return .waiting
                case .running(let process):
                    if !process.hasExited, process.environment == environment { return .done(.success(process)) }
                    if let status = process.exitStatus {
                        logger.notice("\(serverName) \(status); starting it again")
                    } else {
                        replaced = process
                    }
                case .idle:
                    break
                }
                switch MCPServerProcess.start(
                    command: command, environment: environment, workingDirectory: workingDirectory,
                    name: serverName, logger: logger)
                {
                case .failure(let failure):
                    state.server = .idle
                    if let replaced { state.server = .running(replaced) }
                    return .done(.failure(failure))
                case .success(let process):
                    state.server = .starting(process, waiters: [continuation])
                    return .started(process, replacing: replaced)
                }
            }
            switch step {
            case .done(let result):
                continuation.resume(returning: result)
            case .waiting:
                break
            case .started(let process, let replaced):
                Task {
                    if let replaced { await replaced.terminate(graceMs: Self.stopGraceMs) }
                }
                Task { await self.completeStart(of: process) }
            }
        }
    }

    /// Performs the handshake with a server just spawned and hands the outcome to everyone waiting for it.
    private func completeStart(of process: MCPServerProcess) async {
        let outcome = await handshake(with: process)
        let waiters = state.withLock { state -> [StartWaiter] in
            // stop() took the waiters and ends the process itself.
            guard case .starting(let current, let waiters) = state.server, current === process else { return [] }
            if case .success = outcome {
                state.server = .running(process)
            } else {
                state.server = .idle
            }
            return waiters
        }
        if case .failure = outcome { await process.terminate(graceMs: 0) }
        for waiter in waiters { waiter.resume(returning: outcome.map { process }) }
    }

    private func handshake(with process: MCPServerProcess) async -> Result<Void, CapabilityFailure> {
        let params: JSONValue = [
            "protocolVersion": .string(Self.protocolVersion), "capabilities": [:],
            "clientInfo": ["name": "agent-spaces", "version": "0.1"],
        ]
        let answer = await process.request(
            "initialize", params, timeoutMs: max(timeoutMs, Self.minimumStartTimeoutMs))
        switch answer {
        case .result(let result) where result.objectValue != nil:
            process.notify("notifications/initialized", [:])
            return .success(())
        case .result:
            return .failure(
                CapabilityFailure(
                    .handlerError, "\(serverName) answered initialize with something other than an object",
                    hint: "check that the command starts an MCP server speaking over stdio"))
        case .exited(let status):
            return .failure(
                CapabilityFailure(
                    .handlerError, "\(serverName) \(status) before it was ready",
                    hint:
                        "run the command by hand to see why (its stderr is in the engine's log): \(command.joined(separator: " "))"
                ))
        default:
            return .failure(failure(answer, during: "initialize"))
        }
    }

    private var stoppedFailure: CapabilityFailure {
        CapabilityFailure(
            .handlerError, "\(serverName) was stopped with its space",
            hint: "the space is going away; create a new space to call it again")
    }

    /// Ends the server: closes its stdin, sends SIGTERM, and SIGKILL after ``stopGraceMs``; returns once it is
    /// reaped. Calls made afterwards fail.
    func stop() async {
        let (process, waiters) = state.withLock { state -> (MCPServerProcess?, [StartWaiter]) in
            defer { state.server = .stopped }
            switch state.server {
            case .starting(let process, let waiters): return (process, waiters)
            case .running(let process): return (process, [])
            case .idle, .stopped: return (nil, [])
            }
        }
        for waiter in waiters { waiter.resume(returning: .failure(stoppedFailure)) }
        await process?.terminate(graceMs: Self.stopGraceMs)
    }
}

/// One MCP server process: the pipes to it, the requests waiting for its answers, and its exit.
///
/// A reader thread splits its stdout into JSON-RPC messages and resumes the request each one answers; a reaper
/// thread waits for it to exit, kills what it left in its process group, reaps it, and fails the requests still
/// waiting. Writes to its stdin are serialized by `input`; everything else the threads share is in `state`.
/// Writing to a server that died relies on SIGPIPE being ignored, as the engine does.
final class MCPServerProcess: Sendable {
    /// What the server answered to one request.
    enum Answer: Sendable {
        case result(JSONValue)
        case error(code: Int, message: String)
        /// The server exited before answering; the text says how (`exited with status 1`).
        case exited(String)
        case timedOut(afterMs: Int)
        /// The answer was a line longer than ``MCPCapabilityHandler/maxMessageBytes``.
        case tooLarge(Int)
    }

    let pid: pid_t
    let environment: [String: String]
    private let name: String
    private let logger: Logger
    /// Our end of the server's stdin; nil once closed.
    private let input: Mutex<Int32?>
    private let state = Mutex(State())

    private struct State {
        var nextID = 1
        var pending: [Int: CheckedContinuation<Answer, Never>] = [:]
        /// How the server ended (`exited with status 0`), once it is reaped.
        var exitStatus: String?
        var exitWaiters: [CheckedContinuation<String, Never>] = []
    }

    private init(pid: pid_t, input: Int32, environment: [String: String], name: String, logger: Logger) {
        self.pid = pid
        self.input = Mutex(input)
        self.environment = environment
        self.name = name
        self.logger = logger
    }

    var exitStatus: String? { state.withLock { $0.exitStatus } }
    var hasExited: Bool { exitStatus != nil }

    /// Spawns the server in a process group of its own, with pipes for its stdin and stdout and the engine's
    /// stderr, and starts its reader and reaper threads.
    static func start(
        command: [String], environment: [String: String], workingDirectory: String?, name: String, logger: Logger
    ) -> Result<MCPServerProcess, CapabilityFailure> {
        let commandLine = command.joined(separator: " ")
        func failure(_ what: String) -> CapabilityFailure {
            CapabilityFailure(
                .handlerError, "cannot start \(name) (\(commandLine)): \(what)",
                hint:
                    "check the handler's command (its program is looked up on the engine's PATH) and cwd, on the engine's host"
            )
        }
        guard !command.isEmpty, !command[0].isEmpty else { return .failure(failure("the command is empty")) }
        if workingDirectory != nil, SpawnFileActions.addChangeDirectory == nil {
            return .failure(failure("this C library cannot start a program in another directory"))
        }
        guard let toServer = closeOnExecPipe() else {
            return .failure(failure("pipe: \(String(cString: strerror(errno)))"))
        }
        guard let fromServer = closeOnExecPipe() else {
            let reason = String(cString: strerror(errno))
            toServer.forEach { _ = close($0) }
            return .failure(failure("pipe: \(reason)"))
        }
        let spawned = spawnHostProgram(command, environment: environment, searchPath: true, newProcessGroup: true) {
            (actions: inout posix_spawn_file_actions_t) in
            posix_spawn_file_actions_adddup2(&actions, toServer[0], 0)
            posix_spawn_file_actions_adddup2(&actions, fromServer[1], 1)
            if let closeFrom = SpawnFileActions.addCloseFrom { _ = closeFrom(&actions, 3) }
            if let workingDirectory, let changeDirectory = SpawnFileActions.addChangeDirectory {
                _ = changeDirectory(&actions, workingDirectory)
            }
        }
        _ = close(toServer[0])
        _ = close(fromServer[1])
        let pid: pid_t
        switch spawned {
        case .success(let spawnedPID):
            pid = spawnedPID
        case .failure(let spawnFailure):
            _ = close(toServer[1])
            _ = close(fromServer[0])
            let place = workingDirectory.map { " (in \($0))" } ?? ""
            return .failure(failure(String(cString: strerror(spawnFailure.errno)) + place))
        }
        let process = MCPServerProcess(
            pid: pid, input: toServer[1], environment: environment, name: name, logger: logger)
        let output = fromServer[0]
        startThread(name: "mcp-reader") { process.readAnswers(from: output) }
        startThread(name: "mcp-reaper") { process.reap() }
        return .success(process)
    }

    // MARK: Messages

    /// Sends one request and waits for its answer, at most `timeoutMs`; a request that times out is cancelled
    /// with `notifications/cancelled`.
    func request(_ method: String, _ params: JSONValue, timeoutMs: Int) async -> Answer {
        var watchdog: Task<Void, Never>?
        var requestID = 0
        let answer = await withCheckedContinuation { (continuation: CheckedContinuation<Answer, Never>) in
            let registered = state.withLock { state -> (id: Int, exitStatus: String?) in
                if let status = state.exitStatus { return (0, status) }
                let id = state.nextID
                state.nextID += 1
                state.pending[id] = continuation
                return (id, nil)
            }
            if let status = registered.exitStatus {
                continuation.resume(returning: .exited(status))
                return
            }
            let id = registered.id
            requestID = id
            // A failed write means the server is gone or not reading: the reaper or the watchdog answers.
            _ = send(["jsonrpc": "2.0", "id": JSONValue(id), "method": .string(method), "params": params])
            watchdog = Task { [self] in
                try? await Task.sleep(for: .milliseconds(timeoutMs))
                guard !Task.isCancelled else { return }
                let waiter = state.withLock { $0.pending.removeValue(forKey: id) }
                waiter?.resume(returning: .timedOut(afterMs: timeoutMs))
            }
        }
        watchdog?.cancel()
        if case .timedOut = answer {
            notify(
                "notifications/cancelled",
                ["requestId": JSONValue(requestID), "reason": .string("no answer within \(timeoutMs) ms")])
        }
        return answer
    }

    /// Sends a notification, which has no answer.
    func notify(_ method: String, _ params: JSONValue) {
        _ = send(["jsonrpc": "2.0", "method": .string(method), "params": params])
    }

    @discardableResult
    private func send(_ message: JSONValue) -> Bool {
        var bytes = message.encodedBytes()
        bytes.append(0x0A)
        return input.withLock { fd in
            guard let fd else { return false }
            do {
                try FileDescriptorIO.writeAll(fd, bytes)
                return true
            } catch {
                logger.debug("\(name): message not sent: \(error)")
                return false
            }
        }
    }

    /// The reader thread: until the server's stdout closes. Then the server is of no more use, so it is ended.
    private func readAnswers(from output: Int32) {
        var splitter = LineSplitter(maxLineBytes: MCPCapabilityHandler.maxMessageBytes)
        var lines: [LineSplitter.Line] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 1)
        defer { buffer.deallocate() }
        while true {
            let count: Int
            do {
                count = try FileDescriptorIO.read(output, into: buffer)
            } catch {
                logger.warning("\(name): reading its stdout failed: \(error)")
                break
            }
            if count == 0 { break }
            lines.removeAll(keepingCapacity: true)
            splitter.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), into: &lines)
            for line in lines { handle(line) }
        }
        _ = close(output)
        Task { await terminate(graceMs: MCPCapabilityHandler.stopGraceMs) }
    }

    private func handle(_ line: LineSplitter.Line) {
        let bytes: [UInt8]
        switch line {
        case .complete(let complete):
            bytes = complete
        case .oversized(let count):
            // Its id is lost with it; when only one request waits, the answer was that request's.
            let waiter = state.withLock { state -> CheckedContinuation<Answer, Never>? in
                guard state.pending.count == 1, let id = state.pending.keys.first else { return nil }
                return state.pending.removeValue(forKey: id)
            }
            logger.warning("\(name) sent a message of \(count) bytes, over the limit; dropped")
            waiter?.resume(returning: .tooLarge(count))
            return
        }
        guard !bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) else { return }
        guard let message = try? JSONValue.parse(bytes), let fields = message.objectValue else {
            logger.warning("\(name) wrote a line that is not a JSON-RPC message to its stdout; ignored")
            return
        }
        if let method = fields["method"]?.stringValue {
            // A request from the server is answered; a notification needs nothing.
            guard let id = fields["id"], !id.isNull else { return }
            if method == "ping" {
                send(["jsonrpc": "2.0", "id": id, "result": [:]])
            } else {
                send([
                    "jsonrpc": "2.0", "id": id,
                    "error": ["code": -32601, "message": .string("the client does not offer \(method)")],
                ])
            }
            return
        }
        guard let id = fields["id"]?.intValue,
            let waiter = state.withLock({ $0.pending.removeValue(forKey: id) })
        else { return }
        if let error = fields["error"], !error.isNull {
            waiter.resume(
                returning: .error(
                    code: error["code"]?.intValue ?? -32603,
                    message: error["message"]?.stringValue ?? "an error without a message"))
        } else {
            waiter.resume(returning: .result(fields["result"] ?? .null))
        }
    }

    // MARK: Exit

    /// The reaper thread: waits for the server to exit without reaping it, so that its pid (which is also its
    /// process group's id) cannot be reused, kills what is left in its group, then reaps it.
    private func reap() {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        let (pending, waiters, status) = state.withLock { state in
            _ = kill(-pid, SIGKILL)
            var raw: Int32 = 0
            let reaped = waitpid(pid, &raw, 0) == pid
            let status = reaped ? Self.describe(waitStatus: raw) : "exited (its status is unknown)"
            state.exitStatus = status
            defer {
                state.pending = [:]
                state.exitWaiters = []
            }
            return (state.pending, state.exitWaiters, status)
        }
        closeInput(waiting: true)
        for waiter in pending.values { waiter.resume(returning: .exited(status)) }
        for waiter in waiters { waiter.resume(returning: status) }
    }

    /// Ends the server: closes its stdin, sends SIGTERM to its process group, SIGKILL after `graceMs`, and
    /// returns once it is reaped. Idempotent.
    func terminate(graceMs: Int) async {
        // A writer blocked on a full pipe holds `input`; the signals below unblock it, and the reaper closes.
        closeInput(waiting: false)
        let signalled = state.withLock { state -> Bool in
            guard state.exitStatus == nil else { return false }
            _ = kill(-pid, SIGTERM)
            return true
        }
        guard signalled else { return }
        let deadline = Clock.monotonicNanoseconds() + UInt64(graceMs) * 1_000_000
        while !hasExited, Clock.monotonicNanoseconds() < deadline {
            do { try await Task.sleep(for: .milliseconds(10)) } catch { break }
        }
        state.withLock { state in
            if state.exitStatus == nil { _ = kill(-pid, SIGKILL) }
        }
        _ = await waitForExit()
    }

    /// How the server ended, once it has.
    func waitForExit() async -> String {
        await withCheckedContinuation { continuation in
            let status = state.withLock { state -> String? in
                if let status = state.exitStatus { return status }
                state.exitWaiters.append(continuation)
                return nil
            }
            if let status { continuation.resume(returning: status) }
        }
    }

    /// Closes our end of the server's stdin. Without `waiting`, gives up when a write holds it.
    private func closeInput(waiting: Bool) {
        if waiting {
            input.withLock { fd in
                if let open = fd { _ = close(open) }
                fd = nil
            }
        } else {
            _ = input.withLockIfAvailable { fd in
                if let open = fd { _ = close(open) }
                fd = nil
            }
        }
    }

    /// `exited with status 1`, `was killed by signal 9 (Killed)`. (WIFEXITED and friends are C macros.)
    static func describe(waitStatus status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
        let signalName = strsignal(signal).map { String(cString: $0) } ?? "signal \(signal)"
        return "was killed by signal \(signal) (\(signalName))"
    }
}

/// `posix_spawn_file_actions_addchdir_np` (glibc 2.29) and `posix_spawn_file_actions_addclosefrom_np` (2.34) are
/// `_GNU_SOURCE`, which Swift's Glibc module does not import, so they are looked up once at run time (dlsym with
/// a null handle is RTLD_DEFAULT).
private enum SpawnFileActions {
    typealias AddChangeDirectory =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    /// Makes the child change directory before exec.
    static let addChangeDirectory: AddChangeDirectory? = dlsym(nil, "posix_spawn_file_actions_addchdir_np").map {
        unsafeBitCast($0, to: AddChangeDirectory.self)
    }
    /// Makes the child close every descriptor from a number on, so the server inherits none of the engine's.
    static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: AddCloseFrom.self)
    }
}
