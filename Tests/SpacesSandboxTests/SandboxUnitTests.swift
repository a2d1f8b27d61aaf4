import Foundation
import Testing

@testable import SpacesSandbox

#if canImport(Glibc)
    import Glibc
#endif

private typealias Support = SpaceTestSupport

@Suite("Launcher status lines and hints")
struct SandboxStatusTests {
    @Test("a status line becomes an error with the step, errno, detail and a hint")
    func statusLineParses() throws {
        let error = try #require(SandboxError(statusLine: "error exec 2 /opt/spaces/bin/bun with spaces"))
        #expect(error.step == "exec")
        #expect(error.errno == ENOENT)
        #expect(error.message.hasPrefix("/opt/spaces/bin/bun with spaces: "))
        #expect(error.hint.contains("does not exist inside the space"))
        #expect(error.description.contains("step exec"))
    }

    @Test("a line that is not a status line is not mistaken for one")
    func garbageIsNotAStatusLine() {
        #expect(SandboxError(statusLine: "hello") == nil)
        #expect(SandboxError(statusLine: "error clone notanumber x") == nil)
    }

    @Test(
        "user namespace failures say which setting to change",
        arguments: [
            (EPERM, "apparmor_restrict_unprivileged_userns=0"),
            (ENOSPC, "user.max_user_namespaces=15000"),
        ])
    func namespaceHints(errno: Int32, setting: String) throws {
        let error = try #require(SandboxError(statusLine: "error clone \(errno) new namespaces"))
        #expect(error.hint.contains(setting))
    }

    @Test("the launcher's command line names every descriptor and ends with the program")
    func launcherArguments() {
        var spec = SandboxSpec(
            hostname: "h", workspacePath: "/w", hostUID: 1_000_001, hostGID: 1_000_002,
            readOnlyBinds: [.init(hostPath: "/b", insidePath: "/opt/spaces/bin/bun")],
            program: ["/opt/spaces/bin/bun", "/opt/spaces/worker.ts"],
            environment: ["B": "2", "A": "1"])
        spec.tmpSizeBytes = 1024
        let arguments = Sandbox.launcherArguments(spec)
        #expect(
            arguments == [
                "--uid", "1000001", "--gid", "1000002", "--hostname", "h", "--workspace-fd", "5",
                "--status-fd", "6", "--lifeline-fd", "7", "--tmp-size", "1024", "--cwd", "/workspace",
                "--bind-ro-fd", "8:/opt/spaces/bin/bun", "--env", "A=1", "--env", "B=2",
                "--", "/opt/spaces/bin/bun", "/opt/spaces/worker.ts",
            ])
    }

    @Test("wait statuses become shell-style exit codes")
    func waitStatuses() {
        #expect(exitCode(fromWaitStatus: 0) == 0)
        #expect(exitCode(fromWaitStatus: 42 << 8) == 42)
        #expect(exitCode(fromWaitStatus: SIGKILL) == 137)
    }
}

@Suite("Host probe")
struct SandboxProbeTests {
    @Test("the probe finds namespaces, the launcher and a cgroup layout here (needs user namespaces)")
    func probeReportsThisHostWithNamespaces() throws {
        let host = try Support.prepareSpace()  // fails, naming what is missing, where spaces cannot run
        host.remove()
        let report = Sandbox.probe()
        #expect(report.user && report.mount && report.pid && report.net && report.ipc && report.uts, "\(report)")
        #expect(report.launcherPath != nil)
        #expect(report.canLaunch)
        #expect(["v1", "v2", "none"].contains(report.cgroup))
        #expect(report.capabilitiesDropped == false)
        #expect(report.seccomp == FileManager.default.fileExists(atPath: "/proc/sys/kernel/seccomp/actions_avail"))
    }

    @Test("the launcher is found beside the test bundle and is executable")
    func launcherIsFound() throws {
        let path = try #require(Sandbox.launcherPath())
        #expect(path.hasSuffix("/spaces-launcher"))
        #expect(FileManager.default.isExecutableFile(atPath: path))
    }
}

/// The time from `launch()` to the worker's exec (launch returns when the exec closes the status pipe).
@Suite("Launch latency (needs user namespaces)", .serialized)
struct SandboxLatencyTests {
    @Test("a space starts in a few milliseconds (needs user namespaces)")
    func launchLatencyInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        var spec = host.spec("")
        spec.program = ["/bin/true"]
        let clock = ContinuousClock()
        var samples: [Duration] = []
        for _ in 0..<30 {
            let start = clock.now
            let space = try Sandbox.launch(spec, launcherPath: launcher)
            samples.append(clock.now - start)
            #expect(await space.waitForExit() == 0)
        }
        samples.sort()
        let median = samples[samples.count / 2]
        print("launch → worker exec: median \(median), best \(samples[0]), worst \(samples[samples.count - 1])")
        // Generous for shared CI machines; about 2 ms on an idle one.
        #expect(median < .milliseconds(50))
    }
}
