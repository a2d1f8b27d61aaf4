import Logging
import SpacesPolicy
import SpacesProtocol
import SpacesSandbox
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One space: its record, its worker, its event sequence and its runs.
///
/// Batches of a space run one at a time, in submission order, on `executor`; everything they share with
/// concurrent readers (`spaces/get`, `spaces/list`, cancellation) is in `state`, a `Mutex`.
final class Space: Sendable {
    /// The worker's lifecycle. `starting` is never observed outside `ensureWorker`, which runs on `executor`
    /// (or during creation, before the space is visible).
    enum WorkerState {
        case none
        case running(WorkerConnection)
        case destroyed
    }

    struct State {
        var record: SpaceRecord
        /// The policy in force; `spaces/updatePolicy` replaces it between batches.
        var policy: Policy
        var worker: WorkerState = .none
        var seq: Int
        var workerStarts = 0
        var operations = 0
        var batches = 0
        /// Results of batches submitted with an idempotency key, by key.
        var idempotent: [String: JSONValue] = [:]
        var idempotentOrder: [String] = []
    }

    static let seqReservationBlock = 10_000
    static let idempotencyMemory = 1_000

    let id: String
    let executor = SerialExecutor()
    let store: StateStore
    let environment: SpaceEnvironment
    let logger: Logger
    /// The space's audit log; `Engine` and the batches record into it.
    let audit: AuditLog
    /// The values of the space's secrets that could be resolved on this host, by name.
    let secretValues: [String: String]
    /// Removes those values from everything the space sends out.
    let redactor: Redactor
    /// Bounds the space's capability calls.
    let callLimiter = Mutex(CallRateLimiter())
    /// The handlers of the space's capabilities, made on first use, by capability name.
    private let handlers = Mutex<[String: any CapabilityHandler]>([:])
    /// Validators of the capabilities' schemas, prepared on first use, by `capability.method params|result`.
    private let validators = Mutex<[String: JSONSchemaValidator]>([:])
    /// Sends `capabilities/invoke` to the client and awaits its answer (handlers of kind `client`).
    let invokeClient: ClientInvoker
    let state: Mutex<State>

    init(
        record: SpaceRecord, policy: Policy, store: StateStore, environment: SpaceEnvironment, logger: Logger,
        invokeClient: @escaping ClientInvoker = Space.noClient
    ) {
        self.id = record.spaceId
        self.invokeClient = invokeClient
        self.store = store
        self.environment = environment
        var logger = logger
        logger[metadataKey: "space"] = "\(record.spaceId)"
        self.logger = logger
        self.audit = AuditLog(path: store.auditPath(record.spaceId), spaceId: record.spaceId)
        var values: [String: String] = [:]
        for reference in record.secrets {
            if case .success(let value) = reference.resolve() { values[reference.name] = value }
        }
        self.secretValues = values
        self.redactor = Redactor(secrets: values)
        self.state = Mutex(State(record: record, policy: policy, seq: record.seqReserved))
    }

    var record: SpaceRecord { state.withLock { $0.record } }

    /// `(params of capabilities/invoke, timeoutMs) → the client's result or error`.
    typealias ClientInvoker = @Sendable (JSONValue, Int) async -> Result<JSONValue, RPCError>

    static let noClient: ClientInvoker = { _, _ in
        .failure(RPCError(.internalError, "no client can answer capabilities/invoke", hint: ""))
    }

    /// The handler of a capability, made on first use (an MCP server runs from then until the space goes away).
    func capabilityHandler(for capability: CapabilityDeclaration) -> any CapabilityHandler {
        handlers.withLock { handlers in
            if let existing = handlers[capability.name] { return existing }
            let made = Self.makeHandler(
                for: capability, invokeClient: invokeClient, spaceId: id, secrets: secretValues, logger: logger)
            handlers[capability.name] = made
            return made
        }
    }

