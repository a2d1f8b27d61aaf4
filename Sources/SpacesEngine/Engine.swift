import Logging
import SpacesPolicy
public import SpacesProtocol
import SpacesSandbox
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How an engine is set up.
public struct EngineConfiguration: Sendable {
    public var stateDirectory: String
    public var bunPath: String?
    public var launcherPath: String?
    public var maxLineBytes: Int
    public var maxSpaces: Int
    /// Pre-started spaces kept ready for `spaces/create` (0: none).
    public var poolSize: Int
    /// Days an ended run's transcript stays in the audit log (nil: forever); a space may set its own.
    public var retentionDays: Int?
    /// Run workers on the host with no isolation: only with the loud opt-in flag, never by default.
    public var unsafeNoIsolation = false
    public var engineVersion: String

    public init(
        stateDirectory: String? = nil, bunPath: String? = nil, launcherPath: String? = nil,
        maxLineBytes: Int = 16 << 20, maxSpaces: Int = 256, poolSize: Int = 2, engineVersion: String = "0.1.0"
    ) {
        self.maxSpaces = maxSpaces
        self.poolSize = poolSize
        self.stateDirectory = stateDirectory ?? StateStore.defaultRoot()
        self.bunPath = bunPath
        self.launcherPath = launcherPath
        self.maxLineBytes = maxLineBytes
        self.engineVersion = engineVersion
    }
}

/// The operation interpreter: spaces, runs and batches, behind the protocol's methods.
///
/// Methods are called by a transport. Those that must keep submission order (`operations/submit`) are split
/// into a synchronous part (validation, ordering) and the work itself, run on the space's executor.
public final class Engine: Sendable {
    public let configuration: EngineConfiguration
    let store: StateStore
    let logger: Logger
    /// Sends a notification to the client (`events/emitted`).
    let notify: @Sendable (String, JSONValue) -> Void

    struct State {
        var spaces: [String: Space] = [:]
        var batches: [String: BatchControl] = [:]
        /// `notifications/cancelled` names the request that started a batch.
        var batchByRequest: [JSONValue: String] = [:]
        var environment: Result<SpaceEnvironment, SpaceEnvironment.LocateError>?
        var isolation: IsolationReport?
        var shuttingDown = false
        /// Batches waiting for a person, by approval id.
        var approvals: [String: PendingApproval] = [:]
        /// The client said at `initialize` that it answers `capabilities/invoke`.
        var clientHandlesCapabilities = false
        /// Sends a request to the client and awaits its answer; set by the transport.
        var clientRequester: ClientRequester?
        /// `tools/call`s whose batch waits for approval, by batch id (Tools.swift).
        var batchWaiters: [String: BatchWaiter] = [:]
    }

    /// `(method, params, timeoutMs) → the client's result or error`.
    public typealias ClientRequester = @Sendable (String, JSONValue, Int) async -> Result<JSONValue, RPCError>

    let state = Mutex(State())
    let pool: SpacePool

    public init(
        configuration: EngineConfiguration, logger: Logger, notify: @escaping @Sendable (String, JSONValue) -> Void
    )
        throws(RPCError)
    {
        self.configuration = configuration
        self.store = StateStore(root: configuration.stateDirectory)
        self.logger = logger
        self.notify = notify
        self.pool = SpacePool(capacity: configuration.poolSize, store: store, logger: logger)
        do {
            try store.prepare()
            // Pooled spaces of an earlier engine are gone with it; their directories are leftovers.
            store.remove(pool.poolDirectory)
        } catch {
            throw RPCError(
                .internalError, "the state directory cannot be used: \(error)",
                hint: "pass a writable directory with --state-dir")
        }
    }

    /// Loads the spaces kept in the state directory. Their workers start on their first operation.
    public func loadSpaces() {
        let (records, problems) = store.loadAll()
        for problem in problems { logger.warning("skipped a space: \(problem)") }
        guard !records.isEmpty else { return }
        guard case .success(let environment) = environment() else {
            logger.error("spaces in the state directory cannot run: \(String(describing: self.environment()))")
            return
        }
        let loaded = records.map { record in
            Space(
                record: record, policy: (try? Policy.resolve(record.policyJSON)) ?? .default, store: store,
                environment: environment, logger: logger, invokeClient: clientInvoker)
        }
        state.withLock { state in
            for space in loaded { state.spaces[space.id] = space }
        }
        for space in loaded { denyApprovalsOfEarlierEngine(space) }
        startRetention()
        logger.info("loaded \(records.count) space(s) from \(configuration.stateDirectory)")
    }

