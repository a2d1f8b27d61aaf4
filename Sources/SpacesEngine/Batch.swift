import Logging
import SpacesPolicy
import SpacesProtocol
import Synchronization

/// A submitted batch as the engine tracks it for `operations/cancel`.
///
/// Lifecycle: `queued` → `running` → `finished`; `cancel()` from any state but `finished` sets `cancelled`,
/// and, while an operation is in flight, asks the worker to kill that operation's processes.
final class BatchControl: Sendable {
    enum Phase {
        case queued
        case running
        case finished
    }

    private struct State {
        var phase = Phase.queued
        var cancelled = false
        /// The worker request in flight, to address a `cancel` at.
        var inFlight: (worker: WorkerConnection, requestID: Int)?
    }

    let batchId: String
    let spaceId: String
    private let state = Mutex(State())

    init(batchId: String, spaceId: String) {
        self.batchId = batchId
        self.spaceId = spaceId
    }

    var isCancelled: Bool { state.withLock { $0.cancelled } }
    var isRunning: Bool { state.withLock { $0.phase == .running } }

    /// Returns false when the batch had already finished.
    func cancel() -> Bool {
        let (accepted, inFlight) = state.withLock { state -> (Bool, (WorkerConnection, Int)?) in
            guard state.phase != .finished else { return (false, nil) }
            state.cancelled = true
            return (true, state.inFlight)
        }
        if let (worker, requestID) = inFlight { worker.post("cancel", ["target": JSONValue(requestID)]) }
        return accepted
    }

    func begin() { state.withLock { $0.phase = .running } }
    func finish() {
        state.withLock {
            $0.phase = .finished; $0.inFlight = nil
        }
    }

    /// Records the request now in flight; if a cancel already came, forwards it at once.
    func setInFlight(_ worker: WorkerConnection?, requestID: Int) {
        let cancelNow = state.withLock { state -> Bool in
            state.inFlight = worker.map { ($0, requestID) }
            return state.cancelled && worker != nil
        }
        if cancelNow, let worker { worker.post("cancel", ["target": JSONValue(requestID)]) }
    }
}

/// What a client asked of one batch.
struct BatchRequest: Sendable {
    var spaceId: String
    var runId: String?
    var operations: [Operation]
    var stopOnError: Bool
    var stream: Bool
    var dryRun: Bool
    var idempotencyKey: String?
    /// The operation a person approved (`approvals/resolve`): it runs without asking again.
    var approvedOpId: String? = nil
    /// The first operation is still running, and one of its capability calls waits for a person.
    var waitingCall: WaitingCall? = nil
}

/// A running operation's capability call that waits for a person.
struct WaitingCall: Sendable {
    var call: PendingCall
    var inFlight: InFlightOperation
}

/// How a batch continues after `approvals/resolve`.
struct ApprovalResolution: Sendable {
    var approvalId: String
    var decision: String
    var by: String
    var note: String?
}

/// Collects a batch's events in order and streams each as it is made.
///
/// Shared between the batch's task and the worker's reader thread (which delivers streamed output), hence the
/// `Mutex`: the sequence number is taken and the event appended under one lock, so events are in `seq` order.
final class EventRecorder: Sendable {
    private struct State {
        var events: [JSONValue] = []
        /// Secret values removed so far, by operation.
        var redactions: [String: Int] = [:]
        /// Streamed output held back until it is sure no secret continues in the next chunk, by "opId stream".
        var pendingOutput: [String: String] = [:]
        /// Events already returned in a batch's answer (a batch that waited for a person answers twice).
        var returned = 0
    }

    private let events = Mutex(State())
    let space: Space
    let batchId: String
    let runId: String?
    let notify: (@Sendable (JSONValue) -> Void)?

    init(space: Space, batchId: String, runId: String?, notify: (@Sendable (JSONValue) -> Void)?) {
        self.space = space
        self.batchId = batchId
        self.runId = runId
        self.notify = notify
    }

