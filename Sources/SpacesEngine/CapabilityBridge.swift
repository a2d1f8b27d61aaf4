import Crypto
import SpacesPolicy
import SpacesProtocol
import Synchronization

/// A command or program that is running and may call capabilities: the batch waits on it for either its answer
/// or a call that needs a person's approval, whichever comes first.
///
/// The program's calls are handled concurrently with the batch (each in a task of its own); only a call the
/// policy asks about interrupts the batch, which then answers `awaiting_approval` while the program waits.
final class InFlightOperation: Sendable {
    enum Interrupt: Sendable {
        case answer(WorkerAnswer)
        case approval(PendingCall)
    }

    private struct State {
        var answer: WorkerAnswer?
        var approvals: [PendingCall] = []
        var waiter: CheckedContinuation<Interrupt, Never>?
        var requestID: Int?
    }

    let operation: Operation
    let started: UInt64
    let recorder: EventRecorder
    let worker: WorkerConnection
    private let state = Mutex(State())

    init(operation: Operation, recorder: EventRecorder, worker: WorkerConnection) {
        self.operation = operation
        self.started = Clock.monotonicNanoseconds()
        self.recorder = recorder
        self.worker = worker
    }

    var requestID: Int? { state.withLock { $0.requestID } }
    func setRequestID(_ id: Int) { state.withLock { $0.requestID = id } }

    func deliver(_ interrupt: Interrupt) {
        let resume = state.withLock { state -> (CheckedContinuation<Interrupt, Never>, Interrupt)? in
            switch interrupt {
            case .answer(let answer): state.answer = answer
            case .approval(let call): state.approvals.append(call)
            }
            guard let waiter = state.waiter, let next = Self.take(&state) else { return nil }
            state.waiter = nil
            return (waiter, next)
        }
        if let (waiter, next) = resume { waiter.resume(returning: next) }
    }

    /// The answer once the program has ended (calls still waiting for a person are then denied), else the next
    /// call waiting for a person.
    func next() async -> Interrupt {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Interrupt? in
                if let next = Self.take(&state) { return next }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private static func take(_ state: inout State) -> Interrupt? {
        if let answer = state.answer {
            for call in state.approvals { call.resolve(allowed: false, by: "the program ended") }
            state.approvals = []
            return .answer(answer)
        }
        return state.approvals.isEmpty ? nil : .approval(state.approvals.removeFirst())
    }
}

/// A capability call that waits for a person: resolved exactly once.
final class PendingCall: Sendable {
    let capability: String
    let method: String
    let summary: String
    let decision: Decision
    private let waiter = Mutex<(continuation: CheckedContinuation<(allowed: Bool, by: String), Never>?, done: Bool)>(
        (nil, false))

    init(capability: String, method: String, summary: String, decision: Decision) {
        self.capability = capability
        self.method = method
        self.summary = summary
        self.decision = decision
    }

    var matcher: ActionMatcher { .capability(capability, method) }

    /// Waits for the person's answer: whether the call may go on, and who said so.
    func wait(_ register: (PendingCall) -> Void) async -> (allowed: Bool, by: String) {
        await withCheckedContinuation { continuation in
            waiter.withLock { $0.continuation = continuation }
            register(self)
        }
    }

    func resolve(allowed: Bool, by: String) {
        let continuation = waiter.withLock { state -> CheckedContinuation<(allowed: Bool, by: String), Never>? in
            guard !state.done else { return nil }
            state.done = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(returning: (allowed: allowed, by: by))
    }
}

/// How a call ended, for its audit entries, its event and its answer.
struct CallOutcome {
    /// Whether the call took one of the space's call slots (released when it ends).
    var admitted = true
    /// Whether the policy decided it (`capability.call` then holds the decision).
    var decided = true
    /// The result as the program gets it (secrets removed) with its JSON encoding, or why the call failed.
    var result: Result<(value: JSONValue, encoded: [UInt8]), CapabilityFailure>

    /// Refused before the policy saw the call.
    static func refused(_ failure: CapabilityFailure, admitted: Bool = true) -> CallOutcome {
        CallOutcome(admitted: admitted, decided: false, result: .failure(failure))
    }
}

/// Bounds on capability calls, per space.
enum CapabilityLimits {
    /// Bytes of one call's params, as JSON.
    static let paramsBytes = 1 << 20
    /// Bytes of one result, as JSON.
    static let resultBytes = 16 << 20
    /// Calls of one space being handled at once.
    static let concurrentCalls = 64
    /// Calls one space may start per second, sustained; bursts up to the same number.
    static let callsPerSecond = 5_000
}

/// Refills `callsPerSecond` tokens a second; one call takes one.
struct CallRateLimiter {
    private var tokens = Double(CapabilityLimits.callsPerSecond)
    private var updated = Clock.monotonicNanoseconds()
    var inFlight = 0

