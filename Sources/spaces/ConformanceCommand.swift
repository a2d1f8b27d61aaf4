import ArgumentParser
import SpacesConformance
import SpacesProtocol

#if canImport(Glibc)
    import Glibc
#endif

struct Conformance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the golden conformance cases against an engine, through its stdin and stdout.")

    @Option(
        help: """
            The engine to check, as a shell command; {stateDir} becomes a fresh state directory per case. \
            Default: this binary's `serve --state-dir {stateDir}`.
            """)
    var engine: String?

    @Option(help: "The folder of *.case files.")
    var fixtures: String = "Fixtures/conformance"

    @Option(help: "The protocol's JSON Schema; every message the engine writes is validated against it.")
    var schema: String = "Schemas/protocol.schema.json"

    @Flag(help: "Do not validate messages against the schema.")
    var noSchema = false

    @Option(help: "Run only the cases whose name contains this text.")
    var filter: String?

    @Option(help: "How long to wait for each expected message, in milliseconds.")
    var timeoutMs: Int = 20_000

    func run() throws {
        let command =
            engine ?? "\(Self.shellQuote(Self.currentExecutable())) serve --state-dir {stateDir} --log-level warning"
        var fixtureList = try FixtureLoader.load(directory: fixtures)
        if let filter { fixtureList = fixtureList.filter { $0.name.contains(filter) } }
        guard !fixtureList.isEmpty else {
            throw ValidationError("no cases found in \(fixtures)\(filter.map { " matching '\($0)'" } ?? "")")
        }
        let validator = noSchema ? nil : try ConformanceSuite.schemaValidator(path: schema)
        let runner = ConformanceRunner(engineCommand: command, timeoutMs: timeoutMs, validator: validator)
        var passed = 0
        var failed = 0
        var messages = 0
        for fixture in fixtureList {
            let result = runner.run(fixture)
            messages += result.messagesChecked
            if result.passed {
                passed += 1
                print("ok   \(fixture.name) (\(result.durationMs) ms)")
            } else {
                failed += 1
                print("FAIL \(fixture.name): \(result.failure ?? "")")
            }
        }
        print("\(messages) engine messages matched" + (noSchema ? "" : " and validated against \(schema)"))
        print("conformance: \(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }

    static func currentExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "spaces"
    }

    static func shellQuote(_ text: String) -> String {
        "'" + text.replacingAll("'", with: "'\\''") + "'"
    }
}