    /// Records an event (its secrets redacted), audits it, and streams it. Before an operation's last event,
    /// an `output.redacted` event says how many secret values its output lost, if any.
    func emit(_ type: String, opId: String, _ fields: [String: JSONValue] = [:], alreadyRedacted: Int = 0) {
        let (redacted, count) = space.redactor.redact(JSONValue.object(fields))
        var sent: [JSONValue] = []
        events.withLock { state in
            state.redactions[opId, default: 0] += count + alreadyRedacted
            if type == "operation.completed" || type == "operation.failed",
                let total = state.redactions.removeValue(forKey: opId), total > 0
            {
                sent.append(append(&state, "output.redacted", opId: opId, ["count": JSONValue(total)]))
            }
            sent.append(append(&state, type, opId: opId, redacted.objectValue ?? [:]))
        }
        // A streamed event is acknowledged as it is sent: it is in the audit log first.
        if let notify {
            space.audit.flush()
            for event in sent { notify(event) }
        }
    }

    private func append(_ state: inout State, _ type: String, opId: String, _ fields: [String: JSONValue]) -> JSONValue
    {
        var event = fields
        event["batchId"] = .string(batchId)
        event["opId"] = .string(opId)
        event["type"] = .string(type)
        event["seq"] = JSONValue(space.nextSeq())
        event["at"] = .string(Clock.timestamp())
        space.audit.record("event", runId: runId, batchId: batchId, opId: opId, data: event)
        let value = JSONValue.object(event)
        state.events.append(value)
        return value
    }

    /// Streamed output: redacted, and held back at a chunk's end as long as a secret could straddle chunks.
    func emitOutput(opId: String, stream: String, data: String) {
        let key = opId + " " + stream
        let (send, count) = events.withLock { state -> (String, Int) in
            let (send, keep, count) = space.redactor.streamed(
                pending: state.pendingOutput[key] ?? "", chunk: data, final: false)
            state.pendingOutput[key] = keep
            return (send, count)
        }
        if !send.isEmpty {
            emit(
                "command.output", opId: opId, ["stream": .string(stream), "data": .string(send)], alreadyRedacted: count
            )
        }
    }

    /// Sends what streamed output was held back, once the process has ended.
    func finishOutput(opId: String) {
        for stream in ["stdout", "stderr"] {
            let key = opId + " " + stream
            let (send, count) = events.withLock { state -> (String, Int) in
                guard let pending = state.pendingOutput.removeValue(forKey: key), !pending.isEmpty else {
                    return ("", 0)
                }
                let (send, _, count) = space.redactor.streamed(pending: pending, chunk: "", final: true)
                return (send, count)
            }
            if !send.isEmpty {
                emit(
                    "command.output", opId: opId, ["stream": .string(stream), "data": .string(send)],
                    alreadyRedacted: count)
            }
        }
    }

    /// The events not yet returned in an answer; they count as returned from now on.
    func takeUnreturned() -> [JSONValue] {
        events.withLock { state in
            defer { state.returned = state.events.count }
            return Array(state.events[state.returned...])
        }
    }
}

