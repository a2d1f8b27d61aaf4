import Logging
import SpacesPolicy
import SpacesSandbox
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Pre-started spaces with empty workspaces, so that `spaces/create` need not wait for a sandbox and a worker.
///
/// Each entry is a sandbox launched for a space id chosen in advance (its host name is that id), with its
/// workspace in `pool/<id>/workspace` of the state directory and the default policy's limits. An entry is handed
/// out once and never returns: the pool refills in the background. Entries live in `state`, a `Mutex`.
final class SpacePool: Sendable {
    struct Entry: Sendable {
        var spaceId: String
        var hostUID: UInt32
        var hostGID: UInt32
        var worker: WorkerConnection
    }

    private struct State {
        var entries: [Entry] = []
        var filling = 0
        var stopped = false
        var failures = 0
    }

    let capacity: Int
    let store: StateStore
    let logger: Logger
    private let state = Mutex(State())

    init(capacity: Int, store: StateStore, logger: Logger) {
        self.capacity = capacity
        self.store = store
        self.logger = logger
    }

    var poolDirectory: String { store.root + "/pool" }
    func directory(_ spaceId: String) -> String { poolDirectory + "/" + spaceId }

    /// Whether a space with these settings can come from the pool: the launch-time settings must be the pool's.
    static func fits(name: String?, policy: Policy) -> Bool {
        name == nil && policy.limits == Policy.default.limits
    }

    /// An entry whose worker is still alive, if any; starts refilling.
    func take(environment: SpaceEnvironment) -> Entry? {
        let entry = state.withLock { state -> Entry? in
            while !state.entries.isEmpty {
                let entry = state.entries.removeFirst()
                if !entry.worker.isClosed { return entry }
            }
            return nil
        }
        refill(environment: environment)
        return entry
    }

    /// Starts as many launches as the pool is short of, one after another in one task.
    func refill(environment: SpaceEnvironment) {
        let missing = state.withLock { state -> Int in
            guard !state.stopped, state.failures < 3 else { return 0 }
            let missing = capacity - state.entries.count - state.filling
            state.filling += max(0, missing)
            return max(0, missing)
        }
        guard missing > 0 else { return }
        Task {
            // Let the request that took a space be answered before launching competes for the CPU.
            try? await Task.sleep(for: .milliseconds(2))
            for _ in 0..<missing { await fillOne(environment: environment) }
        }
    }

    private func fillOne(environment: SpaceEnvironment) async {
        let spaceId = Identifier.make("sp_")
        let (uid, gid) = environment.unsafeNoIsolation ? (getuid(), getgid()) : Engine.hostIdentity()
        let workspace = directory(spaceId) + "/workspace"
        do {
            try store.makeDirectory(workspace)
            store.chown(directory(spaceId), uid: uid, gid: gid)
            let worker = try await Space.startWorker(
                environment: environment, spaceId: spaceId, hostname: spaceId.replacingUnderscores,
                workspace: workspace, uid: uid, gid: gid, limits: Policy.default.limits, logger: logger)
            let kept = state.withLock { state -> Bool in
                state.filling -= 1
                guard !state.stopped else { return false }
                state.entries.append(Entry(spaceId: spaceId, hostUID: uid, hostGID: gid, worker: worker))
                return true
            }
            if !kept {
                worker.process.kill()
                _ = await worker.process.waitForExit()
                store.remove(directory(spaceId))
            }
        } catch {
            state.withLock { state in
                state.filling -= 1
                state.failures += 1
            }
            store.remove(directory(spaceId))
            logger.warning("the warm pool could not start a space: \(error)")
        }
    }

    /// Stops every pooled space and removes the pool's directories; no refill after this.
    func drain() async {
        let entries = state.withLock { state -> [Entry] in
            state.stopped = true
            defer { state.entries = [] }
            return state.entries
        }
        for entry in entries {
            entry.worker.process.kill()
            entry.worker.close(reason: "the engine stopped")
            _ = await entry.worker.process.waitForExit()
        }
        // Launches still under way notice `stopped` and clean up after themselves.
        for _ in 0..<400 where state.withLock({ $0.filling > 0 }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
        store.remove(poolDirectory)
    }
}
