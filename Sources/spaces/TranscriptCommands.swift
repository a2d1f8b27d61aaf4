import ArgumentParser
import SpacesConformance
import SpacesEngine
import SpacesProtocol

#if canImport(Glibc)
    import Glibc
#endif

struct Transcript: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a run's transcript (its audit entries, redacted) as JSON lines, from the state directory.")

    @Argument(help: "The run's id (run_…).")
    var runId: String

    @Option(help: "The state directory (default: $XDG_DATA_HOME/agent-spaces or ~/.local/share/agent-spaces).")
    var stateDir: String?

    func run() throws {
        let directory = EngineConfiguration(stateDirectory: stateDir).stateDirectory + "/audit"
        guard let folder = opendir(directory) else {
            throw ValidationError("no audit logs in \(directory); check --state-dir")
        }
        var names: [String] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            if name.hasSuffix(".jsonl") { names.append(name) }
        }
        closedir(folder)
        var found = false
        for name in names.sorted() {
            for line in (FixtureLoader.readFile(directory + "/" + name) ?? "").split(separator: "\n") {
                guard let entry = try? JSONValue.parse(String(line)), entry["runId"]?.stringValue == runId else {
                    continue
                }
                print(entry.encoded(sortedKeys: true))
                found = true
            }
        }
        if !found { throw ValidationError("no run \(runId) in \(directory)") }
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply a transcript's operations again in a new space and report each difference.")

    @Argument(help: "A transcript: JSON lines, as `spaces transcript` prints them.")
    var file: String

    @OptionGroup var options: EngineOptions

    func run() throws {
        guard let text = FixtureLoader.readFile(file) else { throw ValidationError("cannot read \(file)") }
        var entries: [JSONValue] = []
        for (index, line) in text.split(separator: "\n").enumerated() {
            do {
                entries.append(try JSONValue.parse(String(line)))
            } catch {
                throw ValidationError("\(file):\(index + 1): not JSON: \(error)")
            }
        }
        var arguments = [Conformance.currentExecutable(), "serve", "--log-level", "error", "--pool", "0"]
        if let stateDir = options.stateDir { arguments += ["--state-dir", stateDir] }
        if let bun = options.bun { arguments += ["--bun", bun] }
        let process = try EngineProcess(arguments: arguments, logPath: "/dev/null")
        defer {
            process.closeInput()
            _ = process.waitForExit(timeoutMs: 20_000)
        }
        let client = EngineClient(process: process)
        try client.call("initialize", ["protocolVersion": "0.1"])
        let result = try client.call("runs/replay", ["transcript": .array(entries)])
        print(
            "replayed in space \(result["spaceId"]?.stringValue ?? "?"): "
                + (result["matched"] == true ? "every event matched" : "DIFFERENT"))
        for difference in result["differences"]?.arrayValue ?? [] {
            print(
                "  \(difference["opId"]?.stringValue ?? "") \(difference["field"]?.stringValue ?? ""): expected \(difference["expected"] ?? .null), got \(difference["actual"] ?? .null)"
            )
        }
        if result["matched"] != true { throw ExitCode(1) }
    }
}