extension Space {
    /// Runs a batch: each operation in order, each decided, performed by the worker and reported as events.
    func run(
        _ request: BatchRequest, control: BatchControl, notify: (@Sendable (JSONValue) -> Void)?,
        resolution: ApprovalResolution? = nil
    ) async -> (result: JSONValue, pending: PendingApproval?) {
        if let key = request.idempotencyKey, let earlier = idempotentResult(key) { return (earlier, nil) }
        control.begin()
        defer { control.finish() }
        let recorder =
            request.waitingCall?.inFlight.recorder
            ?? EventRecorder(space: self, batchId: control.batchId, runId: request.runId, notify: notify)
        var request = request
        if let resolution {
            return await resume(request, resolution, control: control, recorder: recorder)
        }
        countBatch(operations: request.operations.count)
        var requestData: [String: JSONValue] = [
            "method": "operations/submit",
            "operations": .array(
                request.operations.map { operation in
                    var fields = operation.fields
                    fields["kind"] = .string(operation.kind.rawValue)
                    fields["id"] = .string(operation.opId)
                    return .object(fields)
                }),
            "onError": .string(request.stopOnError ? "stop" : "continue"), "stream": .bool(request.stream),
            "dryRun": .bool(request.dryRun),
        ]
        if let key = request.idempotencyKey { requestData["idempotencyKey"] = .string(key) }
        let (redactedRequest, _) = redactor.redact(JSONValue.object(requestData))
        audit.record(
            "request", runId: request.runId, batchId: control.batchId, data: redactedRequest.objectValue ?? [:])

        if request.dryRun {
            let decisions = request.operations.map { operation -> JSONValue in
                let decision = decide(operation)
                recordDecision(decision, operation, request: request, control: control, dryRun: true)
                return [
                    "opId": .string(operation.opId), "decision": .string(decision.verdict.rawValue),
                    "rule": .string(decision.rule), "reason": .string(decision.reason),
                    "suggestion": .string(decision.suggestion),
                ]
            }
            audit.record("batch.ended", runId: request.runId, batchId: control.batchId, data: ["status": "completed"])
            audit.flush()
            return (
                [
                    "batchId": .string(control.batchId), "status": "completed", "events": [],
                    "decisions": .array(decisions),
                ], nil
            )
        }
        return await execute(&request, from: 0, control: control, recorder: recorder)
    }

    /// Continues a batch after a person answered its approval: the answer is an event, then either the
    /// approved operation runs, or it is denied and the batch follows `onError`.
    private func resume(
        _ request: BatchRequest, _ resolution: ApprovalResolution, control: BatchControl, recorder: EventRecorder
    ) async -> (result: JSONValue, pending: PendingApproval?) {
        var request = request
        guard let operation = request.operations.first else {
            return (["batchId": .string(control.batchId), "status": "completed", "events": []], nil)
        }
        var resolved: [String: JSONValue] = [
            "approvalId": .string(resolution.approvalId), "decision": .string(resolution.decision),
            "by": .string(resolution.by),
        ]
        if let note = resolution.note { resolved["note"] = .string(note) }
        audit.record(
            "approval.resolved", runId: request.runId, batchId: control.batchId, opId: operation.opId, data: resolved)
        resolved["note"] = nil
        recorder.emit("approval.resolved", opId: operation.opId, resolved)
        if let waiting = request.waitingCall {
            // The operation is still running: its call goes on (or fails with APPROVAL_DENIED), then the batch
            // waits for the operation again.
            let by = resolution.by == "client" ? "a person denied it" : resolution.note ?? resolution.by
            waiting.call.resolve(allowed: resolution.decision != "deny", by: by)
            control.setInFlight(waiting.inFlight.worker, requestID: waiting.inFlight.requestID ?? 0)
            request.waitingCall = nil
            let outcome = await conclude(waiting.inFlight, request: request, control: control)
            return await continueAfter(outcome, &request, control: control, recorder: recorder)
        }
        if resolution.decision == "deny" {
            let reason =
                "a person denied `\(ActionMatcher.of(operation).value)`"
                + (resolution.by == "client" ? "" : " (\(resolution.by))")
            recorder.emit(
                "policy.denied", opId: operation.opId,
                [
                    "rule": "approval.denied", "reason": .string(reason),
                    "suggestion": "ask again with a different operation, or change the policy with spaces/updatePolicy",
                ])
            recorder.emit(
                "operation.failed", opId: operation.opId,
                ["error": errorJSON("DENIED", reason, "the batch follows onError; submit other operations to go on")])
            record(.denied, runId: request.runId)
            if request.stopOnError { return finish(request, status: "stopped", control: control, recorder: recorder) }
            if request.operations.count == 1 {
                return finish(request, status: "completed", control: control, recorder: recorder)
            }
            return await execute(&request, from: 1, control: control, recorder: recorder)
        }
        request.approvedOpId = operation.opId
        return await execute(&request, from: 0, control: control, recorder: recorder)
    }

