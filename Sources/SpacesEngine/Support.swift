import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Wall-clock and monotonic time, and the timestamp format of the protocol.
package enum Clock {
    /// Nanoseconds of a monotonic clock, for durations.
    package static func monotonicNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    /// Whole milliseconds since `start` (from ``monotonicNanoseconds()``).
    package static func millisecondsSince(_ start: UInt64) -> Int {
        Int((monotonicNanoseconds() &- start + 500_000) / 1_000_000)
    }

    /// Now (or `inMilliseconds` from now) as RFC 3339 UTC with milliseconds: `2026-11-26T00:17:12.123Z`.
    package static func timestamp(inMilliseconds later: Int = 0) -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        if later != 0 {
            let total = Int(spec.tv_sec) * 1000 + Int(spec.tv_nsec) / 1_000_000 + later
            spec.tv_sec = total / 1000
            spec.tv_nsec = (total % 1000) * 1_000_000
        }
        var seconds = spec.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(spec.tv_nsec / 1_000_000)
        return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))T"
            + "\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2)).\(pad(millis, 3))Z"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}

/// Identifiers: a prefix and 16 random hex digits (`sp_3f9a…`).
package enum Identifier {
    package static func make(_ prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let hex = String(value, radix: 16)
        return prefix + String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Runs `body` on a new detached OS thread: for blocking reads that must never sit on the cooperative pool.
package func startThread(name: String, _ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {  // Handed to exactly one thread, read once, never shared.
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread: pthread_t = 0
    // Zeroed storage: `pthread_attr_t()` is ambiguous once Dispatch's C module is visible in the build.
    let attributes = UnsafeMutablePointer<pthread_attr_t>.allocate(capacity: 1)
    defer { attributes.deallocate() }
    pthread_attr_init(attributes)
    pthread_attr_setdetachstate(attributes, Int32(PTHREAD_CREATE_DETACHED))
    let result = pthread_create(
        &thread, attributes,
        { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box)
    pthread_attr_destroy(attributes)
    precondition(result == 0, "pthread_create failed for \(name): \(result)")
}

/// A FIFO of async jobs run one after another: the order in which ``submit(_:)`` is called is the order in
/// which jobs run, which an actor's reentrant mailbox does not promise.
package final class SerialExecutor: Sendable {
    package init() {}
    private struct State {
        var jobs: [@Sendable () async -> Void] = []
        var head = 0
        var running = false
    }

    private let state = Mutex(State())

    /// Jobs submitted and not yet finished, the running one included.
    package var pending: Int {
        state.withLock { $0.jobs.count - $0.head + ($0.running ? 1 : 0) }
    }

    /// Queues a job. When the queue was idle, a task starts draining it, preferring `executor` (the space's
    /// worker thread) so that the batch runs where the worker's answers arrive.
    package func submit(preferring executor: (any TaskExecutor)? = nil, _ job: @escaping @Sendable () async -> Void) {
        let start = state.withLock { state -> Bool in
            state.jobs.append(job)
            if state.running { return false }
            state.running = true
            return true
        }
        if start { Task(executorPreference: executor) { await self.drain() } }
    }

    private func drain() async {
        while true {
            let next = state.withLock { state -> (@Sendable () async -> Void)? in
                guard state.head < state.jobs.count else {
                    state.jobs.removeAll(keepingCapacity: true)
                    state.head = 0
                    state.running = false
                    return nil
                }
                let job = state.jobs[state.head]
                state.head += 1
                return job
            }
            guard let next else { return }
            await next()
        }
    }
}

/// Reads and writes whole descriptors, retrying EINTR. The only place in the engine that reads `errno`.
package enum FileDescriptorIO {
    package struct Failure: Error, CustomStringConvertible {
        var operation: String
        var errno: Int32
        package var description: String { "\(operation) failed: \(String(cString: strerror(errno)))" }
    }

    package static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(Failure) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw Failure(operation: "write", errno: errno)
            }
            offset += written
        }
    }

    /// One `read(2)` into `buffer`; 0 at end-of-file.
    package static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(Failure) -> Int {
        while true {
            let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            throw Failure(operation: "read", errno: errno)
        }
    }
}

/// Splits a byte stream into lines, bounding each line's length.
///
/// A line longer than `maxLineBytes` is not buffered: its bytes are dropped as they arrive and it is reported
/// once, as `.oversized`, when its newline comes. A trailing `\r` is removed.
package struct LineSplitter {
    package enum Line {
        case complete([UInt8])
        case oversized(byteCount: Int)
    }

    let maxLineBytes: Int
    private var pending: [UInt8] = []
    private var discarding = false
    private var discardedCount = 0

    package init(maxLineBytes: Int) { self.maxLineBytes = maxLineBytes }

    package mutating func feed(_ chunk: UnsafeRawBufferPointer, into lines: inout [Line]) {
        var start = 0
        let bytes = chunk.bindMemory(to: UInt8.self)
        while start < bytes.count {
            guard let newline = bytes[start...].firstIndex(of: 0x0A) else {
                append(UnsafeBufferPointer(rebasing: bytes[start...]))
                return
            }
            append(UnsafeBufferPointer(rebasing: bytes[start..<newline]))
            finishLine(into: &lines)
            start = newline + 1
        }
    }

    /// The unterminated last line at end-of-file, if any.
    package mutating func finish(into lines: inout [Line]) {
        if discarding || !pending.isEmpty { finishLine(into: &lines) }
    }

    private mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        if discarding {
            discardedCount += bytes.count
            return
        }
        if pending.count + bytes.count > maxLineBytes {
            discarding = true
            discardedCount = pending.count + bytes.count
            pending = []
            return
        }
        pending.append(contentsOf: bytes)
    }

    private mutating func finishLine(into lines: inout [Line]) {
        if discarding {
            lines.append(.oversized(byteCount: discardedCount))
            discarding = false
            discardedCount = 0
            return
        }
        if pending.last == 0x0D { pending.removeLast() }
        lines.append(.complete(pending))
        pending = []
        pending.reserveCapacity(256)
    }
}

