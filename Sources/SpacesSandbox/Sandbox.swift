import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Starting spaces and finding out what isolation the host offers.
///
/// The engine is multithreaded, so it never forks to build a space: it `posix_spawn`s the single-threaded C
/// launcher (`spaces-launcher`), which creates the namespaces and the root and execs the worker, and reports a
/// failed step on a status pipe (docs/SANDBOX.md).
public enum Sandbox {
    static let logger = Logger(label: "spaces.sandbox")

    /// The launcher's executable name.
    static let launcherName = "spaces-launcher"

    /// Starts a space and returns once its worker has been exec'd (or throws the step that failed).
    ///
    /// Blocks the calling thread for the launch itself, about 2 ms: it reads the launcher's status pipe until
    /// end-of-file, which arrives when the worker's exec closes the last copy of it. The worker's `ready` line
    /// (docs/WORKER.md) is the caller's to wait for on `responseFD`.
    public static func launch(_ spec: SandboxSpec, launcherPath: String? = nil) throws(SandboxError) -> SandboxProcess {
        try launch(spec, launcherPath: launcherPath, adjustingArguments: { _ in })
    }

    /// `launch`, with a hook that may change the launcher's arguments before the spawn (tests use it to hand
    /// the launcher a bad descriptor).
    static func launch(
        _ spec: SandboxSpec,
        launcherPath: String?,
        adjustingArguments adjust: (inout [String]) -> Void
    ) throws(SandboxError) -> SandboxProcess {
        let clock = ContinuousClock()
        let start = clock.now
        try validate(spec)
        guard let launcher = launcherPath ?? Self.launcherPath() else {
            throw SandboxError(
                step: "launcher", errno: ENOENT,
                detail: "\(launcherName) was not found (SPACES_LAUNCHER is unset and none is beside the engine)")
        }

        // Descriptors the launcher inherits, and the numbers it gets them at (docs/SANDBOX.md).
        var childEnds: [Int32] = []  // closed in the engine once the launcher has its copies
        var engineEnds: [Int32] = []  // kept by the engine on success, closed on failure
        var launched = false
        defer {
            childEnds.forEach(closeDescriptor)
            if !launched {
                engineEnds.forEach(closeDescriptor)
            }
        }
        let workspace = try systemCall("open_workspace", spec.workspacePath) {
            open(spec.workspacePath, openPathOnly | O_DIRECTORY | O_CLOEXEC)
        }
        childEnds.append(workspace)
        var bindSources: [Int32] = []
        for bind in spec.readOnlyBinds {
            let fd = try systemCall("open_bind", bind.hostPath) { open(bind.hostPath, openPathOnly | O_CLOEXEC) }
            childEnds.append(fd)
            bindSources.append(fd)
        }
        let request = try makePipe("pipe")
        childEnds.append(request.read)
        engineEnds.append(request.write)
        let response = try makePipe("pipe")
        childEnds.append(response.write)
        engineEnds.append(response.read)
        let status = try makePipe("pipe")
        childEnds.append(status.write)
        engineEnds.append(status.read)
        let lifeline = try makePipe("pipe")
        childEnds.append(lifeline.read)
        engineEnds.append(lifeline.write)

        var arguments = launcherArguments(spec)
        adjust(&arguments)
        var inherited: [(source: Int32, targets: [Int32])] = [
            (STDERR_FILENO, [STDOUT_FILENO, STDERR_FILENO]),
            (request.read, [LauncherDescriptors.request]),
            (response.write, [LauncherDescriptors.response]),
            (workspace, [LauncherDescriptors.workspace]),
            (status.write, [LauncherDescriptors.status]),
            (lifeline.read, [LauncherDescriptors.lifeline]),
        ]
        for (index, fd) in bindSources.enumerated() {
            inherited.append((fd, [LauncherDescriptors.bind(index)]))
        }
        let monitor = try spawn(launcher, arguments: arguments, inheriting: inherited)
        childEnds.forEach(closeDescriptor)
        childEnds = []

        if let failure = readStatus(status.read) {
            // The monitor exits by itself after reporting; reap it so no zombie is left.
            if failure.step == "status" {
                sendSignal(SIGTERM, to: monitor)
            }
            var waitStatus: Int32 = 0
            _ = try? systemCall("wait", "waitpid") { waitpid(monitor, &waitStatus, 0) }
            throw failure
        }
        closeDescriptor(status.read)
        engineEnds.removeAll { $0 == status.read }

        let lifecycle = SpaceLifecycle(monitorPID: monitor, lifelineFD: lifeline.write)
        do {
            try lifecycle.startReaper()
        } catch {
            sendSignal(SIGTERM, to: monitor)
            var waitStatus: Int32 = 0
            _ = try? systemCall("wait", "waitpid") { waitpid(monitor, &waitStatus, 0) }
            throw error
        }
        launched = true
        let process = SandboxProcess(
            monitorPID: monitor, requestFD: request.write, responseFD: response.read, lifecycle: lifecycle)
        let elapsed = clock.now - start
        logger.debug(
            "space started",
            metadata: ["hostname": "\(spec.hostname)", "monitor": "\(monitor)", "launch": "\(elapsed)"])
        return process
    }