    private func finish(
        _ request: BatchRequest, status: String, control: BatchControl, recorder: EventRecorder
    ) -> (result: JSONValue, pending: PendingApproval?) {
        if request.runId != nil { persist() }
        audit.record("batch.ended", runId: request.runId, batchId: control.batchId, data: ["status": .string(status)])
        audit.flush()
        let result: JSONValue = [
            "batchId": .string(control.batchId), "status": .string(status), "events": .array(recorder.takeUnreturned()),
        ]
        if let key = request.idempotencyKey, status != "awaiting_approval" { rememberIdempotent(key, result) }
        return (result, nil)
    }

    /// Runs a batch's operations from `startIndex` on.
    private func execute(
        _ request: inout BatchRequest, from startIndex: Int, control: BatchControl, recorder: EventRecorder
    ) async -> (result: JSONValue, pending: PendingApproval?) {
        var status = "completed"
        var index = startIndex
        var pending: PendingApproval?
        let operations = request.operations
        while index < operations.count {
            if control.isCancelled || isDestroyed {
                status = "cancelled"
                break
            }
            // Consecutive file operations that the policy allows go to the worker in one round trip. Each is
            // decided once, under the policy as it stands now.
            let currentPolicy = policy
            var end = index
            var groupDecisions: [Decision] = []
            while end < operations.count, end - index < Self.fileGroupLimit, !operations[end].kind.runsProcess {
                let decision = decide(operations[end], under: currentPolicy)
                guard decision.verdict == .allow else { break }
                groupDecisions.append(decision)
                end += 1
            }
            let outcomes: [Outcome]
            if end - index >= 2 {
                for (operation, decision) in zip(operations[index..<end], groupDecisions) {
                    recordDecision(decision, operation, request: request, control: control)
                }
                outcomes = await performFileGroup(
                    Array(operations[index..<end]), request: request, control: control, recorder: recorder)
            } else {
                outcomes = [await perform(operations[index], request: request, control: control, recorder: recorder)]
            }
            if case .awaitingCall(let waiting)? = outcomes.last {
                pending = waitingApproval(waiting, request: request, from: index, control: control)
                status = "awaiting_approval"
                break
            }
            if case .awaiting(let decision)? = outcomes.last {
                let operation = operations[index]
                var remainder = request
                remainder.operations = Array(operations[index...])
                remainder.approvedOpId = nil
                remainder.idempotencyKey = nil
                let approval = PendingApproval(
                    approvalId: Identifier.make("ap_"), spaceId: id, batchId: control.batchId, opId: operation.opId,
                    decision: decision, matcher: ActionMatcher.of(operation), remainder: remainder,
                    requestedAt: Clock.timestamp(),
                    expiresAt: Clock.timestamp(inMilliseconds: policy.approvalTimeoutMs), stream: request.stream)
                recorder.emit("approval.requested", opId: operation.opId, approval.eventFields)
                pending = approval
                status = "awaiting_approval"
                break
            }
            for outcome in outcomes { record(outcome, runId: request.runId) }
            index += outcomes.count
            if let last = outcomes.last, case .cancelled = last {
                status = "cancelled"
                break
            }
            if request.stopOnError, outcomes.contains(where: \.isFailure) {
                status = "stopped"
                break
            }
        }
        return (finish(request, status: status, control: control, recorder: recorder).result, pending)
    }

    static let fileGroupLimit = 1000
    static let cancelledHint = "submit the operation again to run it; operations after it in the batch did not run"

