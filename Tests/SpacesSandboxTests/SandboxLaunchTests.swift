import Foundation
import Testing

@testable import SpacesSandbox

#if canImport(Glibc)
    import Glibc
#endif

private typealias Support = SpaceTestSupport

/// Real spaces, started through the real launcher, observed from inside (what the space's shell reports) and
/// from the host (file owners, host processes). All need user namespaces (root, as in CI, or unprivileged
/// ones allowed) and fail without them.
@Suite("Spaces (need user namespaces)")
struct SandboxLaunchTests {
    @Test("a space's shell is pid 2 under init, root inside, and sees only what was bound (needs user namespaces)")
    func spaceIsolatesProcessesUsersAndFilesInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let script = """
            r=/workspace/report
            echo "pid=$$" > $r
            echo "init=$(cat /proc/1/comm)" >> $r
            echo "hostname=$(uname -n)" >> $r
            echo "uid=$(id -u)" >> $r
            echo "gid=$(id -g)" >> $r
            echo "user=$(id -un)" >> $r
            touch /workspace/created && echo "workspace=writable" >> $r
            if touch /usr/x 2>/dev/null; then echo usr=writable; else echo usr=readonly; fi >> $r
            if touch /x 2>/dev/null; then echo root=writable; else echo root=readonly; fi >> $r
            if touch /etc/x 2>/dev/null; then echo etc=writable; else echo etc=readonly; fi >> $r
            if touch /dev/x 2>/dev/null; then echo dev=writable; else echo dev=readonly; fi >> $r
            if touch /tmp/x && touch /dev/shm/x; then echo tmp=writable; else echo tmp=readonly; fi >> $r
            echo "tmpmode=$(stat -c %a /tmp)" >> $r
            for p in /etc/shadow /root /work /home /var /sys /old_root; do
              if [ -e $p ]; then echo "present=$p" >> $r; fi
            done
            echo "etcfiles=$(ls /etc | tr '\\n' ' ')" >> $r
            echo "interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')" >> $r
            echo "processes=$(ls /proc | grep -c '^[0-9]')" >> $r
            echo "devnull=$(echo x > /dev/null && head -c 4 /dev/urandom | wc -c)" >> $r
            echo "hosts=$(grep -c "space-" /etc/hosts)" >> $r
            echo "cwd=$(pwd)" >> $r
            echo "groups=$(id -G)" >> $r
            if ls /proc/1/fd >/dev/null 2>&1; then echo initfds=visible; else echo initfds=hidden; fi >> $r
            """
        let space = try Sandbox.launch(
            host.spec(script), launcherPath: launcher)
        let code = await space.waitForExit()
        #expect(code == 0)
        let report = Support.keyValues(try String(contentsOfFile: host.workspace + "/report", encoding: .utf8))
        #expect(report["pid"] == "2")
        #expect(report["init"] == "spaces-launcher")
        #expect(report["hostname"] == host.name)
        #expect(report["uid"] == "0")
        #expect(report["gid"] == "0")
        #expect(report["user"] == "root")
        #expect(report["workspace"] == "writable")
        #expect(report["usr"] == "readonly")
        #expect(report["root"] == "readonly")
        #expect(report["etc"] == "readonly")
        #expect(report["dev"] == "readonly")
        #expect(report["tmp"] == "writable")
        #expect(report["tmpmode"] == "1777")
        #expect(report["present"] == nil, "host paths visible inside: \(report["present"] ?? "")")
        #expect(
            report["etcfiles"]?.split(separator: " ").sorted() == [
                "alternatives", "group", "hostname", "hosts", "nsswitch.conf", "passwd",
            ])
        #expect(report["interfaces"]?.trimmingCharacters(in: .whitespaces) == "lo")
        // init, the shell and the few it forked for that line; none of the host's hundreds
        #expect((Int(report["processes"] ?? "") ?? .max) < 10)
        #expect(report["devnull"] == "4")
        #expect(report["hosts"] == "1")
        #expect(report["cwd"] == "/workspace")
        #expect(report["groups"] == "0", "no supplementary group of the engine's follows it in")
        #expect(report["initfds"] == "hidden", "init's descriptors (the lifeline) are out of the space's reach")
        #expect(
            Support.ownerUID(host.workspace + "/created") == host.uid, "files made inside belong to the mapped host id")
    }

    @Test("a space has a working loopback and no route out (needs user namespaces)")
    func networkHasOnlyLoopbackInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        // bash's /dev/tcp does a plain connect(2). With loopback up, a closed local port is refused at once;
        // the outside world is unreachable at once (no route), not after a timeout.
        let script = """
            start=$(date +%s%N)
            if timeout 5 bash -c 'exec 3<>/dev/tcp/1.1.1.1/80' 2>/dev/null; then echo outside=connected; else echo outside=failed; fi >&4
            echo "outside_ms=$(( ($(date +%s%N) - start) / 1000000 ))" >&4
            bash -c 'exec 3<>/dev/tcp/127.0.0.1/9' 2>&1 | grep -q refused && echo loopback=up >&4
            """
        let space = try Sandbox.launch(
            host.spec(script), launcherPath: launcher)
        let report = Support.keyValues(Support.readToEnd(space.responseFD))
        #expect(await space.waitForExit() == 0)
        #expect(report["outside"] == "failed")
        #expect(Int(report["outside_ms"] ?? "") ?? .max < 1000, "connecting out should fail at once")
        #expect(report["loopback"] == "up")
    }

    @Test("the worker gets exactly the given environment and descriptors 0-4 (needs user namespaces)")
    func workerGetsExactlyItsEnvironmentAndDescriptorsInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        // The environ of pid 2 is what execve received. A background `sleep` inherits the shell's descriptors
        // untouched by any redirection, so its fd directory shows what the worker was given.
        let script = """
            tr '\\0' '\\n' < /proc/$$/environ > /workspace/environ
            sleep 30 & s=$!
            # Until the child has exec'd sleep it is a copy of the shell, which may hold a descriptor for a moment.
            while [ "$(cat /proc/$s/comm 2>/dev/null)" != sleep ]; do :; done
            ls /proc/$s/fd | sort -n | tr '\\n' ' ' > /workspace/fds
            kill $s
            """
        let environment = ["PATH": "/usr/bin:/bin", "HOME": "/tmp", "SPACES_TEST": "a b=c"]
        let spec = host.spec(script, environment: environment)
        let space = try Sandbox.launch(spec, launcherPath: launcher)
        #expect(await space.waitForExit() == 0)
        let environ = try String(contentsOfFile: host.workspace + "/environ", encoding: .utf8)
        #expect(environ.split(separator: "\n").sorted() == ["HOME=/tmp", "PATH=/usr/bin:/bin", "SPACES_TEST=a b=c"])
        let fds = try String(contentsOfFile: host.workspace + "/fds", encoding: .utf8)
        #expect(fds.trimmingCharacters(in: .whitespaces) == "0 1 2 3 4")
    }

    @Test("requests reach the worker's fd 3 and its fd 4 reaches the engine (needs user namespaces)")
    func pipesConnectEngineAndWorkerInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let space = try Sandbox.launch(
            host.spec("read line <&3; echo \"got $line\" >&4"),
            launcherPath: launcher)
        let request = Array("ping\n".utf8)
        #expect(request.withUnsafeBytes { write(space.requestFD, $0.baseAddress, $0.count) } == request.count)
        #expect(Support.readToEnd(space.responseFD) == "got ping\n")
        #expect(await space.waitForExit() == 0)
    }

    @Test("a worker's exit code and a signal that killed it become the space's exit code (needs user namespaces)")
    func exitCodesPropagateInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let exits = try Sandbox.launch(
            host.spec("exit 42"), launcherPath: launcher)
        #expect(await exits.waitForExit() == 42)
        #expect(await exits.waitForExit() == 42, "the exit code is cached")
        let killed = try Sandbox.launch(
            host.spec("kill -9 $$"), launcherPath: launcher)
        #expect(await killed.waitForExit() == 128 + SIGKILL)
    }

    @Test("kill() ends every process of the space before waitForExit() returns (needs user namespaces)")
    func killEndsEveryProcessInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let marker = host.marker
        let space = try Sandbox.launch(
            host.spec(
                "sleep \(marker) & sleep \(marker) & echo ready >&4; wait"),
            launcherPath: launcher)
        #expect(Support.readUntil(space.responseFD) { $0.contains("ready") }.contains("ready"))
        #expect(await Support.waitForHostPIDs(withArgument: marker, count: 2), "the space's sleeps run on the host")
        space.kill()
        space.kill()  // idempotent
        #expect(await space.waitForExit() == 128 + SIGKILL)
        #expect(Support.hostPIDs(withArgument: marker).isEmpty, "no process of the space may survive")
        #expect(kill(space.monitorPID, 0) == -1 && errno == ESRCH, "the monitor has been reaped")
        space.kill()  // after the exit: no signal to a pid that may have been reused
    }

    @Test("the lifeline reaching end-of-file ends the space, as when the engine dies (needs user namespaces)")
    func lifelineEndOfFileEndsTheSpaceInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let marker = host.marker
        let space = try Sandbox.launch(
            host.spec("sleep \(marker) & echo ready >&4; wait"),
            launcherPath: launcher)
        #expect(Support.readUntil(space.responseFD) { $0.contains("ready") }.contains("ready"))
        #expect(await Support.waitForHostPIDs(withArgument: marker, count: 1))
        space.closeLifeline()
        #expect(await space.waitForExit() == 128 + SIGKILL)
        #expect(Support.hostPIDs(withArgument: marker).isEmpty)
    }

    @Test("dropping the last reference to a space ends it (needs user namespaces)")
    func droppingTheHandleEndsTheSpaceInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let marker = host.marker
        do {
            let space = try Sandbox.launch(
                host.spec("sleep \(marker) & echo ready >&4; wait"),
                launcherPath: launcher)
            #expect(Support.readUntil(space.responseFD) { $0.contains("ready") }.contains("ready"))
            #expect(await Support.waitForHostPIDs(withArgument: marker, count: 1))
        }
        #expect(await Support.waitForHostPIDs(withArgument: marker, count: 0))
    }

    @Test(
        "a read-only bind from a directory the space's id cannot reach is readable, not writable (needs user namespaces)"
    )
    func readOnlyBindFromPrivateDirectoryInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        // A 0700 directory of the engine's user: when that is root, the mapped id cannot traverse it, like /root.
        let privateDirectory = try Support.makeDirectory(owner: 0, group: 0)
        defer { Support.removeDirectory(privateDirectory) }
        #expect(chmod(privateDirectory, 0o700) == 0)
        try "secret-free content\n".write(toFile: privateDirectory + "/tool.txt", atomically: false, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: privateDirectory + "/lib", withIntermediateDirectories: false)
        try "x\n".write(toFile: privateDirectory + "/lib/a", atomically: false, encoding: .utf8)
        var spec = host.spec(
            """
            cat /opt/spaces/tool.txt >&4
            ls /opt/spaces/lib >&4
            if (echo y > /opt/spaces/tool.txt) 2>/dev/null; then echo bind=writable; else echo bind=readonly; fi >&4
            if touch /opt/spaces/lib/b 2>/dev/null; then echo dir=writable; else echo dir=readonly; fi >&4
            """)
        spec.readOnlyBinds = [
            .init(hostPath: privateDirectory + "/tool.txt", insidePath: "/opt/spaces/tool.txt"),
            .init(hostPath: privateDirectory + "/lib", insidePath: "/opt/spaces/lib"),
        ]
        let space = try Sandbox.launch(spec, launcherPath: launcher)
        let output = Support.readToEnd(space.responseFD)
        #expect(await space.waitForExit() == 0)
        #expect(output == "secret-free content\na\nbind=readonly\ndir=readonly\n")
    }

    @Test("Bun runs inside a space from a read-only bind (needs user namespaces and Bun)")
    func bunRunsInsideASpaceInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let bun = try Support.bunPath()
        let scripts = try Support.makeDirectory(owner: 0, group: 0)
        defer { Support.removeDirectory(scripts) }
        try "console.log(`worker ${process.pid} ${Bun.version}`);\n"
            .write(toFile: scripts + "/worker.ts", atomically: false, encoding: .utf8)
        var spec = host.spec(
            """
            /opt/spaces/bin/bun -e 'console.log(1+1)' >&4 2>&1
            /opt/spaces/bin/bun /opt/spaces/worker.ts >&4 2>&1
            """,
            environment: ["PATH": "/opt/spaces/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp"])
        spec.readOnlyBinds = [
            .init(hostPath: bun, insidePath: "/opt/spaces/bin/bun"),
            .init(hostPath: scripts + "/worker.ts", insidePath: "/opt/spaces/worker.ts"),
        ]
        let space = try Sandbox.launch(spec, launcherPath: launcher)
        let output = Support.readToEnd(space.responseFD, timeout: 60)
        #expect(await space.waitForExit() == 0, "bun output: \(output)")
        let lines = output.split(separator: "\n")
        #expect(lines.first == "2")
        #expect(lines.count == 2 && lines[1].hasPrefix("worker "), "bun output: \(output)")
    }

    @Test("spaces can be launched from many threads at once (needs user namespaces)")
    func concurrentLaunchesInSpace() async throws {
        let launcher = try Support.launcher()
        let outputs = try await withThrowingTaskGroup(of: (String, String, Int32).self) { group in
            for _ in 0..<8 {
                group.addTask {
                    let host = try Support.prepareSpace()
                    defer { host.remove() }
                    let space = try Sandbox.launch(host.spec("uname -n >&4"), launcherPath: launcher)
                    let output = Support.readToEnd(space.responseFD)
                    return (host.name, output, await space.waitForExit())
                }
            }
            var results: [(String, String, Int32)] = []
            for try await result in group {
                results.append(result)
            }
            return results
        }
        #expect(outputs.count == 8)
        for (name, output, code) in outputs {
            #expect(output == "\(name)\n")
            #expect(code == 0)
        }
    }
}