    func environment() -> Result<SpaceEnvironment, SpaceEnvironment.LocateError> {
        if let cached = state.withLock({ $0.environment }) { return cached }
        var located = SpaceEnvironment.locate(
            bun: configuration.bunPath, launcher: configuration.launcherPath,
            requireLauncher: !configuration.unsafeNoIsolation)
        if case .success(var environment) = located {
            environment.unsafeNoIsolation = configuration.unsafeNoIsolation
            located = .success(environment)
        }
        state.withLock { $0.environment = located }
        return located
    }

    /// What this host gives a space, probed once (the launcher's probe takes about 10 ms).
    func isolation() -> IsolationReport {
        if let cached = state.withLock({ $0.isolation }) { return cached }
        let report = Sandbox.probe()
        state.withLock { $0.isolation = report }
        return report
    }

    /// The layers no space may start without. Cgroups are used where the host has them and only reported.
    public static let requiredLayers = ["user namespaces", "capabilities", "seccomp", "launcher"]

    /// `-32020` naming the first required isolation layer this host lacks, with its fix; nil when all are there.
    func missingIsolation() -> RPCError? {
        guard !configuration.unsafeNoIsolation else { return nil }
        let report = isolation()
        for name in Self.requiredLayers {
            guard let layer = report.layer(name), !layer.present else { continue }
            return RPCError(
                .isolationUnavailable, "isolation unavailable on this host: \(name) (\(layer.detail))",
                hint: (layer.fix.map { "\($0); " } ?? "")
                    + "`spaces doctor` checks every layer. Only for trusted code: spaces serve --unsafe-no-isolation")
        }
        return nil
    }

    func space(_ spaceId: String) throws(RPCError) -> Space {
        guard let space = state.withLock({ $0.spaces[spaceId] }) else { throw RPCError.spaceNotFound(spaceId) }
        return space
    }

    // MARK: initialize

    public func initialize(_ params: Params) throws(RPCError) -> JSONValue {
        guard try params.optionalString("protocolVersion") != nil else {
            throw RPCError.invalidParams(
                params.fieldPath("protocolVersion"), "missing required field",
                hint: "send protocolVersion: \"0.1\" (the version this engine speaks)")
        }
        _ = try params.optionalObject("client")
        let handlesCapabilities = try params.optionalObject("capabilities")?.optionalBool("capabilityHandlers") ?? false
        state.withLock { $0.clientHandlesCapabilities = handlesCapabilities }
        let report = isolation()
        let bunVersion: String
        switch environment() {
        case .success(let environment):
            bunVersion = environment.bunVersion
            pool.refill(environment: environment)
        case .failure:
            bunVersion = "unavailable"
        }
        return [
            "protocolVersion": "0.1",
            "engine": ["name": "agent-spaces", "version": .string(configuration.engineVersion)],
            "runtimes": [["language": "typescript", "runtime": "bun", "version": .string(bunVersion)]],
            "isolation": configuration.unsafeNoIsolation
                ? [
                    "user": false, "mount": false, "pid": false, "net": false, "ipc": false, "uts": false,
                    "seccomp": false, "capabilitiesDropped": false, "cgroup": "none", "unsafe": true,
                ]
                : [
                    "user": .bool(report.user), "mount": .bool(report.mount), "pid": .bool(report.pid),
                    "net": .bool(report.net), "ipc": .bool(report.ipc), "uts": .bool(report.uts),
                    "seccomp": .bool(report.seccomp), "capabilitiesDropped": .bool(report.capabilitiesDropped),
                    "cgroup": .string(report.cgroup),
                ],
            "limits": [
                "maxLineBytes": JSONValue(configuration.maxLineBytes), "outputBytes": 1_048_576,
                "maxOperationsPerBatch": JSONValue(Self.maxOperationsPerBatch),
            ],
            "stateDir": .string(configuration.stateDirectory),
        ]
    }

    static let maxOperationsPerBatch = 1000
    /// Batches one space may have waiting (the running one included): past this, `-32013`.
    static let maxQueuedBatches = 256

    // MARK: spaces