    func record(_ outcome: Outcome, runId: String?) {
        updateRun(runId) { run in
            run.total += 1
            switch outcome {
            case .succeeded(let artifact):
                run.succeeded += 1
                if let artifact { run.recordArtifact(artifact) }
            case .failed, .cancelled: run.failed += 1
            case .denied: run.denied += 1
            case .awaiting, .awaitingCall: run.total -= 1
            }
        }
    }

    /// Records a policy decision in the audit log.
    func recordDecision(
        _ decision: Decision, _ operation: Operation, request: BatchRequest, control: BatchControl, dryRun: Bool = false
    ) {
        var data: [String: JSONValue] = [
            "decision": .string(decision.verdict.rawValue), "rule": .string(decision.rule),
            "reason": .string(decision.reason), "kind": .string(operation.kind.rawValue),
        ]
        if dryRun { data["dryRun"] = true }
        audit.record("decision", runId: request.runId, batchId: control.batchId, opId: operation.opId, data: data)
    }

    /// File operations sent as one worker `batch`; the events are the same as if each had been sent alone.
    /// Returns one outcome per operation that ran (fewer than given when the batch stopped at a failure).
    private func performFileGroup(
        _ operations: [Operation], request: BatchRequest, control: BatchControl, recorder: EventRecorder
    ) async -> [Outcome] {
        let worker: WorkerConnection
        do {
            worker = try await ensureWorker()
        } catch {
            recorder.emit("operation.started", opId: operations[0].opId, ["kind": .string(operations[0].kind.rawValue)])
            recorder.emit(
                "operation.failed", opId: operations[0].opId,
                ["error": errorJSON("WORKER_UNAVAILABLE", error.description, error.hint)])
            return [.failed]
        }
        let requests: [JSONValue] = operations.map { operation in
            var fields = workerFields(operation)
            fields["op"] = .string(operation.kind.rawValue)
            return .object(fields)
        }
        let answer = await worker.request(
            "batch", ["ops": .array(requests), "stopOnError": .bool(request.stopOnError)])
        guard case .ok(let result) = answer, let results = result["results"]?.arrayValue else {
            let opId = operations[0].opId
            recorder.emit("operation.started", opId: opId, ["kind": .string(operations[0].kind.rawValue)])
            switch answer {
            case .failed(let code, let message, let hint):
                recorder.emit("operation.failed", opId: opId, ["error": errorJSON(code, message, hint)])
                return [.failed]
            case .crashed(let reason):
                return [crashed(opId: opId, reason: reason, control: control, recorder: recorder)]
            case .ok:
                recorder.emit(
                    "operation.failed", opId: opId,
                    ["error": errorJSON("INTERNAL", "the worker answered a batch without results", "retry the batch")])
                return [.failed]
            }
        }
        var outcomes: [Outcome] = []
        for (operation, entry) in zip(operations, results) {
            recorder.emit("operation.started", opId: operation.opId, ["kind": .string(operation.kind.rawValue)])
            if entry["ok"]?.boolValue == true {
                outcomes.append(
                    report(
                        operation, result: entry["result"] ?? .object([:]), durationMs: entry["ms"]?.intValue ?? 0,
                        control: control, recorder: recorder))
            } else {
                let error = entry["error"]
                recorder.emit(
                    "operation.failed", opId: operation.opId,
                    [
                        "error": errorJSON(
                            error?["code"]?.stringValue ?? "INTERNAL", error?["message"]?.stringValue ?? "",
                            error?["hint"]?.stringValue ?? "")
                    ])
                outcomes.append(.failed)
            }
        }
        return outcomes
    }

