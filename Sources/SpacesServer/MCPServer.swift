import Logging
import SpacesEngine
import SpacesProtocol
import Synchronization

/// The Model Context Protocol face of `spaces serve`: any MCP client uses one space through its tools.
///
/// A session speaks MCP when the engine was started with `--mcp`, or when its `initialize` names an MCP
/// protocol revision (a date such as `2025-06-18`) instead of the engine protocol's `0.1`. The session's space is
/// created at `initialize` from the `--space-config` params and destroyed at the end of input. Nobody can answer
/// approvals over MCP: an operation the policy asks about is denied at once, and the tool result says which
/// policy change would allow it.
final class MCPFace: Sendable {
    /// The revisions this face implements; a client asking for another gets the latest of them.
    static let supportedVersions = ["2024-11-05", "2025-03-26", "2025-06-18"]
    static let latestVersion = "2025-06-18"

    /// The session's lifecycle. Transitions happen on the reader thread (`takes`, `initialize`) and in the
    /// task that creates the space.
    enum Phase: Sendable {
        /// The session speaks the engine protocol.
        case off
        case awaitingInitialize
        case starting
        case ready(spaceId: String)
        /// Input ended; the space is gone or going.
        case ended
    }

    struct State {
        var phase = Phase.off
        /// `spaces/create` params for the session's space.
        var spaceParams: [String: JSONValue] = [:]
        /// Creates the space; `end` waits for it so that no space outlives the session.
        var creation: Task<Void, Never>?
        /// Ids of `tools/call` requests being answered, and those of them the client cancelled (which get no
        /// answer, as MCP asks).
        var calls: Set<JSONValue> = []
        var cancelled: Set<JSONValue> = []
        /// Requests that arrived while the space was being created, handled in order once it is.
        var deferred: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())

    init() {}

    var isActive: Bool {
        state.withLock { state in
            if case .off = state.phase { return false }
            return true
        }
    }

    func configure(spaceParams: [String: JSONValue], always: Bool) {
        state.withLock { state in
            state.spaceParams = spaceParams
            if always, case .off = state.phase { state.phase = .awaitingInitialize }
        }
    }

    /// A protocol version that names an MCP revision: one we implement, or any other `YYYY-MM-DD` date.
    static func isMCPVersion(_ version: String) -> Bool {
        if supportedVersions.contains(version) { return true }
        let bytes = Array(version.utf8)
        guard bytes.count == 10 else { return false }
        return bytes.enumerated().allSatisfy { index, byte in
            index == 4 || index == 7 ? byte == UInt8(ascii: "-") : (0x30...0x39).contains(byte)
        }
    }

    /// Whether this message belongs to the MCP face: every message once it is active, and an `initialize` that
    /// names an MCP revision while the engine protocol has not been initialized (which turns it on).
    func takes(_ method: String, _ params: Params, engineUninitialized: Bool) -> Bool {
        state.withLock { state in
            guard case .off = state.phase else { return true }
            guard method == "initialize", engineUninitialized,
                let version = params.members["protocolVersion"]?.stringValue, Self.isMCPVersion(version)
            else { return false }
            state.phase = .awaitingInitialize
            return true
        }
    }

    /// Handles one MCP message; `respond` is called exactly once, with nil for notifications and for cancelled
    /// requests.
    func handle(
        _ method: String, params: Params, id: JSONValue, isNotification: Bool, engine: Engine, logger: Logger,
        respond: @escaping @Sendable (JSONValue?) -> Void
    ) {
        let answer: @Sendable (Result<JSONValue, RPCError>) -> Void = { result in
            guard !isNotification else { return respond(nil) }
            switch result {
            case .success(let value): respond(RPCMessage.response(id: id, result: value))
            case .failure(let error): respond(RPCMessage.error(id: id, error))
            }
        }
        let again: @Sendable () -> Void = {
            self.handle(
                method, params: params, id: id, isNotification: isNotification, engine: engine, logger: logger,
                respond: respond)
        }
        switch method {
        case "initialize":
            initialize(params, engine: engine, logger: logger, answer: answer)
        case "notifications/initialized", "initialized":
            respond(nil)
        case "ping":
            answer(.success([:]))
        case "notifications/cancelled":
            if let requestId = params.members["requestId"] {
                state.withLock { state in
                    if state.calls.contains(requestId) { state.cancelled.insert(requestId) }
                }
                engine.cancelRequest(requestId)
            }
            respond(nil)
        case "tools/list" where deferUntilReady(again), "tools/call" where deferUntilReady(again):
            return
        case "tools/list":
            do throws(RPCError) {
                let spaceId = try readySpace()
                answer(.success(try engine.listTools(Params(members: ["spaceId": .string(spaceId)], path: "params"))))
            } catch {
                answer(.failure(error))
            }
        case "tools/call":
            let spaceId: String
            do throws(RPCError) {
                spaceId = try readySpace()
            } catch {
                return answer(.failure(error))
            }
            var members: [String: JSONValue] = ["spaceId": .string(spaceId)]
            for key in ["name", "arguments"] { members[key] = params.members[key] }
            let key: JSONValue? = isNotification ? nil : id
            if let key { state.withLock { _ = $0.calls.insert(key) } }
            engine.callTool(Params(members: members, path: "params"), requestID: key, failClosed: true) { result in
                let cancelled = key.map { key in
                    self.state.withLock { state in
                        state.calls.remove(key)
                        return state.cancelled.remove(key) != nil
                    }
                }
                if cancelled == true { return respond(nil) }
                answer(result)
            }
        default:
            answer(
                .failure(
                    RPCError(
                        .methodNotFound, "unknown method '\(method)'",
                        hint: "this MCP server offers tools only: initialize, ping, tools/list, tools/call",
                        field: "method")))
        }
    }