    public func createSpace(_ params: Params) async throws(RPCError) -> JSONValue {
        let name = try params.optionalString("name")
        if let name, !Self.isValidName(name) {
            throw RPCError.invalidParams(
                params.fieldPath("name"), "'\(name)' is not a valid space name",
                hint: "use 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit")
        }
        var policy = try Policy.resolve(params.members["policy"], field: params.fieldPath("policy"))
        if let limits = try params.optionalObject("limits") {
            policy.limits = try Policy.applyLimits(limits, to: policy.limits)
        }
        var files: [(String, String)] = []
        var copyFrom: String?
        if let workspace = try params.optionalObject("workspace") {
            try workspace.rejectUnknown(allowed: ["files", "copyFrom", "template"])
            if let template = try workspace.optionalString("template") {
                throw RPCError.invalidParams(
                    workspace.fieldPath("template"), "no template named '\(template)'",
                    hint: "this engine has no templates yet; use workspace.files or workspace.copyFrom")
            }
            if let map = try workspace.optionalStringMap("files") {
                for (path, content) in map.sorted(by: { $0.key < $1.key }) {
                    guard WorkspaceBoundary.relativePath(path) != nil, !path.isEmpty else {
                        throw RPCError.invalidParams(
                            Params(members: [:], path: workspace.fieldPath("files")).fieldPath(path),
                            "'\(path)' leaves the workspace",
                            hint: "use paths relative to the workspace, such as \"src/main.ts\"")
                    }
                    files.append((path, content))
                }
            }
            copyFrom = try workspace.optionalString("copyFrom")
        }
        let retentionDays = try params.optionalInt("retentionDays", in: 0...36_500)
        let secrets = try SecretReference.parse(try params.optionalObject("secrets"))
        for reference in secrets {
            switch reference.resolve() {
            case .failure(let error): throw error
            case .success(let value) where value.utf8.count < Redactor.minimumLength:
                throw RPCError.invalidParams(
                    params.fieldPath("secrets") + "." + reference.name,
                    "the value is shorter than \(Redactor.minimumLength) bytes, too short to redact reliably",
                    hint: "use a real credential; short values would be hidden wherever they appear in output")
            case .success: break
            }
        }
        var capabilities = try CapabilityDeclaration.parseList(
            try params.optionalArray("capabilities"), path: params.fieldPath("capabilities"),
            secrets: Set(secrets.map(\.name)))
        try checkClientHandlers(capabilities, path: params.fieldPath("capabilities"))
        if let missing = missingIsolation() { throw missing }
        let count = state.withLock { $0.spaces.count }
        guard count < configuration.maxSpaces else {
            throw RPCError(
                .busy, "this engine already has \(count) spaces, its maximum",
                hint: "destroy spaces you no longer need (spaces/list shows them), or run another engine")
        }
        let environment: SpaceEnvironment
        switch self.environment() {
        case .success(let located): environment = located
        case .failure(let error): throw RPCError(.isolationUnavailable, error.message, hint: error.hint)
        }

        let pooled = SpacePool.fits(name: name, policy: policy) ? pool.take(environment: environment) : nil
        let spaceId = pooled?.spaceId ?? Identifier.make("sp_")
        let (uid, gid) =
            pooled.map { ($0.hostUID, $0.hostGID) }
            ?? (configuration.unsafeNoIsolation ? (getuid(), getgid()) : Self.hostIdentity())
        var record = SpaceRecord(
            spaceId: spaceId, name: name ?? spaceId, createdAt: Clock.timestamp(), policyJSON: policy.json,
            hostUID: uid, hostGID: gid, seqReserved: 0, runs: [], secrets: secrets)
        record.retentionDays = retentionDays
        let space = Space(
            record: record, policy: policy, store: store, environment: environment, logger: logger,
            invokeClient: clientInvoker)
        if !capabilities.isEmpty {
            do throws(RPCError) {
                capabilities = try await space.discoverMethods(capabilities, path: params.fieldPath("capabilities"))
            } catch {
                await space.stopCapabilityHandlers()
                if let pooled { pooled.worker.process.kill() }
                throw error
            }
            record.capabilities = capabilities
            space.setCapabilities(capabilities, persisting: false)
        }
        do throws(StateStore.Failure) {
            if let pooled {
                // The sandbox keeps the workspace it was started with: only its path on the host changes.
                guard rename(pool.directory(spaceId), store.spaceDirectory(spaceId)) == 0 else {
                    throw StateStore.Failure(description: "cannot move the pooled space into place")
                }
                space.adopt(pooled.worker)
            } else {
                try store.makeDirectory(store.workspace(spaceId))
            }
            if let copyFrom { try store.copyContents(of: copyFrom, into: store.workspace(spaceId)) }
            if pooled == nil || copyFrom != nil { store.chown(store.spaceDirectory(spaceId), uid: uid, gid: gid) }
            try store.save(record)
        } catch {
            if let pooled {
                pooled.worker.process.kill()
                store.remove(pool.directory(spaceId))
            }
            store.remove(store.spaceDirectory(spaceId))
            if copyFrom != nil, error.description.contains("copy") || error.description.contains("not a directory") {
                throw RPCError.invalidParams(
                    params.fieldPath("workspace") + ".copyFrom", error.description,
                    hint: "name an existing, readable directory on the engine's host")
            }
            throw RPCError(
                .internalError, error.description, hint: "check the state directory's permissions and free space")
        }
        do throws(SpaceError) {
            let worker = try await space.ensureWorker()
            for (path, content) in files {
                let answer = await worker.request("file.write", ["path": .string(path), "content": .string(content)])
                if case .failed(_, let message, _) = answer {
                    throw SpaceError.workerDidNotStart("workspace.files: \(message)")
                }
            }
            if !capabilities.isEmpty { try await space.installCapabilities(on: worker, writeDeclarations: true) }
        } catch {
            await space.stopCapabilityHandlers()
            await space.stopWorker(destroy: true)
            store.remove(store.spaceDirectory(spaceId))
            throw error.rpcError
        }
        var created: [String: JSONValue] = [
            "name": .string(record.name), "policy": policy.json, "pooled": .bool(pooled != nil),
        ]
        if configuration.unsafeNoIsolation { created["unsafe"] = true }
        if !capabilities.isEmpty { created["capabilities"] = .array(capabilities.map(\.json)) }
        space.audit.record("space.created", data: created)
        space.audit.flush()
        state.withLock { $0.spaces[spaceId] = space }
        if configuration.unsafeNoIsolation {
            logger.warning(
                "space created WITHOUT ISOLATION: its code runs on this host as this user (--unsafe-no-isolation)",
                metadata: ["space": "\(spaceId)", "name": "\(record.name)"])
        } else {
            logger.info("space created", metadata: ["space": "\(spaceId)", "name": "\(record.name)"])
        }
        return space.json(withStats: false)
    }