/// Set-up failures come back as a `SandboxError` naming the step.
@Suite("Space set-up failures (need user namespaces)")
struct SandboxFailureTests {
    @Test("a program that does not exist fails at step exec (needs user namespaces)")
    func missingProgramFailsAtExecInSpace() throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        var spec = host.spec("")
        spec.program = ["/opt/spaces/bin/no-such-program"]
        let error = try #require(throws: SandboxError.self) { try Sandbox.launch(spec, launcherPath: launcher) }
        #expect(error.step == "exec")
        #expect(error.errno == ENOENT)
        #expect(error.message.contains("/opt/spaces/bin/no-such-program"))
        #expect(!error.hint.isEmpty)
    }

    @Test("a bad workspace descriptor fails at step bind_workspace (needs user namespaces)")
    func badWorkspaceDescriptorFailsAtBindWorkspaceInSpace() throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let spec = host.spec("true")
        // A descriptor number that is not open here (other tests open descriptors concurrently; high numbers
        // are not reached by them), so the launcher cannot have it either.
        let closed = try #require((900..<1000).first { fcntl(Int32($0), F_GETFD) == -1 && errno == EBADF })
        let error = try #require(throws: SandboxError.self) {
            try Sandbox.launch(spec, launcherPath: launcher) { arguments in
                let option = arguments.firstIndex(of: "--workspace-fd")!
                arguments[option + 1] = String(closed)
            }
        }
        #expect(error.step == "bind_workspace")
        #expect(error.errno == EBADF)
    }

    @Test("a working directory that does not exist inside fails at step chdir (needs user namespaces)")
    func missingWorkingDirectoryFailsAtChdirInSpace() throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        var spec = host.spec("true")
        spec.workingDirectory = "/nowhere"
        let error = try #require(throws: SandboxError.self) { try Sandbox.launch(spec, launcherPath: launcher) }
        #expect(error.step == "chdir")
        #expect(error.errno == ENOENT)
    }

    @Test("the space's root is never mapped to host root (needs user namespaces)")
    func hostRootIsRefusedInSpace() throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        var spec = host.spec("true")
        spec.hostUID = 0
        spec.hostGID = 0
        let error = try #require(throws: SandboxError.self) { try Sandbox.launch(spec, launcherPath: launcher) }
        #expect(error.step == "args")
        #expect(error.errno == EPERM)
    }

    @Test("a bind under a path the launcher owns is refused (needs user namespaces)")
    func bindIntoWorkspaceIsRefusedInSpace() throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        var spec = host.spec("true")
        spec.readOnlyBinds = [.init(hostPath: "/usr/bin/env", insidePath: "/workspace/env")]
        let error = try #require(throws: SandboxError.self) { try Sandbox.launch(spec, launcherPath: launcher) }
        #expect(error.step == "args")
        #expect(error.errno == EINVAL)
    }

    @Test("a workspace that does not exist fails before anything is spawned")
    func missingWorkspaceFailsAtOpenWorkspace() throws {
        let spec = SandboxSpec(
            hostname: "h", workspacePath: "/nonexistent/workspace", hostUID: 1_000_000, hostGID: 1_000_000,
            program: ["/bin/true"])
        let error = try #require(throws: SandboxError.self) {
            try Sandbox.launch(spec, launcherPath: "/bin/true")
        }
        #expect(error.step == "open_workspace")
        #expect(error.errno == ENOENT)
    }

    @Test("a launcher that does not exist fails at step spawn")
    func missingLauncherFailsAtSpawn() throws {
        let spec = SandboxSpec(
            hostname: "h", workspacePath: "/tmp", hostUID: 1_000_000, hostGID: 1_000_000, program: ["/bin/true"])
        let error = try #require(throws: SandboxError.self) {
            try Sandbox.launch(spec, launcherPath: "/nonexistent/spaces-launcher")
        }
        #expect(error.step == "spawn")
        #expect(error.errno == ENOENT)
    }

    @Test("a relative program path is refused by the engine")
    func relativeProgramIsRefused() throws {
        let spec = SandboxSpec(
            hostname: "h", workspacePath: "/tmp", hostUID: 1_000_000, hostGID: 1_000_000, program: ["sh"])
        let error = try #require(throws: SandboxError.self) { try Sandbox.launch(spec, launcherPath: "/bin/true") }
        #expect(error.step == "spec")
    }
}