    /// Keeps `handle` for later when the space is being created; false when it can run now.
    func deferUntilReady(_ handle: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            guard case .starting = state.phase else { return false }
            state.deferred.append(handle)
            return true
        }
    }

    /// Handles the requests that waited for the space, in arrival order.
    func runDeferred() {
        let deferred = state.withLock { state in
            defer { state.deferred = [] }
            return state.deferred
        }
        for handle in deferred { handle() }
    }

    /// The session's space, or `-32002` while `initialize` has not been answered.
    func readySpace() throws(RPCError) -> String {
        let phase = state.withLock { $0.phase }
        switch phase {
        case .ready(let spaceId): return spaceId
        case .ended: throw RPCError(.invalidRequest, "the session has ended", hint: "start a new session")
        default:
            throw RPCError(
                .notInitialized, "the session is not initialized",
                hint: "send initialize first and wait for its answer")
        }
    }

    func initialize(
        _ params: Params, engine: Engine, logger: Logger,
        answer: @escaping @Sendable (Result<JSONValue, RPCError>) -> Void
    ) {
        let asked = params.members["protocolVersion"]?.stringValue
        let version = asked.flatMap { Self.supportedVersions.contains($0) ? $0 : nil } ?? Self.latestVersion
        let engineVersion = engine.configuration.engineVersion
        state.withLock { state in
            guard case .awaitingInitialize = state.phase else {
                return answer(
                    .failure(
                        RPCError(
                            .invalidRequest, "initialize was already called", hint: "send initialize once per session"))
                )
            }
            state.phase = .starting
            let spaceParams = state.spaceParams
            state.creation = Task {
                do throws(RPCError) {
                    let space = try await engine.createSpace(Params(members: spaceParams, path: "params"))
                    let spaceId = space["spaceId"]?.stringValue ?? ""
                    self.state.withLock { $0.phase = .ready(spaceId: spaceId) }
                    logger.info(
                        "MCP session started", metadata: ["space": "\(spaceId)", "protocolVersion": "\(version)"])
                    answer(
                        .success(
                            [
                                "protocolVersion": .string(version),
                                "capabilities": ["tools": ["listChanged": false]],
                                "serverInfo": ["name": "agent-spaces", "version": .string(engineVersion)],
                                "instructions": .string(Self.instructions(space)),
                            ]))
                    self.runDeferred()
                } catch {
                    self.state.withLock { $0.phase = .awaitingInitialize }
                    logger.error("the MCP session's space could not be created: \(error.message)")
                    answer(
                        .failure(
                            RPCError(
                                error.code, "the session's space could not be created: \(error.message)",
                                hint: error.hint
                                    + " (the space's settings come from spaces serve --space-config and --policy)",
                                field: error.field)))
                    self.runDeferred()
                }
            }
        }
    }

    /// What a model should know before its first call.
    static func instructions(_ space: JSONValue) -> String {
        let preset = space["policy"]?["preset"]?.stringValue ?? "default"
        return
            "These tools act on one isolated Linux sandbox (a space) created for this session and deleted when it "
            + "ends. Files live in its workspace, /workspace: give paths relative to it. Commands run there with "
            + "/bin/sh and the Debian userland, TypeScript runs with Bun; nothing outside the space is visible, and "
            + "the network is off unless the space's policy allows it. Every call is checked against the space's "
            + "policy (preset \"\(preset)\"): a refused call comes back as an error naming the rule and the change "
            + "that would allow it, and a call the policy would ask a person about is refused, because this session "
            + "cannot ask anyone."
    }

    /// At the end of input: waits for the space to exist if it is being created, then destroys it.
    func end(_ engine: Engine) async {
        let creation = state.withLock { $0.creation }
        await creation?.value
        let spaceId = state.withLock { state -> String? in
            if case .off = state.phase { return nil }
            defer { state.phase = .ended }
            guard case .ready(let spaceId) = state.phase else { return nil }
            return spaceId
        }
        guard let spaceId else { return }
        _ = try? await engine.destroySpace(Params(members: ["spaceId": .string(spaceId)], path: "params"))
    }
}

extension StdioServer {
    /// Sends one of the engine's notifications (`events/emitted`, `approvals/requested`, `log/message`) to the
    /// client; an MCP session gets none of them.
    public func sendNotification(_ method: String, _ params: JSONValue) {
        guard !mcp.isActive else { return }
        output.send(RPCMessage.notification(method: method, params: params))
    }

    /// Sets up the MCP face: `spaceParams` are the `spaces/create` params of an MCP session's space; with
    /// `always` (`--mcp`) the session speaks MCP whatever its `initialize` says.
    public func configureMCP(spaceParams: [String: JSONValue], always: Bool) {
        mcp.configure(spaceParams: spaceParams, always: always)
    }
}