    static func isValidName(_ name: String) -> Bool {
        guard (1...63).contains(name.utf8.count), let first = name.utf8.first else { return false }
        func isAlphanumeric(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
        }
        return isAlphanumeric(first)
            && name.utf8.allSatisfy {
                isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
            }
    }

    /// The host ids a new space's root maps to: an unprivileged id of its own when the engine is root,
    /// the engine's own ids otherwise.
    static func hostIdentity() -> (UInt32, UInt32) {
        guard getuid() == 0 else { return (getuid(), getgid()) }
        var generator = SystemRandomNumberGenerator()
        let id = 1_000_000 + UInt32.random(in: 0..<1_000_000, using: &generator)
        return (id, id)
    }

    public func listSpaces() -> JSONValue {
        let spaces = state.withLock { Array($0.spaces.values) }
        let sorted = spaces.map { ($0.record.createdAt, $0.id, $0.json(withStats: false)) }.sorted {
            ($0.0, $0.1) < ($1.0, $1.1)
        }
        return ["spaces": .array(sorted.map(\.2))]
    }

    public func getSpace(_ params: Params) throws(RPCError) -> JSONValue {
        try space(try params.string("spaceId")).json(withStats: true)
    }

    public func destroySpace(_ params: Params) async throws(RPCError) -> JSONValue {
        let spaceId = try params.string("spaceId")
        let keepWorkspace = try params.optionalBool("keepWorkspace") ?? false
        let space = try space(spaceId)
        let batches = state.withLock { state in
            state.spaces[spaceId] = nil
            return state.batches.values.filter { $0.spaceId == spaceId }
        }
        await Self.cancel(batches)
        let waiting = state.withLock { $0.approvals.values.filter { $0.spaceId == spaceId }.map(\.approvalId) }
        for approvalId in waiting { expire(approvalId, .destroyed, space: space) }
        await space.stopWorker(destroy: true)
        await space.stopCapabilityHandlers()
        space.audit.record("space.destroyed", data: ["keepWorkspace": .bool(keepWorkspace)])
        space.audit.flush()
        var result: [String: JSONValue] = ["destroyed": true, "spaceId": .string(spaceId)]
        if keepWorkspace {
            store.remove(store.recordPath(spaceId))
            result["workspacePath"] = .string(store.workspace(spaceId))
        } else {
            store.remove(store.spaceDirectory(spaceId))
        }
        logger.info("space destroyed", metadata: ["space": "\(spaceId)"])
        return .object(result)
    }

    /// `spaces/updatePolicy`: validated like `spaces/create`'s policy at once, then applied in order with the
    /// space's batches (a running batch finishes under the policy it started with), audited with the old and
    /// the new one.
    package func prepareUpdatePolicy(_ params: Params) throws(RPCError) -> (
        executor: SerialExecutor, job: @Sendable () async -> Result<JSONValue, RPCError>
    ) {
        let space = try space(try params.string("spaceId"))
        guard params.has("policy") else {
            throw RPCError.invalidParams(
                params.fieldPath("policy"), "missing required field",
                hint: "send the new policy: a preset name or a (partial) policy object")
        }
        let policy = try Policy.resolve(params.members["policy"], field: params.fieldPath("policy"))
        let logger = self.logger
        return (
            space.executor,
            {
                guard !space.isDestroyed else { return .failure(RPCError.spaceNotFound(space.id)) }
                let (old, record) = space.replacePolicy(policy)
                space.persist(record)
                space.audit.record("policy.updated", data: ["from": old, "to": policy.json])
                space.audit.flush()
                logger.info("policy updated", metadata: ["space": "\(space.id)", "preset": "\(policy.preset)"])
                return .success(space.json(withStats: false))
            }
        )
    }

