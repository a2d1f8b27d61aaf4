import ArgumentParser
import SpacesConformance
import SpacesEngine
import SpacesProtocol
import SpacesSandbox

#if canImport(Glibc)
    import Glibc
#endif

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that this host can run spaces: each isolation layer, the launcher, Bun, and a real space.")

    @Option(help: "The Bun binary to check.")
    var bun: String?

    func run() throws {
        let report = Sandbox.probe()
        func line(_ ok: Bool, _ text: String) { print("\(ok ? "ok  " : "MISSING") \(text)") }
        line(report.user, "user namespaces")
        line(
            report.mount && report.pid && report.net && report.ipc && report.uts, "mount, pid, net, ipc, uts namespaces"
        )
        line(report.seccomp, "seccomp")
        line(report.cgroup != "none", "cgroups (\(report.cgroup))")
        var healthy = report.user
        switch SpaceEnvironment.locate(bun: bun, launcher: nil) {
        case .success(let environment):
            line(true, "launcher: \(environment.launcherPath ?? "?")")
            line(true, "Bun \(environment.bunVersion): \(environment.bunPath)")
            line(true, "worker: \(environment.workerScriptPath)")
        case .failure(let error):
            line(false, "\(error.message) — \(error.hint)")
            healthy = false
        }
        for problem in report.problems { print("  fix: \(problem)") }
        if healthy { healthy = checkRealSpace() }
        print(healthy ? "\nthis host can run spaces" : "\nthis host cannot run spaces yet: fix what is MISSING above")
        if !healthy { throw ExitCode(1) }
    }

    /// Starts an engine on a temporary state directory and runs `bun --version` inside a real space.
    func checkRealSpace() -> Bool {
        var template = Array("/tmp/spaces-doctor-XXXXXX".utf8CString)
        let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        defer { _ = system("rm -rf '\(root)'") }
        var arguments = [
            Conformance.currentExecutable(), "serve", "--state-dir", root + "/state", "--log-level", "error",
        ]
        if let bun { arguments += ["--bun", bun] }
        do {
            let process = try EngineProcess(arguments: arguments, logPath: root + "/engine.log")
            defer {
                process.closeInput()
                _ = process.waitForExit(timeoutMs: 10_000)
            }
            let client = EngineClient(process: process, timeoutMs: 20_000)
            try client.call("initialize", ["protocolVersion": "0.1"])
            let space = try client.call("spaces/create", ["name": "doctor"])
            let result = try client.call(
                "operations/submit",
                [
                    "spaceId": space["spaceId"] ?? .null,
                    "operations": [["kind": "command.run", "argv": ["bun", "--version"]]],
                ])
            let exited = result["events"]?.arrayValue?.first { $0["type"] == "command.exited" }
            guard exited?["exitCode"] == 0 else {
                print("MISSING Bun inside a space: \(result)")
                return false
            }
            print("ok   a real space ran `bun --version`: \(exited?["stdout"]?.stringValue ?? "")", terminator: "")
            return true
        } catch {
            print("MISSING a real space: \(error)")
            return false
        }
    }
}
