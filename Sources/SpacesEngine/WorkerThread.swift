import SpacesSandbox
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The thread of one worker: it reads the worker's answers, and it also runs the jobs of tasks that prefer it
/// (a space's batches), so that an answer resumes the waiting batch on the very thread that read it, without
/// waking another thread. Every wake-up between threads costs tens of microseconds on small machines, and a
/// file operation's round trip is a few of them.
///
/// The loop `poll`s the worker's answer pipe and a wake-up pipe. Jobs are queued under `state`, a `Mutex`.
/// After the worker's channel closes the thread serves jobs a little longer, then ends; a job enqueued after
/// that runs on a thread of its own, so no task that prefers this executor is ever stranded.
final class WorkerThread: TaskExecutor, @unchecked Sendable {
    // @unchecked: the only stored mutable state is inside `state` (a Mutex); the pipe descriptors and `thread`
    // are written once, before the loop starts or by the loop itself before anyone can read them.
    private struct State {
        var jobs: [UnownedJob] = []
        var alive = true
        var asleep = false
    }

    private let state = Mutex(State())
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let loopThread = Mutex<pthread_t?>(nil)

    init() {
        let fds = closeOnExecPipe() ?? [-1, -1]
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unownedJob = UnownedJob(job)
        let (accepted, wake) = state.withLock { state -> (Bool, Bool) in
            guard state.alive else { return (false, false) }
            state.jobs.append(unownedJob)
            defer { state.asleep = false }
            return (true, state.asleep)
        }
        guard accepted else {
            startThread(name: "worker-job") { unownedJob.runSynchronously(on: self.asUnownedTaskExecutor()) }
            return
        }
        if wake {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    /// Runs on a new thread: delivers each chunk read from `fd` to `onBytes` (an empty chunk at end-of-file),
    /// runs queued jobs, and ends a while after end-of-file once no job has come.
    func start(reading fd: Int32, onBytes: @escaping @Sendable (UnsafeRawBufferPointer) -> Void) {
        startThread(name: "worker") { [self] in loop(fd: fd, onBytes: onBytes) }
    }

    private func loop(fd initialFD: Int32, onBytes: @Sendable (UnsafeRawBufferPointer) -> Void) {
        var fd = initialFD
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
        defer { buffer.deallocate() }
        var idleRounds = 0
        while true {
            let jobs = state.withLock { state -> [UnownedJob] in
                defer { state.jobs.removeAll(keepingCapacity: true) }
                return state.jobs
            }
            for job in jobs { job.runSynchronously(on: asUnownedTaskExecutor()) }
            if !jobs.isEmpty { continue }

            // Nothing queued: announce sleep, then check once more before blocking, so no wake-up is missed.
            let hasWork = state.withLock { state -> Bool in
                if !state.jobs.isEmpty { return true }
                state.asleep = true
                return false
            }
            if hasWork { continue }
            var descriptors = [
                pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&descriptors, fd >= 0 ? 2 : 1, fd >= 0 ? -1 : 1000)
            state.withLock { $0.asleep = false }
            if ready < 0 { continue }
            if descriptors[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while read(wakeRead, &drain, drain.count) > 0 {}
            }
            if fd >= 0, descriptors[1].revents != 0 {
                let count = (try? FileDescriptorIO.read(fd, into: buffer)) ?? 0
                onBytes(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                if count == 0 { fd = -1 }
                continue
            }
            if fd < 0 && ready == 0 {
                idleRounds += 1
                if idleRounds >= 2 { break }
            }
        }
        // Ending: later jobs get threads of their own; those already queued run here first.
        let remaining = state.withLock { state -> [UnownedJob] in
            state.alive = false
            defer { state.jobs = [] }
            return state.jobs
        }
        for job in remaining { job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
}