    // MARK: runs

    public func startRun(_ params: Params) throws(RPCError) -> JSONValue {
        let space = try space(try params.string("spaceId"))
        let label = try params.optionalString("label")
        let metadata = try params.optionalObject("metadata").map { JSONValue.object($0.members) }
        let run = space.startRun(label: label, metadata: metadata)
        var runData: [String: JSONValue] = [:]
        if let label { runData["label"] = .string(label) }
        if let metadata { runData["metadata"] = metadata }
        space.audit.record("run.started", runId: run.runId, data: runData)
        space.audit.flush()
        var result: [String: JSONValue] = [
            "runId": .string(run.runId), "spaceId": .string(space.id), "startedAt": .string(run.startedAt),
        ]
        if let label { result["label"] = .string(label) }
        return .object(result)
    }

    public func endRun(_ params: Params) throws(RPCError) -> JSONValue {
        let runId = try params.string("runId")
        let status = try params.oneOf("status", ["succeeded", "failed", "cancelled"]) ?? "succeeded"
        let spaces = state.withLock { Array($0.spaces.values) }
        for space in spaces {
            if let summary = space.endRun(runId, status: status) {
                space.audit.record("run.ended", runId: runId, data: ["summary": summary])
                space.audit.flush()
                return summary
            }
        }
        throw Self.runNotFound(runId, field: params.fieldPath("runId"))
    }

    static func runNotFound(_ runId: String, field: String) -> RPCError {
        RPCError(
            .runNotFound, "no run with id '\(runId)'",
            hint: "start one with runs/start, or omit runId to use the space's implicit run", field: field)
    }

    // MARK: operations

    /// Validates an `operations/submit` and returns the space's executor with the job that runs the batch.
    /// Call `executor.submit` at once: the call order is the order batches run in.
    package func prepareSubmit(_ params: Params, requestID: JSONValue?) throws(RPCError) -> (
        executor: SerialExecutor, preferred: (any TaskExecutor)?, job: @Sendable () async -> Result<JSONValue, RPCError>
    ) {
        let space = try space(try params.string("spaceId"))
        guard space.executor.pending < Self.maxQueuedBatches else {
            throw RPCError(
                .busy, "space \(space.id) already has \(Self.maxQueuedBatches) batches waiting",
                hint: "wait for earlier batches to answer before submitting more, or put more operations in one batch")
        }
        let runId = try params.optionalString("runId")
        if let runId {
            switch space.runState(runId) {
            case nil: throw Self.runNotFound(runId, field: params.fieldPath("runId"))
            case true?:
                throw RPCError.invalidParams(
                    params.fieldPath("runId"), "run '\(runId)' has ended",
                    hint: "start a new run with runs/start, or omit runId")
            case false?: break
            }
        }
        if let key = try params.optionalString("idempotencyKey"), !(1...256).contains(key.utf8.count) {
            throw RPCError.invalidParams(
                params.fieldPath("idempotencyKey"), "must be 1 to 256 bytes long",
                hint: "use a short unique string per logical submission, such as a UUID")
        }
        guard let rawOperations = try params.optionalArray("operations") else {
            throw RPCError.invalidParams(
                params.fieldPath("operations"), "missing required field",
                hint: "send operations: [{\"kind\": \"file.write\", \"path\": \"a.txt\", \"content\": \"hi\"}]")
        }
        guard (1...Self.maxOperationsPerBatch).contains(rawOperations.count) else {
            throw RPCError.invalidParams(
                params.fieldPath("operations"),
                "a batch holds 1 to \(Self.maxOperationsPerBatch) operations, got \(rawOperations.count)",
                hint: "split the work into batches of at most \(Self.maxOperationsPerBatch) operations")
        }
        var operations: [Operation] = []
        operations.reserveCapacity(rawOperations.count)
        var seenIds: Set<String> = []
        for (index, raw) in rawOperations.enumerated() {
            let operation = try Operation.parse(raw, index: index)
            guard seenIds.insert(operation.opId).inserted else {
                throw RPCError.invalidParams(
                    "params.operations[\(index)].id", "duplicate operation id '\(operation.opId)'",
                    hint: "give each operation of a batch its own id, or omit ids")
            }
            let declared = Set(space.record.secrets.map(\.name))
            for name in operation.fields["secrets"]?.arrayValue?.compactMap(\.stringValue) ?? []
            where !declared.contains(name) {
                throw RPCError.invalidParams(
                    "params.operations[\(index)].secrets", "this space declares no secret '\(name)'",
                    hint: "declare it in spaces/create (secrets: {\"\(name)\": {\"env\": \"VARIABLE\"}}), or remove it")
            }
            operations.append(operation)
        }
        let onError = try params.oneOf("onError", ["stop", "continue"]) ?? "stop"
        let request = BatchRequest(
            spaceId: space.id, runId: runId, operations: operations, stopOnError: onError == "stop",
            stream: try params.optionalBool("stream") ?? false, dryRun: try params.optionalBool("dryRun") ?? false,
            idempotencyKey: try params.optionalString("idempotencyKey"))
        let control = BatchControl(batchId: Identifier.make("b_"), spaceId: space.id)
        state.withLock { state in
            state.batches[control.batchId] = control
            if let requestID { state.batchByRequest[requestID] = control.batchId }
        }
        let streamer = eventStreamer(spaceId: space.id, batchId: control.batchId, enabled: request.stream)
        let job: @Sendable () async -> Result<JSONValue, RPCError> = { [self] in
            defer {
                state.withLock { state in
                    state.batches[control.batchId] = nil
                    if let requestID { state.batchByRequest[requestID] = nil }
                }
            }
            if space.isDestroyed { return .failure(RPCError.spaceNotFound(space.id)) }
            let (result, pending) = await space.run(request, control: control, notify: streamer)
            if let pending { self.awaitApproval(pending, space: space) }
            return .success(result)
        }
        return (space.executor, space.currentWorker?.thread, job)
    }

