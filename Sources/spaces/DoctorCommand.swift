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
        var healthy = true
        print("isolation layers (required: \(Engine.requiredLayers.joined(separator: ", "))):")
        for layer in report.layers {
            let required = Engine.requiredLayers.contains(layer.name)
            let mark = layer.present ? "ok     " : (required ? "MISSING" : "absent ")
            print("  \(mark) \(layer.name): \(layer.detail)")
            if let fix = layer.fix, !layer.present { print("          fix: \(fix)") }
            if required && !layer.present { healthy = false }
        }
        print(
            "  " + (report.mount && report.pid && report.net && report.ipc && report.uts ? "ok     " : "MISSING")
                + " mount, pid, net, ipc, uts namespaces")
        switch SpaceEnvironment.locate(bun: bun, launcher: nil) {
        case .success(let environment):
            print("  ok      Bun \(environment.bunVersion): \(environment.bunPath)")
            print("  ok      worker: \(environment.workerScriptPath)")
        case .failure(let error):
            print("  MISSING \(error.message)\n          fix: \(error.hint)")
            healthy = false
        }
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
            Conformance.currentExecutable(), "serve", "--state-dir", root + "/state", "--log-level", "error", "--pool",
            "0",
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
                print("  MISSING Bun inside a space: \(result)")
                return false
            }
            print("  ok      a real space ran `bun --version`: \(exited?["stdout"]?.stringValue ?? "")", terminator: "")
            return true
        } catch {
            print("  MISSING a real space: \(error)")
            return false
        }
    }
}
