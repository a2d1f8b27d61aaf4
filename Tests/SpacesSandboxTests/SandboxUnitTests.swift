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

    @Test("the launcher's command line names every descriptor and limit and ends with the program")
    func launcherArguments() {
        var spec = SandboxSpec(
            hostname: "h", workspacePath: "/w", hostUID: 1_000_001, hostGID: 1_000_002,
            readOnlyBinds: [.init(hostPath: "/b", insidePath: "/opt/spaces/bin/bun")],
            program: ["/opt/spaces/bin/bun", "/opt/spaces/worker.ts"],
            environment: ["B": "2", "A": "1"], cpuMillis: 250, cgroupName: "space-h")
        spec.tmpSizeBytes = 1024
        spec.fileSizeLimitBytes = nil
        #expect(
            Sandbox.launcherArguments(spec, seccompFD: true) == [
                "--uid", "1000001", "--gid", "1000002", "--hostname", "h", "--workspace-fd", "5",
                "--status-fd", "6", "--lifeline-fd", "7", "--tmp-size", "1024", "--cwd", "/workspace",
                "--bind-ro-fd", "9:/opt/spaces/bin/bun",
                "--cgroup", "space-h", "--rlimit-nproc", "1024", "--rlimit-nofile", "4096",
                "--memory-bytes", "1073741824", "--pids-max", "1024", "--cpu-millis", "250",
                "--seccomp-fd", "8", "--env", "A=1", "--env", "B=2",
                "--", "/opt/spaces/bin/bun", "/opt/spaces/worker.ts",
            ])
        spec.cpuMillis = 0
        spec.processLimit = nil
        spec.memoryLimitBytes = nil
        spec.openFileLimit = nil
        let bare = Sandbox.launcherArguments(spec)
        #expect(!bare.contains("--seccomp-fd") && !bare.contains("--cpu-millis") && !bare.contains("--pids-max"))
        #expect(bare.contains("--cgroup"), "a space always gets its cgroups, for accounting if nothing else")
    }

    @Test("a spec's cgroup name defaults to the hostname and the engine's pid")
    func defaultCgroupName() {
        let spec = SandboxSpec(
            hostname: "space-7", workspacePath: "/w", hostUID: 1_000_001, hostGID: 1_000_001, program: ["/bin/true"])
        #expect(spec.cgroupName == "space-7-\(getpid())")
    }

    @Test(
        "limits the launcher would refuse are refused by the engine",
        arguments: [
            { (spec: inout SandboxSpec) in spec.processLimit = 0 },
            { (spec: inout SandboxSpec) in spec.openFileLimit = -1 },
            { (spec: inout SandboxSpec) in spec.memoryLimitBytes = 0 },
            { (spec: inout SandboxSpec) in spec.cpuMillis = -5 },
            { (spec: inout SandboxSpec) in spec.cgroupName = "../escape" },
            { (spec: inout SandboxSpec) in spec.cgroupName = ".probe-1" },
            { (spec: inout SandboxSpec) in spec.cgroupName = "" },
        ] as [@Sendable (inout SandboxSpec) -> Void])
    func invalidLimitsAreRefused(change: @Sendable (inout SandboxSpec) -> Void) throws {
        var spec = SandboxSpec(
            hostname: "h", workspacePath: "/tmp", hostUID: 1_000_000, hostGID: 1_000_000, program: ["/bin/true"])
        change(&spec)
        let error = try #require(throws: SandboxError.self) { try Sandbox.launch(spec, launcherPath: "/bin/true") }
        #expect(error.step == "spec")
    }

    @Test("the status pipe's cgroup lines become the report, and an error line after them still fails the launch")
    func statusLinesParse() throws {
        let ok = """
            cgroup memory ok /sys/fs/cgroup/memory/agent-spaces/x v1 memory.limit_in_bytes=268435456
            cgroup pids unavailable v1: mkdir /sys/fs/cgroup/pids/agent-spaces/x: Read-only file system (errno 30)
            cgroup cpu ok /sys/fs/cgroup/cpu/agent-spaces/x v1 no limit

            """
        let report = try Sandbox.parseStatus(ok).get()
        #expect(report.count == 3)
        #expect(report["memory"] == "ok /sys/fs/cgroup/memory/agent-spaces/x v1 memory.limit_in_bytes=268435456")
        #expect(report["pids"]?.hasPrefix("unavailable ") == true)
        #expect(try Sandbox.parseStatus("").get().isEmpty)
        let failed = Sandbox.parseStatus(ok + "error exec 2 /nowhere\n")
        #expect(throws: SandboxError.self) { try failed.get() }
        #expect((try? failed.get()) == nil)
        if case .failure(let error) = failed {
            #expect(error.step == "exec")
        }
        if case .failure(let error) = Sandbox.parseStatus("garbage\n") {
            #expect(error.step == "status")
        } else {
            Issue.record("a line that is neither cgroup nor error is a protocol error")
        }
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
    @Test("the probe finds every layer here: namespaces, capabilities, seccomp, cgroups, launcher (needs root)")
    func probeReportsThisHostWithNamespaces() throws {
        let host = try Support.prepareSpace()  // fails, naming what is missing, where spaces cannot run
        host.remove()
        let report = Sandbox.probe()
        #expect(report.user && report.mount && report.pid && report.net && report.ipc && report.uts, "\(report)")
        #expect(report.launcherPath != nil)
        #expect(report.canLaunch)
        #expect(report.capabilitiesDropped)
        #expect(report.seccomp)
        #expect(["v1", "v2"].contains(report.cgroup), "memory and pids limits work on CI hosts: \(report.layers)")
        #expect(
            report.layers.map(\.name) == [
                "user namespaces", "capabilities", "seccomp", "cgroup memory", "cgroup pids", "cgroup cpu", "launcher",
            ])
        for layer in report.layers {
            #expect(layer.present, "\(layer.name): \(layer.detail); fix: \(layer.fix ?? "-")")
            #expect(layer.fix == nil)
        }
        #expect(report.problems.isEmpty, "\(report.problems)")
        // The probe's throwaway cgroups are gone again.
        for name in ["memory", "pids", "cpu"] {
            if let directory = report.layer("cgroup \(name)")?.detail.split(separator: " ").first {
                #expect(!FileManager.default.fileExists(atPath: String(directory)), "\(directory) was left behind")
            }
        }
    }

    @Test(
        "a missing layer is named with its fix",
        arguments: [
            ("max_user_namespaces", "user namespaces", "sysctl -w user.max_user_namespaces=15000"),
            ("seccomp", "seccomp", "the kernel refused the filter"),
            ("cgroup pids", "cgroup pids", "mount the pids controller"),
            ("cgroup memory", "cgroup memory", "let the engine write its cgroup"),
        ])
    func missingLayersSayHowToFixThem(broken: String, layer name: String, fix: String) throws {
        var lines: [String: (ok: Bool, detail: String)] = [
            "namespaces": (true, "-"), "capabilities": (true, "-"), "seccomp": (true, "-"),
            "cgroup memory": (true, "/sys/fs/cgroup/memory/agent-spaces/.probe-1 v1 memory.limit_in_bytes=1"),
            "cgroup pids": (true, "/sys/fs/cgroup/pids/agent-spaces/.probe-1 v1 pids.max=1"),
            "cgroup cpu": (true, "/sys/fs/cgroup/cpu/agent-spaces/.probe-1 v1 no limit"),
        ]
        switch broken {
        case "seccomp": lines["seccomp"] = (false, "22 seccomp_load")
        case "cgroup pids": lines["cgroup pids"] = (false, "no pids controller: neither a v1 hierarchy ...")
        case "cgroup memory": lines["cgroup memory"] = (false, "v1: mkdir /sys/fs/cgroup/memory/x: denied (errno 13)")
        default: break
        }
        let report = IsolationReport.assemble(
            launcherPath: "/l", launcherLines: lines,
            setting: { $0.hasSuffix(broken) ? 0 : nil }, privileged: true)
        let layer = try #require(report.layer(name))
        #expect(!layer.present)
        #expect(layer.fix?.contains(fix) == true, "\(layer)")
        #expect(report.problems.contains { $0.hasPrefix(name + ":") && $0.contains(fix) }, "\(report.problems)")
        if name.hasPrefix("cgroup memory") || name.hasPrefix("cgroup pids") {
            #expect(report.cgroup == "none")
        }
    }

    @Test("without a launcher, the layers only it can try are reported missing, with how to build it")
    func noLauncherMeansUntried() {
        let report = IsolationReport.assemble(
            launcherPath: nil, launcherLines: nil, setting: { _ in nil }, privileged: true)
        #expect(!report.seccomp && !report.capabilitiesDropped && report.cgroup == "none" && !report.canLaunch)
        #expect(report.layer("launcher")?.fix?.contains("swift build --product spaces-launcher") == true)
        #expect(report.layer("seccomp")?.detail.contains("not tried") == true)
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