    /// The fields the worker gets for an operation: the client's, plus the limits the policy sets.
    private func workerFields(_ operation: Operation) -> [String: JSONValue] {
        var fields = operation.fields
        // Paths reach the worker workspace-relative, whatever root the worker has.
        for (field, path) in operation.paths {
            if let relative = WorkspaceBoundary.relativePath(path) { fields[field] = .string(relative) }
        }
        let limits = policy.limits
        switch operation.kind {
        case .fileRead:
            fields["maxBytes"] = JSONValue(limits.outputBytes)
        case .fileList:
            if fields["maxEntries"] == nil { fields["maxEntries"] = 10_000 }
        case .fileWrite, .fileEdit:
            fields["diskLimitBytes"] = JSONValue(limits.diskMiB << 20)
        case .commandRun, .codeRun:
            if fields["timeoutMs"] == nil { fields["timeoutMs"] = JSONValue(limits.timeoutMs) }
            fields["outputBytes"] = JSONValue(limits.outputBytes)
            fields["secrets"] = nil
            // The secrets the operation names reach the process as environment variables, and only them.
            if let names = operation.fields["secrets"]?.arrayValue?.compactMap(\.stringValue), !names.isEmpty {
                var environment = fields["env"]?.objectValue ?? [:]
                for name in names { environment[name] = secretValues[name].map(JSONValue.string) }
                fields["env"] = .object(environment)
            }
        default:
            break
        }
        return fields
    }

    private func crashed(opId: String, reason: String, control: BatchControl, recorder: EventRecorder) -> Outcome {
        if control.isCancelled || isDestroyed {
            recorder.emit(
                "operation.failed", opId: opId,
                ["error": errorJSON("CANCELLED", "the operation was cancelled (\(reason))", Self.cancelledHint)])
            return .cancelled
        }
        recorder.emit(
            "operation.failed", opId: opId,
            [
                "error": errorJSON(
                    "WORKER_CRASHED", "the space's worker exited while running this operation (\(reason))",
                    "the next operation starts a fresh worker; the workspace is unchanged by the crash itself")
            ])
        return .failed
    }

    enum Outcome {
        case succeeded(artifact: String?)
        case failed
        case denied
        case cancelled
        /// The policy asks a person first: the batch stops here, before the operation.
        case awaiting(Decision)
        /// The operation runs, and one of its capability calls waits for a person: the batch answers meanwhile.
        case awaitingCall(WaitingCall)

        var isFailure: Bool {
            switch self {
            case .succeeded, .awaiting, .awaitingCall: false
            default: true
            }
        }
    }

    /// The policy's decision for one operation, a grant of the space turning `ask` into `allow`.
    func decide(_ operation: Operation, under policy: Policy? = nil) -> Decision {
        granted(PolicyEvaluator.decide(operation, under: policy ?? self.policy), for: ActionMatcher.of(operation))
    }

    /// `decision`, or `allow` when it asks about an action a grant of the space (`allow_for_space`) covers.
    func granted(_ decision: Decision, for matcher: ActionMatcher) -> Decision {
        guard decision.verdict == .ask, let grant = grants.first(where: { $0.matcher == matcher }) else {
            return decision
        }
        return Decision(
            verdict: .allow, rule: "grant: \(grant.grantId)",
            reason: "\(decision.reason); granted for this space by approval \(grant.by)", suggestion: "")
    }

