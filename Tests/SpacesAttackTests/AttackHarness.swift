import SpacesConformance
import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A real engine (the `spaces` binary built beside this test bundle) on a fresh state directory, driven through
/// its stdin and stdout like any client.
final class AttackEngine {
    let client: EngineClient
    let process: EngineProcess
    let stateDir: String

    /// The built `spaces` executable: `SPACES_BIN`, else beside the test bundle.
    static var binary: String {
        if let explicit = getenv("SPACES_BIN") { return String(cString: explicit) }
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        var directory = String(decoding: buffer[0..<max(0, count)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        for _ in 0..<4 {
            directory = String(directory[..<(directory.lastIndex(of: "/") ?? directory.endIndex)])
            if access(directory + "/spaces", X_OK) == 0 { return directory + "/spaces" }
        }
        return "spaces"
    }

    init(arguments: [String] = []) throws {
        var template = Array("/tmp/spaces-attack-XXXXXX".utf8CString)
        stateDir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        process = try EngineProcess(
            arguments: [Self.binary, "serve", "--state-dir", stateDir + "/state", "--log-level", "warning"] + arguments,
            logPath: stateDir + "/engine.log")
        client = EngineClient(process: process, timeoutMs: 60_000)
        try client.call("initialize", ["protocolVersion": "0.1"])
    }

    deinit {
        process.closeInput()
        _ = process.waitForExit(timeoutMs: 20_000)
        _ = system("rm -rf '\(stateDir)'")
    }

    func createSpace(_ params: JSONValue = .object([:])) throws -> String {
        try client.call("spaces/create", params)["spaceId"]?.stringValue ?? ""
    }

    /// Submits operations and returns the batch result.
    func submit(_ spaceId: String, _ operations: [JSONValue], extra: [String: JSONValue] = [:]) throws -> JSONValue {
        var params = extra
        params["spaceId"] = .string(spaceId)
        params["operations"] = .array(operations)
        return try client.call("operations/submit", .object(params))
    }

    /// Runs a shell command in the space and returns its `command.exited` event (or the failure event).
    func shell(_ spaceId: String, _ command: String, timeoutMs: Int = 20_000) throws -> JSONValue {
        let result = try submit(
            spaceId, [["kind": "command.run", "command": .string(command), "timeoutMs": JSONValue(timeoutMs)]])
        let events = result["events"]?.arrayValue ?? []
        return events.first { $0["type"] == "command.exited" } ?? events.last ?? .null
    }

    /// Runs a TypeScript program in the space and returns its `command.exited` event.
    func typescript(_ spaceId: String, _ source: String, timeoutMs: Int = 20_000) throws -> JSONValue {
        let result = try submit(
            spaceId,
            [["kind": "code.run", "language": "typescript", "source": .string(source), "timeoutMs": JSONValue(timeoutMs)]])
        let events = result["events"]?.arrayValue ?? []
        return events.first { $0["type"] == "command.exited" } ?? events.last ?? .null
    }
}

/// Files on the host an attack must not reach or change.
enum Host {
    static func read(_ path: String) -> String? { FixtureLoader.readFile(path) }
}

@Suite("Attacks: host files (needs user namespaces)")
struct HostFileAttacks {
    @Test("/etc/shadow of the host cannot be read from a command")
    func shadowIsNotVisible() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "cat /etc/shadow")
        #expect(exited["exitCode"] != 0)
        #expect(exited["stderr"]?.stringValue?.contains("No such file") == true)
        #expect(exited["stdout"] == "")
    }
}
