import SpacesSandbox
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A running worker as the engine sees it: its two channel descriptors, and a way to end it and wait.
protocol WorkerProcess: Sendable {
    var requestFD: Int32 { get }
    var responseFD: Int32 { get }
    /// The host pid whose descendants are the space's processes.
    var rootPID: pid_t { get }
    func kill()
    func waitForExit() async -> Int32
}

extension SandboxProcess: WorkerProcess {
    var rootPID: pid_t { monitorPID }
}

/// A worker started without any isolation (`spaces serve --unsafe-no-isolation`): Bun runs on the host, as the
/// engine's user, in a process group of its own, with the workspace directory as its root. Only for hosts that
/// cannot isolate and for code that is trusted; every result and log line says so.
final class UnsafeWorkerProcess: WorkerProcess {
    let requestFD: Int32
    let responseFD: Int32
    let rootPID: pid_t
    private let exit = Mutex<(status: Int32?, waiters: [CheckedContinuation<Int32, Never>])>((nil, []))

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init(bun: String, script: String, workspace: String, environment: [String: String]) throws(Failure) {
        guard let requests = closeOnExecPipe(), let answers = closeOnExecPipe() else {
            throw Failure(description: "pipe failed: \(String(cString: strerror(errno)))")
        }
        var environment = environment
        environment["SPACES_WORKSPACE"] = workspace
        environment["HOME"] = workspace
        let spawned = spawnHostProgram([bun, script], environment: environment, newProcessGroup: true) {
            (actions: inout posix_spawn_file_actions_t) in
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, 2, 1)
            posix_spawn_file_actions_adddup2(&actions, requests[0], 3)
            posix_spawn_file_actions_adddup2(&actions, answers[1], 4)
        }
        close(requests[0])
        close(answers[1])
        guard case .success(let pid) = spawned else {
            close(requests[1])
            close(answers[0])
            if case .failure(let failure) = spawned {
                throw Failure(description: "cannot start Bun: \(String(cString: strerror(failure.errno)))")
            }
            throw Failure(description: "cannot start Bun")
        }
        requestFD = requests[1]
        responseFD = answers[0]
        rootPID = pid
        let child = pid
        startThread(name: "unsafe-reaper") { [self] in
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            let waiters = exit.withLock { state in
                state.status = status
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume(returning: status) }
        }
    }

    deinit {
        close(requestFD)
        close(responseFD)
    }

    /// Kills the worker's process group (commands it started in groups of their own are killed by the worker).
    func kill() {
        guard exit.withLock({ $0.status == nil }) else { return }
        _ = Glibc.kill(-rootPID, SIGKILL)
    }

    func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            let status = exit.withLock { state -> Int32? in
                if let status = state.status { return status }
                state.waiters.append(continuation)
                return nil
            }
            if let status { continuation.resume(returning: status) }
        }
    }
}
