import Logging
import Synchronization

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
    /// Blocks the calling thread for the launch itself, about 2-3 ms: it reads the launcher's status pipe until
    /// end-of-file, which arrives when the worker's exec closes the last copy of it. The first launch with a
    /// given launcher also runs `spaces-launcher --export-seccomp` once (a few ms) unless `probe()` already did.
    /// A cgroup controller that does not work is not an error: see `SandboxProcess.cgroupReport`. The worker's
    /// `ready` line (docs/WORKER.md) is the caller's to wait for on `responseFD`.
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
        // The worker's filter, compiled once per engine: a pipe that already holds it all (it is far smaller
        // than a pipe's capacity, so the write cannot block) and that only the launcher will read.
        var seccomp: Int32?
        if let program = seccompProgram(launcher: launcher) {
            let pipe = try makePipe("pipe")
            childEnds.append(pipe.read)
            defer { closeDescriptor(pipe.write) }
            let written = try systemCall("pipe", "write the seccomp filter") {
                program.withUnsafeBytes { write(pipe.write, $0.baseAddress, $0.count) }
            }
            guard written == program.count else {
                throw SandboxError(step: "pipe", errno: EIO, detail: "short write of the seccomp filter")
            }
            seccomp = pipe.read
        }

        var arguments = launcherArguments(spec, seccompFD: seccomp != nil)
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
        if let seccomp {
            inherited.append((seccomp, [LauncherDescriptors.seccomp]))
        }
        let monitor = try spawn(launcher, arguments: arguments, inheriting: inherited)
        childEnds.forEach(closeDescriptor)
        childEnds = []

        let cgroupReport: [String: String]
        switch readStatus(status.read) {
        case .success(let report):
            cgroupReport = report
        case .failure(let failure):
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
            monitorPID: monitor, requestFD: request.write, responseFD: response.read, cgroupReport: cgroupReport,
            lifecycle: lifecycle)
        let elapsed = clock.now - start
        logger.debug(
            "space started",
            metadata: [
                "hostname": "\(spec.hostname)", "monitor": "\(monitor)", "launch": "\(elapsed)",
                "cgroups": "\(cgroupReport)",
            ])
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

    /// What isolation this host can give a space, without starting one: reads of /proc and /sys plus
    /// `spaces-launcher --probe` (about 10 ms). Also compiles the worker's seccomp filter once, so that the
    /// first launch does not wait for it.
    public static func probe() -> IsolationReport {
        let launcher = launcherPath()
        if let launcher {
            _ = seccompProgram(launcher: launcher)
        }
        return IsolationReport.probe(launcherPath: launcher)
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
        let limits: [(String, Int?)] = [
            ("processLimit", spec.processLimit), ("openFileLimit", spec.openFileLimit),
            ("fileSizeLimitBytes", spec.fileSizeLimitBytes), ("memoryLimitBytes", spec.memoryLimitBytes),
        ]
        for case (let name, let value?) in limits where value <= 0 {
            throw invalid("\(name) must be positive (or nil for no limit), got \(value)")
        }
        guard spec.cpuMillis >= 0 else {
            throw invalid("cpuMillis must be 0 (no limit) or positive, got \(spec.cpuMillis)")
        }
        let name = spec.cgroupName.utf8
        let nameIsValid =
            (1...128).contains(name.count) && name.first != UInt8(ascii: ".")
            && name.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                    || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
            }
        guard nameIsValid else {
            throw invalid(
                "cgroupName must be 1-128 letters, digits, '-', '_' or '.', not starting with '.', got "
                    + spec.cgroupName.debugDescription)
        }
    }

    /// The launcher's command line for `spec` (docs/SANDBOX.md, "The launcher's command line"); with
    /// `seccompFD`, the worker's filter comes ready-made on `LauncherDescriptors.seccomp`.
    static func launcherArguments(_ spec: SandboxSpec, seccompFD: Bool = false) -> [String] {
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
        // One knob, two layers: the rlimit holds on any host, pids.max for the space as a whole where the
        // controller works.
        let limits: [(String, Int?)] = [
            ("--rlimit-nproc", spec.processLimit), ("--rlimit-nofile", spec.openFileLimit),
            ("--rlimit-fsize", spec.fileSizeLimitBytes), ("--memory-bytes", spec.memoryLimitBytes),
            ("--pids-max", spec.processLimit), ("--cpu-millis", spec.cpuMillis == 0 ? nil : spec.cpuMillis),
        ]
        arguments += ["--cgroup", spec.cgroupName]
        for case (let option, let value?) in limits {
            arguments += [option, String(value)]
        }
        if seccompFD {
            arguments += ["--seccomp-fd", String(LauncherDescriptors.seccomp)]
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

    /// Reads the status pipe to end-of-file. Returns the cgroup report (controller → `ok <detail>` or
    /// `unavailable <detail>`) when no step failed, else the failure the launcher reported.
    static func readStatus(_ fd: Int32) -> Result<[String: String], SandboxError> {
        do {
            let bytes = try readToEnd(fd, step: "status", "read the launcher's status pipe")
            return parseStatus(String(decoding: bytes, as: UTF8.self))
        } catch {
            return .failure(error)
        }
    }

    /// The status pipe's lines (docs/SANDBOX.md, "What the launcher reports"): `cgroup <controller> <ok|unavailable>
    /// <detail>` for each controller, then, only when a step failed, `error <step> <errno> <detail>`.
    static func parseStatus(_ text: String) -> Result<[String: String], SandboxError> {
        var cgroupReport: [String: String] = [:]
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("cgroup ") {
                let parts = line.split(separator: " ", maxSplits: 2)
                if parts.count == 3 {
                    cgroupReport[String(parts[1])] = String(parts[2])
                    continue
                }
            }
            return .failure(
                SandboxError(statusLine: line)
                    ?? SandboxError(step: "status", errno: EPROTO, detail: "unexpected launcher status: \(text)"))
        }
        return .success(cgroupReport)
    }

    // MARK: - The launcher's other modes

    /// The worker's seccomp filter per launcher path, as `spaces-launcher --export-seccomp` writes it; nil for a
    /// launcher that could not export one (it then compiles the filter at each launch, ~0.2 ms of CPU).
    /// Compiled once per engine and launcher rather than per space.
    private static let seccompPrograms = Mutex<[String: [UInt8]?]>([:])

    /// The cached filter for `launcher`, exporting it on first use. Two threads may both export it the first
    /// time; both get the same bytes.
    static func seccompProgram(launcher: String) -> [UInt8]? {
        if let cached = seccompPrograms.withLock({ $0[launcher] }) {
            return cached
        }
        // Anything larger than PIPE_BUF could block the engine's write into a pipe of reduced capacity.
        let program = runLauncher(launcher, mode: "--export-seccomp").flatMap { $0.count <= 4096 ? $0 : nil }
        seccompPrograms.withLock { $0[launcher] = .some(program) }
        return program
    }

    /// Runs `launcher mode` (`--probe`, `--export-seccomp`) and returns its stdout; nil when it cannot be run or
    /// exits non-zero (its complaint goes to the engine's stderr).
    static func runLauncher(_ launcher: String, mode: String) -> [UInt8]? {
        guard let output = try? makePipe("probe") else {
            return nil
        }
        defer { closeDescriptor(output.read) }
        let pid: pid_t
        do {
            pid = try spawn(
                launcher, arguments: [mode],
                inheriting: [(output.write, [STDOUT_FILENO]), (STDERR_FILENO, [STDERR_FILENO])])
        } catch {
            closeDescriptor(output.write)
            return nil
        }
        closeDescriptor(output.write)
        let bytes = try? readToEnd(output.read, step: "probe")
        var status: Int32 = 0
        _ = try? systemCall("probe", "waitpid") { waitpid(pid, &status, 0) }
        guard let bytes, exitCode(fromWaitStatus: status) == 0 else {
            return nil
        }
        return bytes
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
    static let seccomp: Int32 = 8
    static let firstBind: Int32 = 9

    /// The descriptor of the read-only bind at `index` in the spec.
    static func bind(_ index: Int) -> Int32 {
        firstBind + Int32(index)
    }
}