    private func perform(
        _ operation: Operation, request: BatchRequest, control: BatchControl, recorder: EventRecorder
    ) async -> Outcome {
        let opId = operation.opId
        var decision = decide(operation)
        if decision.verdict == .ask, request.approvedOpId == opId {
            decision = Decision(
                verdict: .allow, rule: "approval", reason: decision.reason + "; approved by a person", suggestion: "")
        }
        recordDecision(decision, operation, request: request, control: control)
        if decision.verdict == .ask { return .awaiting(decision) }
        if decision.verdict != .allow {
            recorder.emit(
                "policy.denied", opId: opId,
                [
                    "rule": .string(decision.rule), "reason": .string(decision.reason),
                    "suggestion": .string(decision.suggestion),
                ])
            recorder.emit(
                "operation.failed", opId: opId, ["error": errorJSON("DENIED", decision.reason, decision.suggestion)])
            return .denied
        }
        let started = Clock.monotonicNanoseconds()
        recorder.emit("operation.started", opId: opId, ["kind": .string(operation.kind.rawValue)])
        let missingSecret = (operation.fields["secrets"]?.arrayValue ?? []).compactMap(\.stringValue).first {
            secretValues[$0] == nil
        }
        if let missingSecret {
            recorder.emit(
                "operation.failed", opId: opId,
                [
                    "error": errorJSON(
                        "SECRET_UNAVAILABLE", "the secret \(missingSecret) has no value on the engine's host",
                        "set the environment variable or file it references, then restart the engine")
                ])
            return .failed
        }

        let worker: WorkerConnection
        do {
            worker = try await ensureWorker()
        } catch {
            recorder.emit(
                "operation.failed", opId: opId,
                ["error": errorJSON("WORKER_UNAVAILABLE", error.description, error.hint)])
            return .failed
        }

        let fields = workerFields(operation)
        let onChunk: WorkerConnection.ChunkHandler? =
            operation.kind.runsProcess && request.stream
            ? { @Sendable stream, data in recorder.emitOutput(opId: opId, stream: stream, data: data) }
            : nil

        if operation.kind.runsProcess, !capabilities.isEmpty {
            // Its programs may call capabilities: the batch waits for the answer or for a call that asks a person.
            let inFlight = InFlightOperation(operation: operation, recorder: recorder, worker: worker)
            let runId = request.runId
            let batchId = control.batchId
            Task(executorPreference: worker.thread) { [self] in
                let answer = await worker.request(
                    operation.kind.rawValue, fields, onChunk: onChunk,
                    onCall: { [self] call in receiveCall(call, inFlight: inFlight, runId: runId, batchId: batchId) },
                    onSent: { requestID in
                        inFlight.setRequestID(requestID)
                        control.setInFlight(worker, requestID: requestID)
                    })
                inFlight.deliver(.answer(answer))
            }
            return await conclude(inFlight, request: request, control: control)
        }

        let answer = await worker.request(
            operation.kind.rawValue, fields, onChunk: onChunk,
            onSent: { requestID in control.setInFlight(worker, requestID: requestID) })
        control.setInFlight(nil, requestID: 0)
        return settle(operation, answer: answer, started: started, control: control, recorder: recorder)
    }

    /// Waits for a running operation: its outcome once it has ended, or `awaitingCall` when one of its
    /// capability calls waits for a person first.
    func conclude(_ inFlight: InFlightOperation, request: BatchRequest, control: BatchControl) async -> Outcome {
        switch await inFlight.next() {
        case .approval(let call):
            return .awaitingCall(WaitingCall(call: call, inFlight: inFlight))
        case .answer(let answer):
            control.setInFlight(nil, requestID: 0)
            return settle(
                inFlight.operation, answer: answer, started: inFlight.started, control: control,
                recorder: inFlight.recorder)
        }
    }

    /// The batch after an operation that was waited on across an approval: record it, then run the rest.
    private func continueAfter(
        _ outcome: Outcome, _ request: inout BatchRequest, control: BatchControl, recorder: EventRecorder
    ) async -> (result: JSONValue, pending: PendingApproval?) {
        if case .awaitingCall(let waiting) = outcome {
            let pending = waitingApproval(waiting, request: request, from: 0, control: control)
            return (finish(request, status: "awaiting_approval", control: control, recorder: recorder).result, pending)
        }
        record(outcome, runId: request.runId)
        let stopped = request.stopOnError && outcome.isFailure
        if case .cancelled = outcome {
            return finish(request, status: "cancelled", control: control, recorder: recorder)
        }
        if stopped { return finish(request, status: "stopped", control: control, recorder: recorder) }
        if request.operations.count == 1 {
            return finish(request, status: "completed", control: control, recorder: recorder)
        }
        return await execute(&request, from: 1, control: control, recorder: recorder)
    }