/// Starts a host program with `posix_spawn`: a clean signal mask (whatever the calling thread blocks), optionally
/// in a process group of its own. `arrange` sets up its descriptors. Returns the pid, or the spawn error.
struct SpawnFailure: Error {
    var errno: Int32
}

func spawnHostProgram(
    _ argv: [String], environment: [String: String]?, searchPath: Bool = false, newProcessGroup: Bool = false,
    arrange: (inout posix_spawn_file_actions_t) -> Void
) -> Result<pid_t, SpawnFailure> {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    arrange(&actions)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var emptyMask = sigset_t()
    sigemptyset(&emptyMask)
    posix_spawnattr_setsigmask(&attributes, &emptyMask)
    var flags = POSIX_SPAWN_SETSIGMASK
    if newProcessGroup {
        posix_spawnattr_setpgroup(&attributes, 0)
        flags |= POSIX_SPAWN_SETPGROUP
    }
    posix_spawnattr_setflags(&attributes, Int16(flags))
    let cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let cEnvironment: [UnsafeMutablePointer<CChar>?]? = environment.map {
        $0.map { strdup("\($0.key)=\($0.value)") } + [nil]
    }
    defer {
        cArguments.forEach { free($0) }
        cEnvironment?.forEach { free($0) }
    }
    var pid: pid_t = 0
    let status: Int32
    if let cEnvironment {
        status =
            searchPath
            ? posix_spawnp(&pid, argv[0], &actions, &attributes, cArguments, cEnvironment)
            : posix_spawn(&pid, argv[0], &actions, &attributes, cArguments, cEnvironment)
    } else {
        status =
            searchPath
            ? posix_spawnp(&pid, argv[0], &actions, &attributes, cArguments, environ)
            : posix_spawn(&pid, argv[0], &actions, &attributes, cArguments, environ)
    }
    return status == 0 ? .success(pid) : .failure(SpawnFailure(errno: status))
}
