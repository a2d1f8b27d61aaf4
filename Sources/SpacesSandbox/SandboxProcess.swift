import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A running space, seen from the engine: the launcher's monitor process and the worker's two pipes.
///
/// The monitor's exit means every process of the space is gone (docs/SANDBOX.md), so `waitForExit()` returning
/// is the signal that the workspace may be cleaned up and the host id reused.
///
/// Ownership: this object owns `requestFD`, `responseFD` and the lifeline's write end, and closes all three
/// when it is deinitialized; never close them yourself. Dropping the last reference therefore also ends the
/// space (its lifeline reaches end-of-file). After `kill()` reads on `responseFD` reach end-of-file and writes
/// on `requestFD` fail with EPIPE once the worker is gone; the descriptors themselves stay valid until deinit,
/// so a thread still blocked on one never ends up reading a recycled descriptor number.
///
/// Thread safety: the mutable state (lifeline descriptor, phase, waiters) lives in `SpaceLifecycle` behind a
/// `Mutex`; everything else is immutable.
public final class SandboxProcess: Sendable {
    /// The host pid of the launcher's monitor process.
    public let monitorPID: pid_t
    /// The engine's end of the request pipe: what is written here arrives on the worker's fd 3.
    public let requestFD: Int32
    /// The engine's end of the response pipe: what the worker writes to its fd 4 is read here.
    public let responseFD: Int32
    /// What the launcher reported for each cgroup controller (`memory`, `pids`, `cpu`): `ok <directory> <limit>`
    /// when the space's cgroup in that controller holds the space, else `unavailable <why>` (docs/SANDBOX.md,
    /// "What the launcher reports"). The directory is removed when the space ends.
    public let cgroupReport: [String: String]
    private let lifecycle: SpaceLifecycle

    /// Takes ownership of the two pipe ends and of `lifecycle` (whose reaper thread is already running).
    init(
        monitorPID: pid_t, requestFD: Int32, responseFD: Int32, cgroupReport: [String: String],
        lifecycle: SpaceLifecycle
    ) {
        self.monitorPID = monitorPID
        self.requestFD = requestFD
        self.responseFD = responseFD
        self.cgroupReport = cgroupReport
        self.lifecycle = lifecycle
    }

    /// The space's cgroup directory for `controller`, when the launcher reported it `ok`.
    public func cgroupDirectory(_ controller: String) -> String? {
        guard let entry = cgroupReport[controller], entry.hasPrefix("ok /") else {
            return nil
        }
        return entry.dropFirst(3).split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    deinit {
        lifecycle.closeLifeline()
        closeDescriptor(requestFD)
        closeDescriptor(responseFD)
    }

    /// Ends the space. Idempotent, and returns at once; `waitForExit()` says when it is over.
    ///
    /// Closes the lifeline's write end (init exits as soon as it sees end-of-file) and sends SIGTERM to the
    /// monitor, which answers by SIGKILLing init and then waiting until the kernel has emptied the pid
    /// namespace. The monitor is deliberately not SIGKILLed: it would then exit before the space's processes
    /// are gone, and `waitForExit()` could no longer promise that they are.
    public func kill() {
        lifecycle.stop()
    }

    /// Waits until the monitor has exited and been reaped, and returns its exit code: the worker's exit code,
    /// 128 + signal when the worker (or init) was killed (137 after `kill()`), 127 for a set-up failure, or -1
    /// when the status was lost because something else in the process reaped the monitor (SIGCHLD ignored).
    ///
    /// Does not block the cooperative pool: a dedicated thread, started at launch, blocks in `waitid`.
    /// May be called any number of times, from any task; all get the same, cached, answer.
    public func waitForExit() async -> Int32 {
        await lifecycle.waitForExit()
    }

    /// Closes only the lifeline, as the engine's death would. For tests of init's lifeline handling.
    func closeLifeline() {
        lifecycle.closeLifeline()
    }
}

/// The part of a space that outlives the `SandboxProcess` handle until the monitor has been reaped: shared
/// between the handle and the reaper thread. All mutable state is inside `state`'s Mutex.
final class SpaceLifecycle: Sendable {
    /// The space's life as the engine sees it.
    enum Phase {
        /// The monitor runs and nobody asked it to stop.
        case running
        /// `kill()` was called; the monitor has not been reaped yet.
        case stopping
        /// The monitor has been reaped with this exit code. Its pid may now belong to another process, so no
        /// signal may be sent to it any more.
        case exited(Int32)
    }