    /// The approval a person is asked for a running operation's capability call.
    private func waitingApproval(
        _ waiting: WaitingCall, request: BatchRequest, from index: Int, control: BatchControl
    ) -> PendingApproval {
        let operation = waiting.inFlight.operation
        var remainder = request
        remainder.operations = Array(request.operations[index...])
        remainder.approvedOpId = nil
        remainder.idempotencyKey = nil
        remainder.waitingCall = waiting
        let approval = PendingApproval(
            approvalId: Identifier.make("ap_"), spaceId: id, batchId: control.batchId, opId: operation.opId,
            decision: waiting.call.decision, matcher: waiting.call.matcher, remainder: remainder,
            requestedAt: Clock.timestamp(), expiresAt: Clock.timestamp(inMilliseconds: policy.approvalTimeoutMs),
            stream: request.stream, callSummary: waiting.call.summary)
        waiting.inFlight.recorder.emit("approval.requested", opId: operation.opId, approval.eventFields)
        return approval
    }

    /// The events and outcome of an operation's answer from the worker.
    private func settle(
        _ operation: Operation, answer: WorkerAnswer, started: UInt64, control: BatchControl, recorder: EventRecorder
    ) -> Outcome {
        let opId = operation.opId
        switch answer {
        case .ok(let result):
            return report(
                operation, result: result, durationMs: Clock.millisecondsSince(started), control: control,
                recorder: recorder)
        case .failed(let code, let message, let hint):
            recorder.emit("operation.failed", opId: opId, ["error": errorJSON(code, message, hint)])
            return .failed
        case .crashed(let reason):
            return crashed(opId: opId, reason: reason, control: control, recorder: recorder)
        }
    }

    private func report(
        _ operation: Operation, result: JSONValue, durationMs: Int, control: BatchControl, recorder: EventRecorder
    ) -> Outcome {
        let opId = operation.opId
        let fields = result.objectValue ?? [:]
        var artifact: String?
        switch operation.kind {
        case .fileWrite:
            recorder.emit("file.written", opId: opId, fields)
            artifact = fields["path"]?.stringValue
        case .fileRead: recorder.emit("file.content", opId: opId, fields)
        case .fileEdit:
            recorder.emit("file.edited", opId: opId, fields)
            artifact = fields["path"]?.stringValue
        case .fileDelete: recorder.emit("file.deleted", opId: opId, fields)
        case .fileList: recorder.emit("file.listing", opId: opId, fields)
        case .fileMove:
            recorder.emit("file.moved", opId: opId, fields)
            artifact = fields["to"]?.stringValue
        case .commandRun, .codeRun:
            recorder.finishOutput(opId: opId)
            recorder.emit("command.exited", opId: opId, fields)
            if fields["cancelled"]?.boolValue == true || control.isCancelled {
                recorder.emit(
                    "operation.failed", opId: opId,
                    [
                        "error": errorJSON(
                            "CANCELLED", "the operation was cancelled; its processes were killed", Self.cancelledHint)
                    ])
                return .cancelled
            }
            if fields["timedOut"]?.boolValue == true {
                let limit = operation.fields["timeoutMs"]?.intValue ?? policy.limits.timeoutMs
                recorder.emit(
                    "operation.failed", opId: opId,
                    [
                        "error": errorJSON(
                            "TIMEOUT", "the process ran longer than \(limit) ms and was killed",
                            "pass a larger timeoutMs (up to 3600000), or make the work smaller")
                    ])
                return .failed
            }
        }
        recorder.emit("operation.completed", opId: opId, ["durationMs": JSONValue(durationMs)])
        return .succeeded(artifact: artifact)
    }

    private func errorJSON(_ code: String, _ message: String, _ hint: String) -> JSONValue {
        ["code": .string(code), "message": .string(message), "hint": .string(hint)]
    }
}