    /// A validator for one of the capabilities' schemas, prepared once (a capability is never replaced).
    func validator(for schema: JSONValue, key: String) -> JSONSchemaValidator {
        validators.withLock { validators in
            if let prepared = validators[key] { return prepared }
            let prepared = JSONSchemaValidator(document: schema)
            validators[key] = prepared
            return prepared
        }
    }

    /// Stops what the handlers keep running (MCP servers).
    func stopCapabilityHandlers() async {
        let all = handlers.withLock { handlers in
            defer { handlers = [:] }
            return Array(handlers.values)
        }
        for handler in all { await handler.stop() }
    }
    /// The capabilities programs in the space may call.
    var capabilities: [CapabilityDeclaration] { state.withLock { $0.record.capabilities } }
    var grants: [Grant] { state.withLock { $0.record.grants } }

    func addGrant(_ grant: Grant) {
        let record = state.withLock { state in
            state.record.grants.append(grant)
            return state.record
        }
        persist(record)
    }

    /// Removes a grant; false when the space has no such grant.
    func revokeGrant(_ grantId: String) -> Bool {
        let record = state.withLock { state -> SpaceRecord? in
            guard let index = state.record.grants.firstIndex(where: { $0.grantId == grantId }) else { return nil }
            state.record.grants.remove(at: index)
            return state.record
        }
        guard let record else { return false }
        persist(record)
        return true
    }
    var policy: Policy { state.withLock { $0.policy } }

    /// Replaces the policy; the next operation is decided by it. Limits that the sandbox applies at launch
    /// (processes, memory, file size) take effect when the space's worker next starts.
    func replacePolicy(_ policy: Policy) -> (old: JSONValue, record: SpaceRecord) {
        state.withLock { state in
            let old = state.record.policyJSON
            state.policy = policy
            state.record.policyJSON = policy.json
            return (old, state.record)
        }
    }
    var workspacePath: String { store.workspace(id) }

    var isDestroyed: Bool {
        state.withLock { if case .destroyed = $0.worker { true } else { false } }
    }

    /// The protocol's `Space` object.
    func json(withStats: Bool) -> JSONValue {
        state.withLock { state in
            let running: Bool = if case .running(let worker) = state.worker { !worker.isClosed } else { false }
            var result: [String: JSONValue] = [
                "spaceId": .string(state.record.spaceId), "name": .string(state.record.name),
                "state": .string(running ? "ready" : "idle"), "policy": state.record.policyJSON,
                "workspace": ["root": .string(WorkspaceBoundary.root)], "createdAt": .string(state.record.createdAt),
            ]
            if environment.unsafeNoIsolation { result["unsafe"] = true }
            if !state.record.capabilities.isEmpty {
                result["capabilities"] = .array(
                    state.record.capabilities.map { capability in
                        var summary: [String: JSONValue] = [
                            "name": .string(capability.name), "handler": .string(capability.handler.kind),
                            "methods": .array(capability.methods.map { .string($0.name) }),
                        ]
                        if let description = capability.description { summary["description"] = .string(description) }
                        return .object(summary)
                    })
            }
            if withStats {
                let processes: Int =
                    if case .running(let worker) = state.worker, !worker.isClosed {
                        StateStore.descendantCount(of: worker.process.rootPID)
                    } else { 0 }
                result["stats"] = [
                    "bytes": JSONValue(store.diskUsage(store.workspace(id))), "processes": JSONValue(processes),
                    "operations": JSONValue(state.operations), "batches": JSONValue(state.batches),
                    "lastSeq": JSONValue(state.seq), "workerStarts": JSONValue(state.workerStarts),
                    "workerRunning": .bool(running),
                ]
            }
            return .object(result)
        }
    }

    // MARK: Events