    struct State {
        var phase: Phase = .running
        var lifelineFD: Int32?
        var waiters: [CheckedContinuation<Int32, Never>] = []

        /// Closes the lifeline if it is still open; returns the descriptor to close.
        mutating func takeLifeline() -> Int32? {
            defer { lifelineFD = nil }
            return lifelineFD
        }

        /// running → stopping. Returns whether the monitor should be signalled.
        mutating func stop() -> Bool {
            guard case .running = phase else {
                return false
            }
            phase = .stopping
            return true
        }

        /// running | stopping → exited. Returns the tasks to resume.
        mutating func exited(_ code: Int32) -> [CheckedContinuation<Int32, Never>] {
            if case .exited = phase {
                preconditionFailure("the monitor can only be reaped once")
            }
            phase = .exited(code)
            defer { waiters = [] }
            return waiters
        }
    }

    let monitorPID: pid_t
    let state: Mutex<State>

    init(monitorPID: pid_t, lifelineFD: Int32) {
        self.monitorPID = monitorPID
        self.state = Mutex(State(lifelineFD: lifelineFD))
    }

    func closeLifeline() {
        if let fd = state.withLock({ $0.takeLifeline() }) {
            closeDescriptor(fd)
        }
    }

    func stop() {
        state.withLock { state in
            if let fd = state.takeLifeline() {
                closeDescriptor(fd)
            }
            // Under the lock: the reaper marks the monitor exited under the same lock before its pid can be
            // reused, so this never signals a stranger.
            if state.stop() {
                sendSignal(SIGTERM, to: monitorPID)
            }
        }
    }

    func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            let code: Int32? = state.withLock { state in
                if case .exited(let code) = state.phase {
                    return code
                }
                state.waiters.append(continuation)
                return nil
            }
            if let code {
                continuation.resume(returning: code)
            }
        }
    }

    /// Starts the detached thread that reaps the monitor. It keeps this object alive until then.
    func startReaper() throws(SandboxError) {
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<SpaceLifecycle>.fromOpaque(context!).takeRetainedValue().reap()
                return nil
            }, context)
        guard result == 0 else {
            Unmanaged<SpaceLifecycle>.fromOpaque(context).release()
            throw SandboxError(step: "spawn", errno: result, detail: "start the thread that waits for the space")
        }
        pthread_detach(thread)
    }

    /// On the reaper thread: block until the monitor exits, then reap it and publish its exit code.
    private func reap() {
        // WNOWAIT leaves the monitor a zombie, so its pid stays reserved until `state` says it is gone.
        var info = siginfo_t()
        let exited = (try? systemCall("wait", "waitid") { waitid(P_PID, id_t(monitorPID), &info, WEXITED | WNOWAIT) })
        let (code, waiters) = state.withLock { state -> (Int32, [CheckedContinuation<Int32, Never>]) in
            var status: Int32 = 0
            var code: Int32 = -1
            if exited != nil, (try? systemCall("wait", "waitpid") { waitpid(monitorPID, &status, 0) }) != nil {
                code = exitCode(fromWaitStatus: status)
            }
            if let fd = state.takeLifeline() {
                closeDescriptor(fd)  // nobody is left to read it
            }
            return (code, state.exited(code))
        }
        for waiter in waiters {
            waiter.resume(returning: code)
        }
    }
}
