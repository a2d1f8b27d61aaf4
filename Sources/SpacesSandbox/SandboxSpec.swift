#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// What a space is made of: the host directory it works in, the host id it runs as, what it can read, and the
/// program it runs. `Sandbox.launch` turns one into a running space (docs/SANDBOX.md).
public struct SandboxSpec: Sendable, Hashable {
    /// A host file or directory shown read-only inside the space, such as the Bun binary or the worker script.
    public struct ReadOnlyBind: Sendable, Hashable {
        /// The host path. The engine opens it, and the launcher reopens it while still running as the engine's
        /// host user, so the space's own id need not be able to reach it (Bun under /root works). The engine's
        /// user must be able to: when it is root, that means through the directories' owner, group or other
        /// bits, since the launcher's root has no DAC override there.
        public var hostPath: String
        /// Where it appears inside the space: absolute, normalised, and not under `/usr`, `/workspace`, `/tmp`,
        /// `/dev` or `/proc` (the launcher mounts those itself).
        public var insidePath: String

        public init(hostPath: String, insidePath: String) {
            self.hostPath = hostPath
            self.insidePath = insidePath
        }
    }

    /// The space's host name (`hostname`, `/etc/hostname`, `/etc/hosts`): 1-64 letters, digits, `-` or `.`.
    public var hostname: String
    /// The host directory bound read-write at `/workspace`. It must be owned by `hostUID`; like a bind's host
    /// path, only the engine's user needs to reach it.
    public var workspacePath: String
    /// The host user id the space's root maps to. When the engine runs as root this is an unprivileged id of
    /// its choosing (never 0); otherwise it must be the engine's own uid.
    public var hostUID: UInt32
    /// The host group id the space's root group maps to; the same rules as `hostUID`.
    public var hostGID: UInt32
    public var readOnlyBinds: [ReadOnlyBind]
    /// The worker's argv inside the space; `program[0]` is the absolute path to execute.
    public var program: [String]
    /// The worker's complete environment: nothing of the engine's is passed on.
    public var environment: [String: String]
    /// The size cap of the space's `/tmp` (and of `/dev/shm`), in bytes.
    public var tmpSizeBytes: Int
    /// The worker's working directory inside the space.
    public var workingDirectory: String

    // Limits (docs/SANDBOX.md, "Limits"). nil means "no limit of this kind".

    /// How many processes and threads the space may have at once, init included: the worker's `RLIMIT_NPROC`
    /// and, where the host has the pids controller, the space's `pids.max`.
    public var processLimit: Int?
    /// How many descriptors each process of the space may have open (`RLIMIT_NOFILE`).
    public var openFileLimit: Int?
    /// The largest file a process of the space may write, in bytes (`RLIMIT_FSIZE`; writing past it fails with
    /// `EFBIG` once SIGXFSZ is ignored, and kills the writer otherwise).
    public var fileSizeLimitBytes: Int?
    /// The memory the whole space may use, page cache included, in bytes (the memory cgroup's limit): past it
    /// the kernel's OOM killer ends the space's largest process.
    public var memoryLimitBytes: Int?
    /// The share of one CPU the whole space may use, in thousandths (1000 = one full CPU, 2500 = two and a
    /// half); 0 means no limit. Enforced by the cpu cgroup's quota per 100 ms period.
    public var cpuMillis: Int
    /// The name of the space's cgroup, `agent-spaces/<cgroupName>` below the engine's own cgroup in each
    /// controller. Must be unique among running spaces: 1-128 letters, digits, `-`, `_` or `.`, not starting
    /// with `.`.
    public var cgroupName: String

    /// The defaults follow the `default` policy preset's limits where it has one (security.md).
    public init(
        hostname: String,
        workspacePath: String,
        hostUID: UInt32,
        hostGID: UInt32,
        readOnlyBinds: [ReadOnlyBind] = [],
        program: [String],
        environment: [String: String] = [:],
        tmpSizeBytes: Int = 256 << 20,
        workingDirectory: String = "/workspace",
        processLimit: Int? = 1024,
        openFileLimit: Int? = 4096,
        fileSizeLimitBytes: Int? = 1 << 30,
        memoryLimitBytes: Int? = 1 << 30,
        cpuMillis: Int = 0,
        cgroupName: String? = nil
    ) {
        self.hostname = hostname
        self.workspacePath = workspacePath
        self.hostUID = hostUID
        self.hostGID = hostGID
        self.readOnlyBinds = readOnlyBinds
        self.program = program
        self.environment = environment
        self.tmpSizeBytes = tmpSizeBytes
        self.workingDirectory = workingDirectory
        self.processLimit = processLimit
        self.openFileLimit = openFileLimit
        self.fileSizeLimitBytes = fileSizeLimitBytes
        self.memoryLimitBytes = memoryLimitBytes
        self.cpuMillis = cpuMillis
        self.cgroupName = cgroupName ?? Self.defaultCgroupName(hostname: hostname)
    }

    /// `<hostname>-<engine pid>`: unique as long as the engine's space names are, and tells an operator
    /// looking at /sys/fs/cgroup which engine a space belongs to.
    public static func defaultCgroupName(hostname: String) -> String {
        "\(hostname)-\(getpid())"
    }
}