    /// The next event sequence number; persists a new reservation block when the current one runs out, so a
    /// restarted engine never reuses a number.
    func nextSeq() -> Int {
        let (seq, recordToSave) = state.withLock { state -> (Int, SpaceRecord?) in
            state.seq += 1
            guard state.seq > state.record.seqReserved else { return (state.seq, nil) }
            state.record.seqReserved = state.seq + Space.seqReservationBlock
            return (state.seq, state.record)
        }
        if let recordToSave { persist(recordToSave) }
        return seq
    }

    func persist(_ record: SpaceRecord? = nil) {
        let record = record ?? self.record
        do {
            try store.save(record)
        } catch {
            logger.error("space record not saved: \(error)")
        }
    }

    // MARK: Worker

    /// The running worker, starting a fresh one when there is none (first use, after a crash, after a restart).
    func ensureWorker() async throws(SpaceError) -> WorkerConnection {
        let current = state.withLock { $0.worker }
        switch current {
        case .destroyed:
            throw SpaceError.destroyed
        case .running(let worker) where !worker.isClosed:
            return worker
        default:
            break
        }
        let record = self.record
        let worker = try await Self.startWorker(
            environment: environment, spaceId: id, hostname: record.name.replacingUnderscores,
            workspace: workspacePath, uid: record.hostUID, gid: record.hostGID, limits: policy.limits, logger: logger)
        let process = worker.process
        let installed = state.withLock { state -> Bool in
            if case .destroyed = state.worker { return false }
            state.worker = .running(worker)
            state.workerStarts += 1
            return true
        }
        guard installed else {
            process.kill()
            _ = await process.waitForExit()
            throw SpaceError.destroyed
        }
        if !capabilities.isEmpty { try await installCapabilities(on: worker, writeDeclarations: false) }
        return worker
    }

    /// Launches a space's sandbox and waits for its worker to answer.
    static func startWorker(
        environment: SpaceEnvironment, spaceId: String, hostname: String, workspace: String, uid: UInt32,
        gid: UInt32, limits: Policy.Limits, logger: Logger
    ) async throws(SpaceError) -> WorkerConnection {
        let spec = environment.sandboxSpec(
            spaceId: spaceId, hostname: hostname, workspace: workspace, uid: uid, gid: gid, limits: limits)
        let launchStarted = Clock.monotonicNanoseconds()
        let process: any WorkerProcess
        if environment.unsafeNoIsolation {
            do {
                var variables = spec.environment
                variables["SPACES_CAPABILITIES_RUNTIME"] = environment.capabilityRuntimePath
                process = try UnsafeWorkerProcess(
                    bun: environment.bunPath, script: environment.workerScriptPath, workspace: workspace,
                    environment: variables)
            } catch {
                throw SpaceError.workerDidNotStart(error.description)
            }
        } else {
            do {
                process = try await SpaceEnvironment.launchOffPool(spec, launcherPath: environment.launcherPath)
            } catch {
                throw SpaceError.launch(error)
            }
        }
        let worker = WorkerConnection(process: process, logger: logger) { reason in
            logger.debug("worker channel closed: \(reason)")
            process.kill()
            Task { _ = await process.waitForExit() }
        }
        do {
            try await worker.waitUntilReady(timeoutMs: 15_000)
        } catch {
            process.kill()
            _ = await process.waitForExit()
            throw SpaceError.workerDidNotStart(error.description)
        }
        logger.debug("worker ready", metadata: ["ms": "\(Clock.millisecondsSince(launchStarted))"])
        return worker
    }

    /// Takes over a worker started before the space existed (from the warm pool).
    func adopt(_ worker: WorkerConnection) {
        state.withLock { state in
            state.worker = .running(worker)
            state.workerStarts += 1
        }
    }

    /// Kills every process of the space and waits until they are gone. With `destroy`, no worker starts again.
    func stopWorker(destroy: Bool) async {
        let previous = state.withLock { state -> WorkerState in
            let previous = state.worker
            state.worker = destroy ? .destroyed : .none
            return previous
        }
        guard case .running(let worker) = previous else { return }
        worker.process.kill()
        worker.close(reason: destroy ? "the space was destroyed" : "the engine stopped the space")
        _ = await worker.process.waitForExit()
    }