    /// The launcher to use: `SPACES_LAUNCHER` when set; else `spaces-launcher` beside the running executable
    /// (its real path); else, walking up from the executable's directory, a `spaces-launcher` there or in
    /// `.build/debug` or `.build/release` (a test bundle, or a tool run from inside the package). Nil when none
    /// is found.
    public static func launcherPath() -> String? {
        if let configured = getenv("SPACES_LAUNCHER"), configured.pointee != 0 {
            return String(cString: configured)
        }
        guard let resolved = realpath("/proc/self/exe", nil) else {
            return nil
        }
        let executable = String(cString: resolved)
        free(resolved)
        var directory = parentDirectory(of: executable)
        while true {
            for candidate in ["", "/.build/debug", "/.build/release"] {
                let path = directory + candidate + "/" + launcherName
                if isExecutableFile(path) {
                    return path
                }
            }
            if directory == "/" || directory.isEmpty {
                return nil
            }
            directory = parentDirectory(of: directory)
        }
    }

    /// What isolation this host can give a space, without starting one: cheap reads of /proc and /sys.
    public static func probe() -> IsolationReport {
        IsolationReport.probe(launcherPath: launcherPath())
    }

    // MARK: - Launching

    /// Catches what the launcher would refuse anyway, with the engine's names for the fields.
    static func validate(_ spec: SandboxSpec) throws(SandboxError) {
        func invalid(_ detail: String) -> SandboxError {
            SandboxError(step: "spec", errno: EINVAL, detail: detail)
        }
        guard let program = spec.program.first, program.hasPrefix("/") else {
            throw invalid("program must start with an absolute path, got \(spec.program)")
        }
        guard spec.tmpSizeBytes > 0 else {
            throw invalid("tmpSizeBytes must be positive, got \(spec.tmpSizeBytes)")
        }
        guard spec.workingDirectory.hasPrefix("/") else {
            throw invalid("workingDirectory must be absolute, got \(spec.workingDirectory)")
        }
        for (key, value) in spec.environment
        where key.isEmpty || key.contains("=") || key.utf8.contains(0) || value.utf8.contains(0) {
            throw invalid("environment variable name \(key.debugDescription) must be non-empty, without '=' or NUL")
        }
        for argument in spec.program where argument.utf8.contains(0) {
            throw invalid("program arguments may not contain NUL")
        }
    }

    /// The launcher's command line for `spec` (docs/SANDBOX.md, "The launcher's command line").
    static func launcherArguments(_ spec: SandboxSpec) -> [String] {
        var arguments = [
            "--uid", String(spec.hostUID), "--gid", String(spec.hostGID),
            "--hostname", spec.hostname,
            "--workspace-fd", String(LauncherDescriptors.workspace),
            "--status-fd", String(LauncherDescriptors.status),
            "--lifeline-fd", String(LauncherDescriptors.lifeline),
            "--tmp-size", String(spec.tmpSizeBytes),
            "--cwd", spec.workingDirectory,
        ]
        for (index, bind) in spec.readOnlyBinds.enumerated() {
            arguments += ["--bind-ro-fd", "\(LauncherDescriptors.bind(index)):\(bind.insidePath)"]
        }
        for key in spec.environment.keys.sorted() {
            arguments += ["--env", "\(key)=\(spec.environment[key]!)"]
        }
        return arguments + ["--"] + spec.program
    }

