import ArgumentParser
import SpacesEngine

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Work with spaces' audit logs.", subcommands: [Verify.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a space's hash-chained audit log: every entry parses, follows and hashes right.")

        @Argument(help: "The space's id (sp_…).")
        var spaceId: String

        @Option(help: "The state directory (default: $XDG_DATA_HOME/agent-spaces or ~/.local/share/agent-spaces).")
        var stateDir: String?

        func run() throws {
            let directory = EngineConfiguration(stateDirectory: stateDir).stateDirectory
            guard let result = Engine.verifyAuditFile(stateDirectory: directory, spaceId: spaceId) else {
                print("no audit log for \(spaceId) in \(directory)/audit; check the id and --state-dir")
                throw ExitCode(2)
            }
            if result.ok {
                print("ok: \(result.entries) entries, the chain holds")
            } else {
                print(
                    "BROKEN at entry \(result.firstBadSeq ?? 0) of \(result.entries): it was changed, removed, "
                        + "reordered or cut short; entries before it are intact")
                throw ExitCode(1)
            }
        }
    }
}