    var currentWorker: WorkerConnection? {
        state.withLock { if case .running(let worker) = $0.worker { worker } else { nil } }
    }

    // MARK: Runs

    func startRun(label: String?, metadata: JSONValue?) -> RunRecord {
        let run = RunRecord(
            runId: Identifier.make("run_"), label: label, metadata: metadata, startedAt: Clock.timestamp())
        let record = state.withLock { state in
            state.record.runs.append(run)
            return state.record
        }
        persist(record)
        return run
    }

    /// Removes runs from the record (their transcripts are gone from the audit log).
    func forgetRuns(_ runIds: Set<String>) {
        let record = state.withLock { state in
            state.record.runs.removeAll { runIds.contains($0.runId) }
            return state.record
        }
        persist(record)
    }

    /// nil when the space has no such run; whether it has ended otherwise.
    func runState(_ runId: String) -> Bool? {
        state.withLock { state in state.record.runs.first { $0.runId == runId }.map { $0.status != nil } }
    }

    func endRun(_ runId: String, status: String) -> JSONValue? {
        let result = state.withLock { state -> (JSONValue, SpaceRecord)? in
            guard let index = state.record.runs.firstIndex(where: { $0.runId == runId }) else { return nil }
            if state.record.runs[index].status == nil {
                state.record.runs[index].status = status
                state.record.runs[index].endedAt = Clock.timestamp()
                state.record.runs[index].durationMs = Clock.millisecondsSince(
                    state.record.runs[index].startedMonotonic)
            }
            var summary = state.record.runs[index].summary
            if case .object(var fields) = summary {
                fields["spaceId"] = .string(id)
                summary = .object(fields)
            }
            return (summary, state.record)
        }
        guard let result else { return nil }
        persist(result.1)
        return result.0
    }

    func updateRun(_ runId: String?, _ update: (inout RunRecord) -> Void) {
        guard let runId else { return }
        state.withLock { state in
            guard let index = state.record.runs.firstIndex(where: { $0.runId == runId }) else { return }
            update(&state.record.runs[index])
        }
    }

    // MARK: Batches bookkeeping

    func countBatch(operations: Int) {
        state.withLock { state in
            state.batches += 1
            state.operations += operations
        }
    }

    func idempotentResult(_ key: String) -> JSONValue? {
        state.withLock { $0.idempotent[key] }
    }

    func rememberIdempotent(_ key: String, _ result: JSONValue) {
        state.withLock { state in
            if state.idempotent.updateValue(result, forKey: key) == nil { state.idempotentOrder.append(key) }
            if state.idempotentOrder.count > Space.idempotencyMemory {
                state.idempotent[state.idempotentOrder.removeFirst()] = nil
            }
        }
    }
}

/// Why a space could not do what was asked of it, before any operation ran.
enum SpaceError: Error, CustomStringConvertible {
    case destroyed
    case launch(SandboxError)
    case workerDidNotStart(String)

    var description: String {
        switch self {
        case .destroyed: "the space was destroyed"
        case .launch(let error): "the space could not be started: \(error)"
        case .workerDidNotStart(let reason): "the space's worker did not start: \(reason)"
        }
    }

    var hint: String {
        switch self {
        case .destroyed: "create a new space with spaces/create"
        case .launch(let error): error.hint
        case .workerDidNotStart:
            "check that Bun runs on this host (spaces doctor), or pass its path with --bun or SPACES_BUN"
        }
    }

    var rpcError: RPCError {
        switch self {
        case .destroyed: RPCError(.spaceNotFound, description, hint: hint)
        case .launch: RPCError(.isolationUnavailable, description, hint: hint)
        case .workerDidNotStart: RPCError(.isolationUnavailable, description, hint: hint)
        }
    }
}
