import ArgumentParser
import Logging
import SpacesConformance
import SpacesProtocol
import SpacesServer

/// `spaces serve` options for the Model Context Protocol face.
struct MCPOptions: ParsableArguments {
    @Flag(
        help:
            "Speak the Model Context Protocol on stdin/stdout instead of the engine protocol: the session gets one space and its tools."
    )
    var mcp = false

    @Option(
        help: ArgumentHelp(
            "A JSON file holding spaces/create params for an MCP session's space (name, policy, workspace, secrets, capabilities, limits).",
            valueName: "file"))
    var spaceConfig: String?

    @Option(
        name: .customLong("policy"),
        help: ArgumentHelp(
            "The policy preset of an MCP session's space (default, strict, open); replaces the one in --space-config.",
            valueName: "name"))
    var policyPreset: String?

    /// The `spaces/create` params an MCP session's space is made with.
    func spaceParams() throws(ValidationError) -> [String: JSONValue] {
        var params: [String: JSONValue] = ["name": "mcp-session"]
        if let spaceConfig {
            guard let text = FixtureLoader.readFile(spaceConfig) else {
                throw ValidationError("--space-config: cannot read \(spaceConfig)")
            }
            let value: JSONValue
            do {
                value = try JSONValue.parse(text)
            } catch {
                throw ValidationError("--space-config: \(spaceConfig) is not JSON: \(error)")
            }
            guard case .object(let members) = value else {
                throw ValidationError(
                    "--space-config: \(spaceConfig) must hold a JSON object of spaces/create params, not \(value.typeName)"
                )
            }
            params.merge(members) { $1 }
        }
        if let policyPreset { params["policy"] = .string(policyPreset) }
        return params
    }

    /// Hands the settings to the server; the space itself is created when a session initializes.
    func configure(_ server: StdioServer) throws(ValidationError) {
        server.configureMCP(spaceParams: try spaceParams(), always: mcp)
    }
}