    public func cancelBatch(_ params: Params) throws(RPCError) -> JSONValue {
        let batchId = try params.string("batchId")
        // A batch waiting for a person is cancelled by denying its approval.
        if let waiting = state.withLock({ $0.approvals.values.first { $0.batchId == batchId } }) {
            expire(waiting.approvalId, .cancelled)
            return ["cancelled": true, "batchId": .string(batchId)]
        }
        guard let control = state.withLock({ $0.batches[batchId] }) else { throw Self.noBatch(batchId, params) }
        if let space = state.withLock({ $0.spaces[control.spaceId] }) {
            space.audit.record("cancel", batchId: batchId, data: ["method": "operations/cancel"])
            space.audit.flush()
        }
        guard control.cancel() else { throw Self.noBatch(batchId, params) }
        return ["cancelled": true, "batchId": .string(batchId)]
    }

    static func noBatch(_ batchId: String, _ params: Params) -> RPCError {
        RPCError.invalidParams(
            params.fieldPath("batchId"), "no running or queued batch '\(batchId)'",
            hint: "the batch may have finished already; its result holds its events")
    }

    /// `notifications/cancelled`: cancels the batch started by that request, if any.
    public func cancelRequest(_ requestID: JSONValue) {
        let control = state.withLock { state in state.batchByRequest[requestID].flatMap { state.batches[$0] } }
        _ = control?.cancel()
    }

    // MARK: retention

    /// Applies retention now and then every hour, for as long as the engine runs.
    func startRetention() {
        Task { [self] in
            while !state.withLock({ $0.shuttingDown }) {
                applyRetention()
                try? await Task.sleep(for: .seconds(3600))
            }
        }
    }

    /// Removes, from each space's audit log, the entries of runs that ended longer ago than the space's (or the
    /// engine's) retention, and records that it did.
    public func applyRetention() {
        let spaces = state.withLock { Array($0.spaces.values) }
        for space in spaces {
            let record = space.record
            guard let days = record.retentionDays ?? configuration.retentionDays else { continue }
            let cutoff = Clock.timestamp(inMilliseconds: -days * 86_400_000)
            let expired = Set(record.runs.filter { ($0.endedAt ?? "9") <= cutoff }.map(\.runId))
            guard !expired.isEmpty else { continue }
            let removed = space.audit.prune(runs: expired, reason: "ended more than \(days) day(s) ago")
            space.forgetRuns(expired)
            logger.info(
                "retention removed \(expired.count) run(s), \(removed) audit entries",
                metadata: ["space": "\(space.id)"])
        }
    }

