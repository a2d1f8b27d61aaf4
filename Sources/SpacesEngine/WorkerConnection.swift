import Logging
import SpacesProtocol
import SpacesSandbox
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Splits the answer stream into lines; used only on the worker's thread.
final class AnswerReader: @unchecked Sendable {
    // @unchecked: touched only by the one thread that reads the worker's answers.
    private var splitter = LineSplitter(maxLineBytes: 256 << 20)
    private var lines: [LineSplitter.Line] = []

    func feed(_ chunk: UnsafeRawBufferPointer) -> [[UInt8]] {
        lines.removeAll(keepingCapacity: true)
        splitter.feed(chunk, into: &lines)
        return lines.compactMap { if case .complete(let bytes) = $0 { bytes } else { nil } }
    }
}

/// What the worker answered to one request.
enum WorkerAnswer: Sendable {
    case ok(JSONValue)
    case failed(code: String, message: String, hint: String)
    /// The worker went away before answering: the space's processes are gone.
    case crashed(String)
}

/// The engine's end of one worker's private channel (see docs/WORKER.md).
///
/// Requests are written on the sandbox's request pipe under `writeLock`; a dedicated reader thread parses the
/// answers and resumes the request that is waiting for each. State shared between the two sides lives in
/// `state`, a `Mutex`.
final class WorkerConnection: Sendable {
    typealias ChunkHandler = @Sendable (_ stream: String, _ data: String) -> Void
    /// A capability call made by a program that the request started: `{call, capability, method, params}`.
    typealias CallHandler = @Sendable (_ call: [String: JSONValue]) -> Void

    private struct Pending {
        var continuation: CheckedContinuation<WorkerAnswer, Never>
        var onChunk: ChunkHandler?
        var onCall: CallHandler?
    }

    private struct State {
        var nextID = 1
        var pending: [Int: Pending] = [:]
        var ready: CheckedContinuation<Result<Void, WorkerStartError>, Never>?
        var isReady = false
        var closedReason: String?
    }

    struct WorkerStartError: Error, CustomStringConvertible {
        var description: String
    }

    let process: any WorkerProcess
    /// Reads the answers and runs the batches of the space while this worker serves it.
    let thread = WorkerThread()
    private let state = Mutex(State())
    private let writeLock = Mutex(())
    private let logger: Logger
    /// Called once, on the reader thread, when the channel closes (the worker exited or was killed).
    private let onClose: @Sendable (String) -> Void

    init(process: any WorkerProcess, logger: Logger, onClose: @escaping @Sendable (String) -> Void) {
        self.process = process
        self.logger = logger
        self.onClose = onClose
    }

    /// Starts the reader thread and waits for the worker's `ready` line, at most `timeoutMs`.
    func waitUntilReady(timeoutMs: Int) async throws(WorkerStartError) {
        let reader = AnswerReader()
        thread.start(reading: process.responseFD) { [self] chunk in
            if chunk.isEmpty {
                close(reason: "the worker's channel closed")
            } else {
                for line in reader.feed(chunk) { handle(line) }
            }
        }
        let watchdog = Task { [process] in
            try await Task.sleep(for: .milliseconds(timeoutMs))
            process.kill()
        }
        defer { watchdog.cancel() }
        let result = await withCheckedContinuation { continuation in
            let resumeNow: Result<Void, WorkerStartError>? = state.withLock { state in
                if state.isReady { return .success(()) }
                if let reason = state.closedReason { return .failure(WorkerStartError(description: reason)) }
                state.ready = continuation
                return nil
            }
            if let resumeNow { continuation.resume(returning: resumeNow) }
        }
        try result.get()
    }