    /// posix_spawns the launcher with exactly the descriptors in `inherited` (each source at its targets),
    /// /dev/null on 0, an empty environment, default signal handling and an empty signal mask, in a process
    /// group of its own (so a terminal's ^C aimed at the engine does not reach the space).
    static func spawn(
        _ launcher: String,
        arguments: [String],
        inheriting inherited: [(source: Int32, targets: [Int32])]
    ) throws(SandboxError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        try systemCallReturningError("spawn", "file actions") { posix_spawn_file_actions_init(&actions) }
        defer { posix_spawn_file_actions_destroy(&actions) }
        // A source may already sit at another source's target number, so first lift every source above all the
        // numbers involved, then place the copies, then drop the lifted ones. dup2 clears close-on-exec on the
        // copy, which is how the engine's close-on-exec descriptors reach the launcher.
        let highest = inherited.flatMap { [$0.source] + $0.targets }.max() ?? STDERR_FILENO
        for (index, entry) in inherited.enumerated() {
            let lifted = highest + 1 + Int32(index)
            try systemCallReturningError("spawn", "dup2 \(entry.source)") {
                posix_spawn_file_actions_adddup2(&actions, entry.source, lifted)
            }
        }
        try systemCallReturningError("spawn", "/dev/null on stdin") {
            posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        }
        for (index, entry) in inherited.enumerated() {
            let lifted = highest + 1 + Int32(index)
            for target in entry.targets {
                try systemCallReturningError("spawn", "dup2 onto \(target)") {
                    posix_spawn_file_actions_adddup2(&actions, lifted, target)
                }
            }
        }
        for index in inherited.indices {
            try systemCallReturningError("spawn", "close") {
                posix_spawn_file_actions_addclose(&actions, highest + 1 + Int32(index))
            }
        }

        var attributes = posix_spawnattr_t()
        try systemCallReturningError("spawn", "attributes") { posix_spawnattr_init(&attributes) }
        defer { posix_spawnattr_destroy(&attributes) }
        // The engine ignores SIGPIPE and may block signals on its threads; neither may leak into the space.
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        try systemCallReturningError("spawn", "signal mask") { posix_spawnattr_setsigmask(&attributes, &noSignals) }
        try systemCallReturningError("spawn", "signal defaults") {
            posix_spawnattr_setsigdefault(&attributes, &allSignals)
        }
        try systemCallReturningError("spawn", "process group") { posix_spawnattr_setpgroup(&attributes, 0) }
        let flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP
        try systemCallReturningError("spawn", "flags") { posix_spawnattr_setflags(&attributes, Int16(flags)) }

        let argv: [UnsafeMutablePointer<CChar>?] = ([launcher] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let environment: [UnsafeMutablePointer<CChar>?] = [nil]
        var pid = pid_t()
        try systemCallReturningError("spawn", launcher) {
            posix_spawn(&pid, launcher, &actions, &attributes, argv, environment)
        }
        return pid
    }

    /// Reads the status pipe to end-of-file: nil when nothing was written (the worker exec'd), else the failure
    /// the launcher reported.
    static func readStatus(_ fd: Int32) -> SandboxError? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while true {
            let count: Int
            do {
                count = try systemCall("status", "read the launcher's status pipe") {
                    buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                }
            } catch {
                return error
            }
            if count == 0 {
                break
            }
            bytes.append(contentsOf: buffer[..<count])
        }
        guard !bytes.isEmpty else {
            return nil
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let line = text.split(separator: "\n", omittingEmptySubsequences: true).first ?? ""
        return SandboxError(statusLine: line)
            ?? SandboxError(step: "status", errno: EPROTO, detail: "unexpected launcher status: \(text)")
    }

    private static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else {
            return "."
        }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// Where the launcher finds each inherited descriptor. 0-4 are the worker's (docs/SANDBOX.md); the others are
/// fixed numbers from 5 up, so the command line can name them.
enum LauncherDescriptors {
    static let request: Int32 = 3
    static let response: Int32 = 4
    static let workspace: Int32 = 5
    static let status: Int32 = 6
    static let lifeline: Int32 = 7
    static let firstBind: Int32 = 8

    /// The descriptor of the read-only bind at `index` in the spec.
    static func bind(_ index: Int) -> Int32 {
        firstBind + Int32(index)
    }
}