    /// Sends a batch's events as `events/emitted` notifications when the batch streams; nil when it does not.
    func eventStreamer(spaceId: String, batchId: String, enabled: Bool) -> (@Sendable (JSONValue) -> Void)? {
        guard enabled else { return nil }
        let notify = self.notify
        return { @Sendable event in
            notify("events/emitted", ["spaceId": .string(spaceId), "batchId": .string(batchId), "event": event])
        }
    }

    // MARK: approvals

    /// Parks a batch that waits for a person: tells the client, and denies it when nobody answers in time.
    func awaitApproval(_ pending: PendingApproval, space: Space) {
        state.withLock { $0.approvals[pending.approvalId] = pending }
        space.audit.flush()
        notify("approvals/requested", ["approval": pending.json])
        let timeout = space.policy.approvalTimeoutMs
        Task { [self] in
            try? await Task.sleep(for: .milliseconds(timeout))
            expire(pending.approvalId, .timeout(ms: timeout))
        }
    }

    /// Denies a pending approval that nobody answered (or whose batch or space went away), fail closed.
    /// `space` is given when the space has already left the registry (destroy).
    func expire(_ approvalId: String, _ expiry: ApprovalExpiry, space given: Space? = nil) {
        guard let pending = state.withLock({ $0.approvals.removeValue(forKey: approvalId) }) else { return }
        guard let space = given ?? state.withLock({ $0.spaces[pending.spaceId] }) else { return }
        if pending.remainder.waitingCall != nil {
            finishUnanswered(pending, expiry, space: space)
            return
        }
        space.audit.record(
            "approval.resolved", runId: pending.remainder.runId, batchId: pending.batchId, opId: pending.opId,
            data: [
                "approvalId": .string(approvalId), "decision": "deny", "by": .string(expiry.by),
                "note": .string(expiry.reason),
            ])
        space.audit.flush()
        logger.info("approval denied", metadata: ["approval": "\(approvalId)", "why": "\(expiry.reason)"])
        batchContinued(pending.batchId, result: nil, reason: expiry.reason)
    }

    static func approvalNotFound(_ approvalId: String) -> RPCError {
        RPCError(
            .approvalNotFound, "no pending approval '\(approvalId)'",
            hint:
                "it was answered already, expired (approvalTimeoutMs), or its batch was cancelled; approvals/list shows the pending ones",
            field: "params.approvalId")
    }

    /// `approvals/resolve`: checked at once, then the batch continues in order with the space's others.
    package func prepareResolve(_ params: Params) throws(RPCError) -> (
        executor: SerialExecutor, job: @Sendable () async -> Result<JSONValue, RPCError>
    ) {
        let approvalId = try params.string("approvalId")
        guard let decision = try params.oneOf("decision", ["allow_once", "allow_for_space", "deny"]) else {
            throw RPCError.invalidParams(
                params.fieldPath("decision"), "missing required field",
                hint: "answer with decision: \"allow_once\", \"allow_for_space\" or \"deny\"")
        }
        let note = try params.optionalString("note")
        guard let pending = state.withLock({ $0.approvals.removeValue(forKey: approvalId) }) else {
            throw Self.approvalNotFound(approvalId)
        }
        let space = try space(pending.spaceId)
        if decision == "allow_for_space" {
            let grant = Grant(
                grantId: Identifier.make("gr_"), spaceId: space.id, matcher: pending.matcher,
                createdAt: Clock.timestamp(), by: approvalId)
            space.addGrant(grant)
            space.audit.record("grant.created", data: ["grant": grant.json])
        }
        let control = BatchControl(batchId: pending.batchId, spaceId: space.id)
        state.withLock { $0.batches[control.batchId] = control }
        let streamer = eventStreamer(spaceId: space.id, batchId: control.batchId, enabled: pending.stream)
        let resolution = ApprovalResolution(approvalId: approvalId, decision: decision, by: "client", note: note)
        let job: @Sendable () async -> Result<JSONValue, RPCError> = { [self] in
            defer { state.withLock { _ = $0.batches.removeValue(forKey: control.batchId) } }
            if space.isDestroyed { return .failure(RPCError.spaceNotFound(space.id)) }
            let (result, next) = await space.run(
                pending.remainder, control: control, notify: streamer, resolution: resolution)
            if let next { self.awaitApproval(next, space: space) }
            if next == nil { self.batchContinued(pending.batchId, result: result) }
            return .success(result)
        }
        return (space.executor, job)
    }

    public func listApprovals(_ params: Params) throws(RPCError) -> JSONValue {
        let spaceId = try params.optionalString("spaceId")
        if let spaceId { _ = try space(spaceId) }
        let pending = state.withLock { Array($0.approvals.values) }
            .filter { spaceId == nil || $0.spaceId == spaceId }
            .sorted { $0.requestedAt < $1.requestedAt }
        return ["approvals": .array(pending.map(\.json))]
    }