    /// Sends one request and waits for its answer. `onChunk` receives streamed output, on the reader thread,
    /// before the answer arrives.
    /// `onSent` receives the request's id once it is written, to address a `cancel` at it.
    func request(
        _ op: String, _ fields: [String: JSONValue], onChunk: ChunkHandler? = nil, onCall: CallHandler? = nil,
        onSent: (@Sendable (Int) -> Void)? = nil
    ) async -> WorkerAnswer {
        await withCheckedContinuation { continuation in
            let registered: (Int, String?) = state.withLock { state in
                if let reason = state.closedReason { return (0, reason) }
                let id = state.nextID
                state.nextID += 1
                state.pending[id] = Pending(continuation: continuation, onChunk: onChunk, onCall: onCall)
                return (id, nil)
            }
            if let reason = registered.1 {
                continuation.resume(returning: .crashed(reason))
                return
            }
            var message = fields
            message["id"] = JSONValue(registered.0)
            message["op"] = .string(op)
            send(.object(message))
            onSent?(registered.0)
        }
    }

    /// Sends a request whose answer nobody waits for (`cancel`).
    func post(_ op: String, _ fields: [String: JSONValue]) {
        let id = state.withLock { state -> Int in
            let id = state.nextID
            state.nextID += 1
            return id
        }
        var message = fields
        message["id"] = JSONValue(id)
        message["op"] = .string(op)
        send(.object(message))
    }

    private func send(_ message: JSONValue) {
        var bytes = message.encodedBytes()
        bytes.append(0x0A)
        writeLock.withLock { _ in
            do {
                try FileDescriptorIO.writeAll(process.requestFD, bytes)
            } catch {
                // The reader thread sees the same death as end-of-file and fails every pending request.
                logger.debug("worker request not sent: \(error)")
            }
        }
    }

    private func handle(_ bytes: [UInt8]) {
        guard let message = try? JSONValue.parse(bytes), case .object(let fields) = message else {
            logger.warning("worker sent a line that is not a JSON object; ignored")
            return
        }
        if fields["ready"]?.boolValue == true {
            let waiter = state.withLock { state in
                state.isReady = true
                defer { state.ready = nil }
                return state.ready
            }
            waiter?.resume(returning: .success(()))
            return
        }
        guard let id = fields["id"]?.intValue else { return }
        if fields["call"] != nil {
            let handler = state.withLock { $0.pending[id]?.onCall }
            if let handler {
                handler(fields)
            } else if let call = fields["call"]?.intValue {
                // The request that started the program has no call handler (or is gone): refuse the call.
                post(
                    "capability.answer",
                    [
                        "call": JSONValue(call), "ok": false,
                        "error": CapabilityFailure(
                            .denied, "this operation cannot call capabilities",
                            hint: "call capabilities from code.run or command.run programs of a space that has them"
                        ).json,
                    ])
            }
            return
        }
        if let stream = fields["stream"]?.stringValue {
            let handler = state.withLock { $0.pending[id]?.onChunk }
            handler?(stream, fields["data"]?.stringValue ?? "")
            return
        }
        guard let pending = state.withLock({ $0.pending.removeValue(forKey: id) }) else { return }
        if fields["ok"]?.boolValue == true {
            pending.continuation.resume(returning: .ok(fields["result"] ?? .object([:])))
        } else {
            let error = fields["error"]
            pending.continuation.resume(
                returning: .failed(
                    code: error?["code"]?.stringValue ?? "INTERNAL",
                    message: error?["message"]?.stringValue ?? "the worker failed without a message",
                    hint: error?["hint"]?.stringValue ?? ""))
        }
    }

    /// Fails everything still waiting; idempotent.
    func close(reason: String) {
        let (pending, ready, first) = state.withLock { state in
            let first = state.closedReason == nil
            if first { state.closedReason = reason }
            let pending = state.pending
            state.pending = [:]
            let ready = state.ready
            state.ready = nil
            return (pending, ready, first)
        }
        ready?.resume(returning: .failure(WorkerStartError(description: reason)))
        for (_, entry) in pending { entry.continuation.resume(returning: .crashed(reason)) }
        if first { onClose(reason) }
    }

    var isClosed: Bool { state.withLock { $0.closedReason != nil } }
}