    mutating func admit() -> CapabilityFailure? {
        let now = Clock.monotonicNanoseconds()
        let rate = Double(CapabilityLimits.callsPerSecond)
        tokens = min(rate, tokens + Double(now - updated) / 1e9 * rate)
        updated = now
        if inFlight >= CapabilityLimits.concurrentCalls {
            return CapabilityFailure(
                .denied, "this space already has \(CapabilityLimits.concurrentCalls) capability calls in flight",
                hint: "await earlier calls before starting more (e.g. batch them with a concurrency limit)")
        }
        guard tokens >= 1 else {
            return CapabilityFailure(
                .denied, "this space made more than \(CapabilityLimits.callsPerSecond) capability calls a second",
                hint: "slow down, or fetch more per call")
        }
        tokens -= 1
        inFlight += 1
        return nil
    }
}

extension Space {
    /// A call from a program of `inFlight`'s operation, as the worker forwarded it: checked, decided, audited,
    /// dispatched, checked again, redacted and answered, in that order. Runs in a task of its own.
    func receiveCall(_ fields: [String: JSONValue], inFlight: InFlightOperation, runId: String?, batchId: String) {
        guard let call = fields["call"]?.intValue else { return }
        Task {
            let started = Clock.monotonicNanoseconds()
            let capability = fields["capability"]?.stringValue ?? ""
            let method = fields["method"]?.stringValue ?? ""
            let params = fields["params"] ?? .null
            let outcome = await performCall(
                capability: capability, method: method, params: params, inFlight: inFlight, runId: runId,
                batchId: batchId)
            releaseCallSlot(admitted: outcome.admitted)
            let opId = inFlight.operation.opId
            if !outcome.decided, case .failure(let failure) = outcome.result {
                // Refused before the policy saw it: the call is audited all the same.
                audit.record(
                    "capability.call", runId: runId, batchId: batchId, opId: opId,
                    data: [
                        "capability": .string(capability), "method": .string(method),
                        "params": redactor.redact(params).0, "decision": "refused",
                        "rule": .string(failure.code.rawValue), "reason": .string(failure.message),
                    ])
            }
            var resultData: [String: JSONValue] = ["capability": .string(capability), "method": .string(method)]
            var event: [String: JSONValue] = [
                "capability": .string(capability), "method": .string(method),
                "durationMs": JSONValue(Clock.millisecondsSince(started)),
            ]
            let answer: [String: JSONValue]
            switch outcome.result {
            case .success(let (value, encoded)):
                resultData["ok"] = true
                resultData["bytes"] = JSONValue(encoded.count)
                resultData["sha256"] = .string(AuditLog.hexString(SHA256.hash(data: encoded)))
                event["ok"] = true
                event["bytes"] = JSONValue(encoded.count)
                answer = ["call": JSONValue(call), "ok": true, "result": value]
            case .failure(let failure):
                let redacted = redactor.redact(failure.json).0
                resultData["ok"] = false
                resultData["error"] = redacted
                event["ok"] = false
                event["error"] = failure.json
                answer = ["call": JSONValue(call), "ok": false, "error": redacted]
            }
            audit.record("capability.result", runId: runId, batchId: batchId, opId: opId, data: resultData)
            inFlight.recorder.emit("capability.called", opId: inFlight.operation.opId, event)
            audit.flush()
            inFlight.worker.post("capability.answer", answer)
        }
    }

    private func releaseCallSlot(admitted: Bool) {
        guard admitted else { return }
        callLimiter.withLock { $0.inFlight -= 1 }
    }