    public func listGrants(_ params: Params) throws(RPCError) -> JSONValue {
        let space = try space(try params.string("spaceId"))
        return ["grants": .array(space.grants.map(\.json))]
    }

    public func revokeGrant(_ params: Params) throws(RPCError) -> JSONValue {
        let grantId = try params.string("grantId")
        let spaces = state.withLock { Array($0.spaces.values) }
        for space in spaces where space.revokeGrant(grantId) {
            space.audit.record("grant.revoked", data: ["grantId": .string(grantId)])
            space.audit.flush()
            return ["revoked": true, "grantId": .string(grantId)]
        }
        throw RPCError.invalidParams(
            params.fieldPath("grantId"), "no grant '\(grantId)'", hint: "grants/list shows a space's grants")
    }

    /// Approvals that were pending when an earlier engine stopped are denied now, in each space's log.
    func denyApprovalsOfEarlierEngine(_ space: Space) {
        var open: [String: JSONValue] = [:]
        for entry in AuditLog.read(path: store.auditPath(space.id), afterSeq: 0, limit: Int.max).entries {
            if entry["kind"] == "event", entry["data"]?["type"] == "approval.requested",
                let id = entry["data"]?["approvalId"]?.stringValue
            {
                open[id] = entry
            } else if entry["kind"] == "approval.resolved", let id = entry["data"]?["approvalId"]?.stringValue {
                open[id] = nil
            }
        }
        for (id, entry) in open.sorted(by: { $0.key < $1.key }) {
            space.audit.record(
                "approval.resolved", batchId: entry["batchId"]?.stringValue, opId: entry["opId"]?.stringValue,
                data: ["approvalId": .string(id), "decision": "deny", "by": "engine restart"])
        }
        space.audit.flush()
    }

    // MARK: audit

    /// The audit log of a space, present or destroyed (its log outlives it).
    func auditPath(_ params: Params) throws(RPCError) -> String {
        let spaceId = try params.string("spaceId")
        let path = store.auditPath(spaceId)
        guard spaceId.hasPrefix("sp_"), !spaceId.contains("/"), access(path, F_OK) == 0 else {
            throw RPCError.spaceNotFound(spaceId)
        }
        // Whatever the space recorded so far is on disk before it is read.
        state.withLock { $0.spaces[spaceId] }?.audit.flush()
        return path
    }

    public func readAudit(_ params: Params) throws(RPCError) -> JSONValue {
        let path = try auditPath(params)
        let afterSeq = try params.optionalInt("afterSeq", in: 0...Int(Int32.max)) ?? 0
        let limit = try params.optionalInt("limit", in: 1...10_000) ?? 1000
        let (entries, head) = AuditLog.read(path: path, afterSeq: afterSeq, limit: limit)
        return ["entries": .array(entries), "headHash": .string(head)]
    }

    public func verifyAudit(_ params: Params) throws(RPCError) -> JSONValue {
        let verification = AuditLog.verify(path: try auditPath(params))
        var result: [String: JSONValue] = [
            "ok": .bool(verification.ok), "entries": JSONValue(verification.entries),
            "headHash": .string(verification.headHash),
        ]
        if let bad = verification.firstBadSeq { result["firstBadSeq"] = JSONValue(bad) }
        return .object(result)
    }

    /// `spaces audit verify`: checks a log file without an engine.
    public static func verifyAuditFile(stateDirectory: String, spaceId: String) -> (
        ok: Bool, entries: Int, firstBadSeq: Int?
    )? {
        let path = StateStore(root: stateDirectory).auditPath(spaceId)
        guard access(path, F_OK) == 0 else { return nil }
        let verification = AuditLog.verify(path: path)
        return (verification.ok, verification.entries, verification.firstBadSeq)
    }

    // MARK: shutdown

    /// Cancels batches and gives their running operations up to two seconds to end their processes and report
    /// it (`command.exited` with `cancelled`), so that stopping the space afterwards loses no event.
    static func cancel(_ batches: [BatchControl]) async {
        for batch in batches { _ = batch.cancel() }
        for _ in 0..<400 where batches.contains(where: \.isRunning) {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Cancels every batch and kills every space's processes, waiting until they are gone.
    public func shutdown() async {
        let (spaces, batches) = state.withLock { state in
            state.shuttingDown = true
            return (Array(state.spaces.values), Array(state.batches.values))
        }
        await Self.cancel(batches)
        await pool.drain()
        await withTaskGroup(of: Void.self) { group in
            for space in spaces {
                group.addTask {
                    await space.stopWorker(destroy: false)
                    await space.stopCapabilityHandlers()
                }
            }
        }
    }
}