    private func performCall(
        capability name: String, method methodName: String, params: JSONValue, inFlight: InFlightOperation,
        runId: String?, batchId: String
    ) async -> CallOutcome {
        let opId = inFlight.operation.opId
        // 1. Size and rate.
        let paramsBytes = params.encodedBytes().count
        guard paramsBytes <= CapabilityLimits.paramsBytes else {
            return .refused(
                CapabilityFailure(
                    .invalidParams,
                    "the params of \(name).\(methodName) are \(paramsBytes) bytes, over the limit of \(CapabilityLimits.paramsBytes)",
                    hint: "pass less per call; write large inputs to a file and pass its path"),
                admitted: false)
        }
        if let refusal = callLimiter.withLock({ $0.admit() }) { return .refused(refusal, admitted: false) }
        // 2. The method exists.
        let declared = capabilities
        guard let capability = declared.first(where: { $0.name == name }) else {
            let names = declared.map(\.name).joined(separator: ", ")
            return .refused(
                CapabilityFailure(
                    .invalidParams, "this space has no capability '\(name)'",
                    hint: names.isEmpty ? "declare capabilities in spaces/create" : "its capabilities: \(names)"))
        }
        guard let method = capability.method(methodName) else {
            return .refused(
                CapabilityFailure(
                    .invalidParams, "\(name) has no method '\(methodName)'",
                    hint: "its methods: \(capability.methods.map(\.name).joined(separator: ", "))"))
        }
        // 3. The params fit the method's schema.
        if let schema = method.params,
            case let violations = validator(for: schema, key: "\(name).\(methodName) params").validate(
                params, schemaAt: "#", instancePath: "params"),
            !violations.isEmpty
        {
            return .refused(
                CapabilityFailure(
                    .invalidParams,
                    "\(name).\(methodName): " + violations.prefix(5).map(\.description).joined(separator: "; "),
                    hint: "call it with params that match its schema (see .spaces/capabilities.d.ts)"))
        }
        // 4. The policy decides; 5. the decision is audited.
        let (redactedParams, _) = redactor.redact(params)
        let summary = "\(name).\(methodName)(\(Self.shortJSON(redactedParams)))"
        let decision = granted(
            PolicyEvaluator.decideCapability(name, method: methodName, effect: method.effect.rawValue, under: policy),
            for: .capability(name, methodName))
        audit.record(
            "capability.call", runId: runId, batchId: batchId, opId: opId,
            data: [
                "capability": .string(name), "method": .string(methodName), "params": redactedParams,
                "decision": .string(decision.verdict.rawValue), "rule": .string(decision.rule),
                "reason": .string(decision.reason), "effect": .string(method.effect.rawValue),
            ])
        switch decision.verdict {
        case .deny:
            return CallOutcome(result: .failure(CapabilityFailure(.denied, decision.reason, hint: decision.suggestion)))
        case .ask:
            let pending = PendingCall(capability: name, method: methodName, summary: summary, decision: decision)
            let (allowed, by) = await pending.wait { inFlight.deliver(.approval($0)) }
            guard allowed else {
                return CallOutcome(
                    result: .failure(
                        CapabilityFailure(
                            .approvalDenied, "the call \(summary) was not approved (\(by))",
                            hint: "go on without it, or ask the person to allow it (or change the policy)")))
            }
        case .allow:
            break
        }
        // 6. Dispatch.
        let result = await dispatch(capability, method, params)
        // 7. The result is checked, 8. redacted.
        switch result {
        case .failure(let failure):
            return CallOutcome(result: .failure(failure))
        case .success(let value):
            let encoded = value.encodedBytes()
            if encoded.count > CapabilityLimits.resultBytes {
                return CallOutcome(
                    result: .failure(
                        CapabilityFailure(
                            .resultTooLarge,
                            "\(name).\(methodName) returned \(encoded.count) bytes, over the limit of \(CapabilityLimits.resultBytes)",
                            hint: "ask for less per call (filter or page on the handler's side)")))
            }
            if let schema = method.result,
                case let violations = validator(for: schema, key: "\(name).\(methodName) result").validate(
                    value, schemaAt: "#", instancePath: "result"),
                !violations.isEmpty
            {
                return CallOutcome(
                    result: .failure(
                        CapabilityFailure(
                            .handlerError,
                            "\(name).\(methodName) answered a result that does not match its schema: "
                                + violations.prefix(5).map(\.description).joined(separator: "; "),
                            hint: "fix the handler, or the method's result schema")))
            }
            let (redacted, count) = redactor.redact(value)
            return CallOutcome(result: .success((redacted, count == 0 ? encoded : redacted.encodedBytes())))
        }
    }

    /// Sends the call to its handler, bounded by the handler's timeout.
    private func dispatch(
        _ capability: CapabilityDeclaration, _ method: CapabilityDeclaration.Method, _ params: JSONValue
    ) async -> Result<JSONValue, CapabilityFailure> {
        let handler = capabilityHandler(for: capability)
        let timeoutMs = capability.handler.timeoutMs
        let secrets = secretValues
        let first = OneShot<Result<JSONValue, CapabilityFailure>>()
        let work = Task {
            first.resolve(await handler.call(capability: capability, method: method, params: params, secrets: secrets))
        }
        let timer = Task {
            try? await Task.sleep(for: .milliseconds(timeoutMs))
            guard !Task.isCancelled else { return }
            first.resolve(
                .failure(
                    CapabilityFailure(
                        .timeout, "\(capability.name).\(method.name) did not answer within \(timeoutMs) ms",
                        hint: "try again later, or raise handler.timeoutMs in the capability's declaration")))
            work.cancel()
        }
        let result = await first.value
        timer.cancel()
        return result
    }

    /// JSON cut to about 200 characters, for a person to read.
    static func shortJSON(_ value: JSONValue) -> String {
        let text = value.encoded()
        return text.count <= 200 ? text : String(text.prefix(200)) + "…"
    }
}

/// A value set once, by whichever of several racers comes first; awaited by one reader.
final class OneShot<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value?, waiter: CheckedContinuation<Value, Never>?)>((nil, nil))

    func resolve(_ value: Value) {
        let waiter = state.withLock { state -> CheckedContinuation<Value, Never>? in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    var value: Value {
        get async {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Value? in
                    if let value = state.value { return value }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}
