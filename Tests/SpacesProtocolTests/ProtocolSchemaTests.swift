import Foundation
import SpacesProtocol
import Testing

/// `Schemas/protocol.schema.json`, read from the package this file belongs to.
enum SchemaFile {
    static let loaded: Result<JSONValue, any Error> = Result {
        try JSONValue.parse(try packageFile("Schemas/protocol.schema.json"))
    }

    static func document() throws -> JSONValue { try loaded.get() }

    static func schema() throws -> ProtocolSchema { ProtocolSchema(document: try document()) }

    struct NotFound: Error, CustomStringConvertible {
        var description: String { "no Package.swift above \(#filePath)" }
    }

    /// A file of the package, by its path from the package root (the nearest directory above this source file
    /// that holds `Package.swift`).
    static func packageFile(_ relativePath: String) throws -> Data {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
            let parent = directory.deletingLastPathComponent()
            guard parent.path != directory.path else { throw NotFound() }
            directory = parent
        }
        return try Data(contentsOf: directory.appendingPathComponent(relativePath))
    }
}

/// Every `$ref` string anywhere in a value.
private func references(in value: JSONValue) -> [String] {
    switch value {
    case .object(let members):
        var found = members["$ref"]?.stringValue.map { [$0] } ?? []
        for (key, member) in members where key != "$ref" { found += references(in: member) }
        return found
    case .array(let elements): return elements.flatMap(references(in:))
    default: return []
    }
}

private let space = """
    {"spaceId": "sp_0123456789abcdef", "name": "demo", "state": "idle",
     "policy": {
       "preset": "default",
       "filesystem": {"read": ["**"], "write": ["**"], "ask": [], "deny": ["**/.env"]},
       "commands": {"default": "allow", "allow": [], "ask": ["git push *"], "deny": []},
       "network": {"default": "deny", "allow": [], "ask": []},
       "capabilities": {"default": "allow", "effects": {"destructive": "ask"}, "allow": [], "ask": [], "deny": []},
       "limits": {"memoryMiB": 1024, "processes": 256, "timeoutMs": 120000, "outputBytes": 1048576, "diskMiB": 1024},
       "approvalTimeoutMs": 600000},
     "workspace": {"root": "/workspace"}, "createdAt": "2026-11-26T00:17:12.123Z",
     "capabilities": [{"name": "crm", "description": "Customer records", "handler": "client", "methods": ["delete", "search"]},
                      {"name": "files", "handler": "mcp", "methods": ["read-file"]}]}
    """

/// A capability as `spaces/addCapability` answers it: every method with its effect, the handler with its timeout.
private let storedCapability = """
    {"name": "weather", "description": "Forecasts",
     "methods": {"today": {"effect": "read", "params": {"type": "object", "properties": {"city": {"type": "string"}}},
                           "http": {"method": "GET", "path": "/today/{city}"}},
                 "alert-clear": {"effect": "destructive", "description": "Clears alerts", "result": true}},
     "handler": {"kind": "http", "baseUrl": "https://api.example.com/v1",
                 "headers": {"Authorization": "Bearer ${secret:TOKEN}"}, "timeoutMs": 30000}}
    """

private let allOperations = """
    [{"kind": "file.write", "id": "w", "path": "notes/a.txt", "content": "aGk=", "encoding": "base64", "mode": 420,
      "expectSha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
     {"kind": "file.read", "path": "/workspace/notes/a.txt", "encoding": "utf8", "offset": 0, "length": 10},
     {"kind": "file.edit", "path": "a.txt", "edits": [{"oldText": "a", "newText": ""}, {"oldText": "b", "newText": "c", "replaceAll": true}]},
     {"kind": "file.delete", "path": "tmp", "recursive": true},
     {"kind": "file.list"},
     {"kind": "file.list", "path": ".", "recursive": true, "maxEntries": 100000},
     {"kind": "file.move", "from": "a.txt", "to": "b/a.txt"},
     {"kind": "command.run", "argv": ["ls", "-l"], "cwd": "src", "env": {"A_B": "1"}, "stdin": "", "timeoutMs": 3600000,
      "secrets": ["GITHUB_TOKEN"], "stdoutTo": "out.log", "stderrTo": "err.log"},
     {"kind": "command.run", "command": "ls | wc -l"},
     {"kind": "code.run", "language": "typescript", "source": "console.log(1)", "args": ["x"], "env": {}, "timeoutMs": 5},
     {"kind": "code.run", "language": "typescript", "path": "main.ts", "secrets": ["K"]}]
    """

private let allEvents = """
    [{"seq": 1, "batchId": "b_0123456789abcdef", "opId": "op_1", "type": "operation.started", "at": "2026-11-26T00:17:12.123Z", "kind": "command.run"},
     {"seq": 2, "batchId": "b_0123456789abcdef", "opId": "op_1", "type": "command.output", "at": "2026-11-26T00:17:12.124Z", "stream": "stdout", "data": "hi\\n"},
     {"seq": 3, "batchId": "b_0123456789abcdef", "opId": "op_1", "type": "command.exited", "at": "2026-11-26T00:17:12.125Z",
      "exitCode": null, "signal": "SIGKILL", "timedOut": true, "cancelled": false, "durationMs": 5, "stdout": "hi\\n", "stderr": "",
      "stdoutBytes": 3, "stderrBytes": 0, "truncated": false},
     {"seq": 4, "batchId": "b_0123456789abcdef", "opId": "op_1", "type": "operation.failed", "at": "2026-11-26T00:17:12.126Z",
      "error": {"code": "TIMEOUT", "message": "timed out after 5 ms", "hint": "raise timeoutMs"}},
     {"seq": 5, "batchId": "b_0123456789abcdef", "opId": "w", "type": "file.written", "at": "2026-11-26T00:17:12.126Z",
      "path": "notes/a.txt", "bytes": 2, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
     {"seq": 6, "batchId": "b_0123456789abcdef", "opId": "r", "type": "file.content", "at": "2026-11-26T00:17:12.126Z",
      "path": "a", "content": "x", "encoding": "utf8", "bytes": 1, "size": 1, "truncated": false},
     {"seq": 7, "batchId": "b_0123456789abcdef", "opId": "e", "type": "file.edited", "at": "2026-11-26T00:17:12.126Z",
      "path": "a", "replacements": 2, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
     {"seq": 8, "batchId": "b_0123456789abcdef", "opId": "d", "type": "file.deleted", "at": "2026-11-26T00:17:12.126Z", "path": "a"},
     {"seq": 9, "batchId": "b_0123456789abcdef", "opId": "l", "type": "file.listing", "at": "2026-11-26T00:17:12.126Z",
      "path": ".", "entries": [{"path": "a", "type": "file", "size": 1}, {"path": "d", "type": "directory", "size": 0}], "truncated": false},
     {"seq": 10, "batchId": "b_0123456789abcdef", "opId": "m", "type": "file.moved", "at": "2026-11-26T00:17:12.126Z", "from": "a", "to": "b"},
     {"seq": 11, "batchId": "b_0123456789abcdef", "opId": "x", "type": "policy.denied", "at": "2026-11-26T00:17:12.126Z",
      "rule": "workspace.boundary", "reason": "../etc/passwd leaves the workspace", "suggestion": "use a path inside /workspace"},
     {"seq": 12, "batchId": "b_0123456789abcdef", "opId": "x", "type": "operation.completed", "at": "2026-11-26T00:17:12.126Z", "durationMs": 0},
     {"seq": 13, "batchId": "b_0123456789abcdef", "opId": "p", "type": "approval.requested", "at": "2026-11-26T00:17:12.126Z",
      "approvalId": "ap_0123456789abcdef", "title": "git push", "what": "run `git push origin main`",
      "why": "commands.ask: git push *", "impact": "changes a remote repository", "options": ["allow_once", "allow_for_space", "deny"]},
     {"seq": 14, "batchId": "b_0123456789abcdef", "opId": "p", "type": "approval.resolved", "at": "2026-11-26T00:17:12.126Z",
      "approvalId": "ap_0123456789abcdef", "decision": "deny", "by": "timeout"},
     {"seq": 15, "batchId": "b_0123456789abcdef", "opId": "p", "type": "output.redacted", "at": "2026-11-26T00:17:12.126Z", "count": 1},
     {"seq": 16, "batchId": "b_0123456789abcdef", "opId": "c", "type": "capability.called", "at": "2026-11-26T00:17:12.126Z",
      "capability": "crm", "method": "search", "durationMs": 12, "ok": true, "bytes": 20480},
     {"seq": 17, "batchId": "b_0123456789abcdef", "opId": "c", "type": "capability.called", "at": "2026-11-26T00:17:12.127Z",
      "capability": "crm", "method": "delete", "durationMs": 3, "ok": false,
      "error": {"code": "DENIED", "message": "crm.delete matches capabilities.deny \\"crm.delete\\"", "hint": "remove it"}}]
    """

/// Messages that must pass: what to check them as, and the JSON text.
private let validRequests: [String] = [
    #"{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "0.1", "client": {"name": "my-harness", "version": "1.0"}, "capabilities": {"streaming": true, "capabilityHandlers": true}}}"#,
    #"{"jsonrpc": "2.0", "id": "a", "method": "initialize", "params": {"protocolVersion": "0.1"}}"#,
    #"{"jsonrpc": "2.0", "id": 2, "method": "shutdown"}"#,
    #"{"jsonrpc": "2.0", "id": 2, "method": "shutdown", "params": {}}"#,
    #"{"jsonrpc": "2.0", "id": 3, "method": "spaces/create"}"#,
    #"{"jsonrpc": "2.0", "id": 3, "method": "spaces/create", "params": {"name": "demo-1.x_y", "policy": "strict"}}"#,
    """
    {"jsonrpc": "2.0", "id": 3, "method": "spaces/create", "params": {
      "policy": {"commands": {"ask": ["git push *"]}, "limits": {"timeoutMs": 1000}, "approvalTimeoutMs": 5000},
      "workspace": {"files": {"README.md": "# hi\\n", "src/a b.ts": ""}, "copyFrom": "/srv/template"},
      "secrets": {"GITHUB_TOKEN": {"env": "GH_TOKEN"}, "api_key": {"file": "/run/secrets/key"}},
      "capabilities": [{"name": "crm", "description": "Customer records",
        "methods": {"search": {"description": "find", "params": {"type": "object"}, "result": true}},
        "handler": {"kind": "client"}},
        {"name": "weather", "methods": {"today": {"effect": "read", "http": {"method": "GET", "path": "/today/{city}"}}},
         "handler": {"kind": "http", "baseUrl": "https://api.example.com", "headers": {"Authorization": "Bearer ${secret:api_key}", "Accept": "application/json"}, "timeoutMs": 5000}},
        {"name": "files", "handler": {"kind": "mcp", "command": ["mcp-files", "--root", "/srv"], "env": {"TOKEN": "${secret:api_key}"}, "cwd": "/srv", "timeoutMs": 600000}}],
      "limits": {"memoryMiB": 512}}}
    """,
    #"{"jsonrpc": "2.0", "id": 4, "method": "spaces/list", "params": {}}"#,
    #"{"jsonrpc": "2.0", "id": 5, "method": "spaces/get", "params": {"spaceId": "sp_0123456789abcdef"}}"#,
    #"{"jsonrpc": "2.0", "id": 6, "method": "spaces/destroy", "params": {"spaceId": "sp_0123456789abcdef", "keepWorkspace": true}}"#,
    #"{"jsonrpc": "2.0", "id": 7, "method": "runs/start", "params": {"spaceId": "sp_0123456789abcdef", "label": "fix bug", "metadata": {"ticket": 12}}}"#,
    #"{"jsonrpc": "2.0", "id": 8, "method": "runs/end", "params": {"runId": "run_0123456789abcdef", "status": "failed"}}"#,
    """
    {"jsonrpc": "2.0", "id": 9, "method": "operations/submit", "params": {"spaceId": "sp_0123456789abcdef",
     "runId": "run_0123456789abcdef", "onError": "continue", "stream": true, "dryRun": false, "idempotencyKey": "k-1",
     "operations": \(allOperations)}}
    """,
    #"{"jsonrpc": "2.0", "id": 10, "method": "operations/cancel", "params": {"batchId": "b_0123456789abcdef"}}"#,
    #"{"jsonrpc": "2.0", "id": 11, "method": "spaces/updatePolicy", "params": {"spaceId": "sp_0123456789abcdef", "policy": "open"}}"#,
    #"{"jsonrpc": "2.0", "id": 11, "method": "spaces/updatePolicy", "params": {"spaceId": "sp_0123456789abcdef", "policy": {"capabilities": {"default": "allow", "effects": {"write": "ask", "destructive": "deny"}, "ask": ["crm.export*"]}}}}"#,
    #"{"jsonrpc": "2.0", "id": 18, "method": "spaces/addCapability", "params": {"spaceId": "sp_0123456789abcdef", "capability": \#(storedCapability)}}"#,
    #"{"jsonrpc": "2.0", "id": 18, "method": "spaces/addCapability", "params": {"spaceId": "sp_0123456789abcdef", "capability": {"name": "crm", "methods": {"search": {}}, "handler": {"kind": "client", "timeoutMs": 1}}}}"#,
    #"{"jsonrpc": "2.0", "id": 12, "method": "approvals/resolve", "params": {"approvalId": "ap_0123456789abcdef", "decision": "allow_for_space", "note": "ok"}}"#,
    #"{"jsonrpc": "2.0", "id": 13, "method": "approvals/list", "params": {}}"#,
    #"{"jsonrpc": "2.0", "id": 14, "method": "grants/revoke", "params": {"grantId": "gr_0123456789abcdef"}}"#,
    #"{"jsonrpc": "2.0", "id": 15, "method": "audit/read", "params": {"spaceId": "sp_0123456789abcdef", "afterSeq": 0, "limit": 10}}"#,
    #"{"jsonrpc": "2.0", "id": 16, "method": "tools/call", "params": {"spaceId": "sp_0123456789abcdef", "name": "read_file", "arguments": {"path": "a"}}}"#,
    #"{"jsonrpc": "2.0", "id": 17, "method": "runs/replay", "params": {"runId": "run_0123456789abcdef", "into": "new"}}"#,
    #"{"jsonrpc": "2.0", "id": "e-1", "method": "capabilities/invoke", "params": {"spaceId": "sp_0123456789abcdef", "capability": "crm", "method": "search", "params": {"q": "acme"}}}"#,
]

private let validResponses: [(method: String?, json: String)] = [
    (
        "initialize",
        """
        {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "0.1", "engine": {"name": "agent-spaces", "version": "0.1.0"},
         "runtimes": [{"language": "typescript", "runtime": "bun", "version": "1.4.4"}],
         "isolation": {"user": true, "mount": true, "pid": true, "net": true, "ipc": true, "uts": true, "seccomp": true,
                       "capabilitiesDropped": true, "cgroup": "none"},
         "limits": {"maxLineBytes": 16777216, "outputBytes": 1048576, "maxOperationsPerBatch": 1000},
         "stateDir": "/root/.local/state/agent-spaces"}}
        """
    ),
    ("shutdown", #"{"jsonrpc": "2.0", "id": 2, "result": {}}"#),
    ("spaces/create", #"{"jsonrpc": "2.0", "id": 3, "result": \#(space)}"#),
    ("spaces/list", #"{"jsonrpc": "2.0", "id": 4, "result": {"spaces": [\#(space), \#(space)]}}"#),
    (
        "spaces/get",
        #"{"jsonrpc": "2.0", "id": 5, "result": \#(space.dropLast()), "stats": {"operations": 3, "batches": 1, "lastSeq": 9, "workerStarts": 1, "workerRunning": true, "bytes": 120, "processes": 1}}}"#
    ),
    (
        "spaces/destroy",
        #"{"jsonrpc": "2.0", "id": 6, "result": {"destroyed": true, "spaceId": "sp_0123456789abcdef"}}"#
    ),
    (
        "spaces/destroy",
        #"{"jsonrpc": "2.0", "id": 6, "result": {"destroyed": true, "spaceId": "sp_0123456789abcdef", "workspacePath": "/var/lib/spaces/sp_0123456789abcdef/workspace"}}"#
    ),
    (
        "runs/start",
        #"{"jsonrpc": "2.0", "id": 7, "result": {"runId": "run_0123456789abcdef", "spaceId": "sp_0123456789abcdef", "label": "fix bug", "startedAt": "2026-11-26T00:17:12.123Z"}}"#
    ),
    (
        "runs/end",
        """
        {"jsonrpc": "2.0", "id": 8, "result": {"runId": "run_0123456789abcdef", "spaceId": "sp_0123456789abcdef",
         "status": "succeeded", "startedAt": "2026-11-26T00:17:12.123Z", "endedAt": "2026-11-26T00:18:00.000Z",
         "durationMs": 47877, "operations": {"total": 4, "succeeded": 2, "failed": 2, "denied": 1},
         "artifacts": ["notes/a.txt", "out.log"]}}
        """
    ),
    (
        "operations/submit",
        #"{"jsonrpc": "2.0", "id": 9, "result": {"batchId": "b_0123456789abcdef", "status": "stopped", "events": \#(allEvents)}}"#
    ),
    (
        "operations/submit",
        """
        {"jsonrpc": "2.0", "id": 9, "result": {"batchId": "b_0123456789abcdef", "status": "completed", "events": [],
         "decisions": [{"opId": "op_1", "decision": "allow", "rule": "commands.default", "reason": "commands are allowed", "suggestion": ""},
                       {"opId": "op_2", "decision": "deny", "rule": "workspace.boundary", "reason": "outside", "suggestion": "use a workspace path"}]}}
        """
    ),
    (
        "operations/cancel",
        #"{"jsonrpc": "2.0", "id": 10, "result": {"cancelled": true, "batchId": "b_0123456789abcdef"}}"#
    ),
    (
        "operations/submit",
        #"{"jsonrpc": "2.0", "id": 11, "error": {"code": -32602, "message": "params.operations[0].path: expected a string, got number", "data": {"hint": "send a path", "field": "params.operations[0].path"}}}"#
    ),
    (
        nil,
        #"{"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "invalid JSON at byte 3", "data": {"hint": "send one JSON value per line"}}}"#
    ),
    ("capabilities/invoke", #"{"jsonrpc": "2.0", "id": "e-1", "result": [{"id": 1}]}"#),
    (
        "spaces/addCapability",
        #"{"jsonrpc": "2.0", "id": 18, "result": {"spaceId": "sp_0123456789abcdef", "capability": \#(storedCapability), "declarations": ".spaces/capabilities.d.ts"}}"#
    ),
    (
        "spaces/frobnicate",
        #"{"jsonrpc": "2.0", "id": 3, "error": {"code": -32601, "message": "unknown method 'spaces/frobnicate'", "data": {"hint": "check the spelling", "field": "method"}}}"#
    ),
    ("spaces/list", #"{"jsonrpc": "2.0", "id": null, "result": {"spaces": []}}"#),
    ("capabilities/invoke", #"{"jsonrpc": "2.0", "id": "e-1", "error": {"code": 17, "message": "CRM is down"}}"#),
]

private let validNotifications: [String] = [
    #"{"jsonrpc": "2.0", "method": "events/emitted", "params": {"spaceId": "sp_0123456789abcdef", "batchId": "b_0123456789abcdef", "event": {"seq": 1, "batchId": "b_0123456789abcdef", "opId": "op_1", "type": "operation.completed", "at": "2026-11-26T00:17:12.123Z", "durationMs": 3}}}"#,
    #"{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9, "reason": "user pressed stop"}}"#,
    #"{"jsonrpc": "2.0", "method": "log/message", "params": {"level": "warning", "message": "running without isolation"}}"#,
]

/// A message that must fail, and the first violation's path and a piece of its message.
struct InvalidMessage: Sendable, CustomTestStringConvertible {
    enum Check: Sendable {
        case request
        case response(String?)
        case notification
    }

    var name: String
    var check: Check
    var json: String
    var path: String
    var message: String

    var testDescription: String { name }
}

private func submit(_ operations: String, extra: String = "") -> String {
    #"{"jsonrpc": "2.0", "id": 1, "method": "operations/submit", "params": {"spaceId": "sp_0123456789abcdef"\#(extra), "operations": \#(operations)}}"#
}

private func create(_ params: String) -> String {
    #"{"jsonrpc": "2.0", "id": 1, "method": "spaces/create", "params": \#(params)}"#
}

private func result(_ result: String, id: Int = 1) -> String {
    #"{"jsonrpc": "2.0", "id": \#(id), "result": \#(result)}"#
}

private func event(_ fields: String, seq: Int = 1, type: String = "operation.completed") -> String {
    #"{"seq": \#(seq), "batchId": "b_0123456789abcdef", "opId": "op_1", "type": "\#(type)", "at": "2026-11-26T00:17:12.123Z"\#(fields)}"#
}

let invalidMessages: [InvalidMessage] = [
    InvalidMessage(
        name: "unknown operation field", check: .request,
        json: submit(#"[{"kind": "file.write", "path": "a", "content": "x", "foo": 1}]"#),
        path: "params.operations[0].foo",
        message: "unknown property 'foo' (allowed: content, encoding, expectSha256, id, kind, mode, path)"),
    InvalidMessage(
        name: "operation field of the wrong type", check: .request,
        json: submit(#"[{"kind": "file.read", "path": 7}]"#),
        path: "params.operations[0].path", message: "expected string, got number"),
    InvalidMessage(
        name: "unknown operation kind", check: .request,
        json: submit(#"[{"kind": "file.list"}, {"kind": "file.copy", "from": "a", "to": "b"}]"#),
        path: "params.operations[1].kind", message: #"unknown kind "file.copy" (expected one of "file.write""#),
    InvalidMessage(
        name: "operation without kind", check: .request, json: submit(#"[{"path": "a"}]"#),
        path: "params.operations[0].kind", message: "missing required property 'kind'"),
    InvalidMessage(
        name: "argv and command", check: .request,
        json: submit(#"[{"kind": "command.run", "argv": ["ls"], "command": "ls"}]"#),
        path: "params.operations[0]", message: "matches argv (a program and its arguments) and command (a shell string)"
    ),
    InvalidMessage(
        name: "neither argv nor command", check: .request, json: submit(#"[{"kind": "command.run", "cwd": "src"}]"#),
        path: "params.operations[0]", message: "missing required property 'argv'"),
    InvalidMessage(
        name: "argv with an empty program", check: .request, json: submit(#"[{"kind": "command.run", "argv": [""]}]"#),
        path: "params.operations[0].argv[0]", message: "expected at least 1 character, got 0"),
    InvalidMessage(
        name: "code.run without language", check: .request, json: submit(#"[{"kind": "code.run", "source": "1"}]"#),
        path: "params.operations[0].language", message: "missing required property 'language'"),
    InvalidMessage(
        name: "code.run with cwd", check: .request,
        json: submit(#"[{"kind": "code.run", "language": "typescript", "path": "a.ts", "cwd": "x"}]"#),
        path: "params.operations[0].cwd", message: "unknown property 'cwd'"),
    InvalidMessage(
        name: "env value that is not a string", check: .request,
        json: submit(#"[{"kind": "command.run", "command": "env", "env": {"X": 1}}]"#),
        path: "params.operations[0].env.X", message: "expected string, got number"),
    InvalidMessage(
        name: "mode out of range", check: .request,
        json: submit(#"[{"kind": "file.write", "path": "a", "content": "", "mode": 4096}]"#),
        path: "params.operations[0].mode", message: "expected a number <= 4095, got 4096"),
    InvalidMessage(
        name: "expectSha256 in capitals", check: .request,
        json: submit(
            #"[{"kind": "file.write", "path": "a", "content": "", "expectSha256": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"}]"#
        ),
        path: "params.operations[0].expectSha256", message: "expected a string matching ^[0-9a-f]{64}$"),
    InvalidMessage(
        name: "empty edits", check: .request, json: submit(#"[{"kind": "file.edit", "path": "a", "edits": []}]"#),
        path: "params.operations[0].edits", message: "expected at least 1 item, got 0"),
    InvalidMessage(
        name: "empty oldText", check: .request,
        json: submit(#"[{"kind": "file.edit", "path": "a", "edits": [{"oldText": "", "newText": "x"}]}]"#),
        path: "params.operations[0].edits[0].oldText", message: "expected at least 1 character, got 0"),
    InvalidMessage(
        name: "timeout too long", check: .request,
        json: submit(#"[{"kind": "command.run", "command": "sleep 9", "timeoutMs": 3600001}]"#),
        path: "params.operations[0].timeoutMs", message: "expected a number <= 3600000"),
    InvalidMessage(
        name: "no operations", check: .request, json: submit("[]"),
        path: "params.operations", message: "expected at least 1 item, got 0"),
    InvalidMessage(
        name: "too many operations", check: .request,
        json: submit("[" + Array(repeating: #"{"kind": "file.list"}"#, count: 1001).joined(separator: ",") + "]"),
        path: "params.operations", message: "expected at most 1000 items, got 1001"),
    InvalidMessage(
        name: "unknown onError", check: .request, json: submit("[]", extra: #", "onError": "ignore""#),
        path: "params.onError", message: #"expected one of "stop", "continue", got "ignore""#),
    InvalidMessage(
        name: "bad spaceId", check: .request,
        json: #"{"jsonrpc": "2.0", "id": 1, "method": "spaces/get", "params": {"spaceId": "demo"}}"#,
        path: "params.spaceId", message: "expected a string matching ^sp_[0-9a-f]{16}$"),
    InvalidMessage(
        name: "missing spaceId", check: .request,
        json: #"{"jsonrpc": "2.0", "id": 1, "method": "spaces/destroy"}"#,
        path: "params.spaceId", message: "missing required property 'spaceId'"),
    InvalidMessage(
        name: "params must be an object", check: .request,
        json: #"{"jsonrpc": "2.0", "id": 1, "method": "spaces/list", "params": []}"#,
        path: "params", message: "expected object, got array"),
    InvalidMessage(
        name: "unknown params field", check: .request,
        json: #"{"jsonrpc": "2.0", "id": 1, "method": "spaces/list", "params": {"verbose": true}}"#,
        path: "params.verbose", message: "unknown property 'verbose' (no properties are allowed here)"),
    InvalidMessage(
        name: "unknown method", check: .request, json: #"{"jsonrpc": "2.0", "id": 1, "method": "spaces/nuke"}"#,
        path: "method", message: "unknown method 'spaces/nuke' (known: "),
    InvalidMessage(
        name: "missing jsonrpc", check: .request, json: #"{"id": 1, "method": "spaces/list"}"#,
        path: "jsonrpc", message: "missing required property 'jsonrpc'"),
    InvalidMessage(
        name: "wrong jsonrpc", check: .request, json: #"{"jsonrpc": "1.0", "id": 1, "method": "spaces/list"}"#,
        path: "jsonrpc", message: #"expected "2.0", got "1.0""#),
    InvalidMessage(
        name: "null id", check: .request, json: #"{"jsonrpc": "2.0", "id": null, "method": "spaces/list"}"#,
        path: "id", message: "expected string or integer, got null"),
    InvalidMessage(
        name: "fractional id", check: .request, json: #"{"jsonrpc": "2.0", "id": 1.5, "method": "spaces/list"}"#,
        path: "id", message: "expected string or integer, got number 1.5"),
    InvalidMessage(
        name: "a batch is not a request", check: .request, json: "[]",
        path: "", message: "expected a request object, got array"),
    InvalidMessage(
        name: "name too long", check: .request, json: create(#"{"name": "\#(String(repeating: "a", count: 64))"}"#),
        path: "params.name", message: "expected a string matching"),
    InvalidMessage(
        name: "unknown policy preset", check: .request, json: create(#"{"policy": "lenient"}"#),
        path: "params.policy", message: #"expected one of "default", "strict", "open", got "lenient""#),
    InvalidMessage(
        name: "unknown policy section", check: .request, json: create(#"{"policy": {"shell": {}}}"#),
        path: "params.policy.shell", message: "unknown property 'shell' (allowed: approvalTimeoutMs, capabilities"),
    InvalidMessage(
        name: "policy limit out of range", check: .request, json: create(#"{"policy": {"limits": {"timeoutMs": 0}}}"#),
        path: "params.policy.limits.timeoutMs", message: "expected a number >= 1, got 0"),
    InvalidMessage(
        name: "policy decision", check: .request, json: create(#"{"policy": {"network": {"default": "maybe"}}}"#),
        path: "params.policy.network.default", message: #"expected one of "allow", "ask", "deny", got "maybe""#),
    InvalidMessage(
        name: "secret name", check: .request, json: create(#"{"secrets": {"1X": {"env": "X"}}}"#),
        path: #"params.secrets["1X"]"#, message: "property name '1X': expected a string matching"),
    InvalidMessage(
        name: "secret with env and file", check: .request,
        json: create(#"{"secrets": {"TOKEN": {"env": "X", "file": "/x"}}}"#),
        path: "params.secrets.TOKEN",
        message:
            "matches none of the 2 alternatives: (env) unknown property 'file' (allowed: env); (file) unknown property 'env' (allowed: file)"
    ),
    InvalidMessage(
        name: "capability handler kind", check: .request,
        json: create(#"{"capabilities": [{"name": "crm", "methods": {"a": {}}, "handler": {"kind": "grpc"}}]}"#),
        path: "params.capabilities[0].handler.kind",
        message: #"unknown kind "grpc" (expected one of "client", "http", "mcp")"#),
    InvalidMessage(
        name: "capability name", check: .request,
        json: create(#"{"capabilities": [{"name": "crm-api", "methods": {"a": {}}, "handler": {"kind": "client"}}]}"#),
        path: "params.capabilities[0].name", message: "expected a string matching ^[A-Za-z_][A-Za-z0-9_]*$"),
    InvalidMessage(
        name: "capability without methods", check: .request,
        json: create(#"{"capabilities": [{"name": "crm", "handler": {"kind": "client"}}]}"#),
        path: "params.capabilities[0].methods", message: "missing required property 'methods'"),
    InvalidMessage(
        name: "capability method effect", check: .request,
        json: create(
            #"{"capabilities": [{"name": "crm", "methods": {"a": {"effect": "harmless"}}, "handler": {"kind": "client"}}]}"#
        ),
        path: "params.capabilities[0].methods.a.effect",
        message: #"expected one of "read", "write", "destructive", got "harmless""#),
    InvalidMessage(
        name: "capability method schema", check: .request,
        json: create(
            #"{"capabilities": [{"name": "crm", "methods": {"a": {"params": 5}}, "handler": {"kind": "client"}}]}"#),
        path: "params.capabilities[0].methods.a.params", message: "expected object or boolean, got number"),
    InvalidMessage(
        name: "http header as a secret object", check: .request,
        json: create(
            #"{"capabilities": [{"name": "crm", "methods": {"a": {}}, "handler": {"kind": "http", "baseUrl": "https://x.example", "headers": {"Authorization": {"secret": "TOKEN"}}}}]}"#
        ),
        path: "params.capabilities[0].handler.headers.Authorization", message: "expected string, got object"),
    InvalidMessage(
        name: "capability handler timeout", check: .request,
        json: create(
            #"{"capabilities": [{"name": "crm", "methods": {"a": {}}, "handler": {"kind": "client", "timeoutMs": 600001}}]}"#
        ),
        path: "params.capabilities[0].handler.timeoutMs", message: "expected a number <= 600000"),
    InvalidMessage(
        name: "addCapability without capability", check: .request,
        json:
            #"{"jsonrpc": "2.0", "id": 1, "method": "spaces/addCapability", "params": {"spaceId": "sp_0123456789abcdef"}}"#,
        path: "params.capability", message: "missing required property 'capability'"),
    InvalidMessage(
        name: "capability.called without bytes", check: .response("operations/submit"),
        json: result(
            #"{"batchId": "b_0123456789abcdef", "status": "completed", "events": [\#(event(#", "capability": "crm", "method": "search", "durationMs": 1, "ok": true"#, type: "capability.called"))]}"#
        ),
        path: "result.events[0].bytes", message: "missing required property 'bytes'"),
    InvalidMessage(
        name: "capability.called error code", check: .response("operations/submit"),
        json: result(
            #"{"batchId": "b_0123456789abcdef", "status": "completed", "events": [\#(event(#", "capability": "crm", "method": "search", "durationMs": 1, "ok": false, "error": {"code": "ENOENT", "message": "m", "hint": "h"}"#, type: "capability.called"))]}"#
        ),
        path: "result.events[0].error.code", message: #"expected one of "DENIED""#),
    InvalidMessage(
        name: "runs/end status", check: .request,
        json:
            #"{"jsonrpc": "2.0", "id": 1, "method": "runs/end", "params": {"runId": "run_0123456789abcdef", "status": "done"}}"#,
        path: "params.status", message: #"expected one of "succeeded", "failed", "cancelled", got "done""#),
    InvalidMessage(
        name: "runs/replay with both sources", check: .request,
        json:
            #"{"jsonrpc": "2.0", "id": 1, "method": "runs/replay", "params": {"runId": "run_0123456789abcdef", "transcript": []}}"#,
        path: "params", message: "matches runId and transcript; expected exactly one"),

    InvalidMessage(
        name: "Space without createdAt", check: .response("spaces/create"),
        json: result(
            #"{"spaceId": "sp_0123456789abcdef", "name": "a", "state": "ready", "policy": {}, "workspace": {"root": "/workspace"}}"#
        ),
        path: "result.createdAt", message: "missing required property 'createdAt'"),
    InvalidMessage(
        name: "timestamp without milliseconds", check: .response("runs/start"),
        json: result(
            #"{"runId": "run_0123456789abcdef", "spaceId": "sp_0123456789abcdef", "startedAt": "2026-11-26T00:17:12Z"}"#
        ),
        path: "result.startedAt", message: "expected a string matching"),
    InvalidMessage(
        name: "event seq 0", check: .response("operations/submit"),
        json: result(
            #"{"batchId": "b_0123456789abcdef", "status": "completed", "events": [\#(event(#", "durationMs": 1"#, seq: 0))]}"#
        ),
        path: "result.events[0].seq", message: "expected a number >= 1, got 0"),
    InvalidMessage(
        name: "unknown event type", check: .response("operations/submit"),
        json: result(
            #"{"batchId": "b_0123456789abcdef", "status": "completed", "events": [\#(event("", type: "operation.paused"))]}"#
        ),
        path: "result.events[0].type", message: #"unknown type "operation.paused""#),
    InvalidMessage(
        name: "event with an extra field", check: .response("operations/submit"),
        json: result(
            #"{"batchId": "b_0123456789abcdef", "status": "completed", "events": [\#(event(#", "durationMs": 1, "spaceId": "x""#))]}"#
        ),
        path: "result.events[0].spaceId", message: "unknown property 'spaceId'"),
    InvalidMessage(
        name: "exitCode as a string", check: .response("operations/submit"),
        json: result(
            #"{"batchId": "b_0123456789abcdef", "status": "completed", "events": [\#(event(#", "exitCode": "0", "signal": null, "timedOut": false, "cancelled": false, "durationMs": 1, "stdout": "", "stderr": "", "stdoutBytes": 0, "stderrBytes": 0, "truncated": false"#, type: "command.exited"))]}"#
        ),
        path: "result.events[0].exitCode", message: "expected integer or null, got string"),
    InvalidMessage(
        name: "unknown operation error code", check: .response("operations/submit"),
        json: result(
            #"{"batchId": "b_0123456789abcdef", "status": "stopped", "events": [\#(event(#", "error": {"code": "EPERM", "message": "m", "hint": "h"}"#, type: "operation.failed"))]}"#
        ),
        path: "result.events[0].error.code", message: #"expected one of "ENOENT""#),
    InvalidMessage(
        name: "unknown batch status", check: .response("operations/submit"),
        json: result(#"{"batchId": "b_0123456789abcdef", "status": "done", "events": []}"#),
        path: "result.status", message: #"expected one of "completed", "stopped", "cancelled", "awaiting_approval""#),
    InvalidMessage(
        name: "error without data", check: .response("spaces/get"),
        json: #"{"jsonrpc": "2.0", "id": 1, "error": {"code": -32010, "message": "no space"}}"#,
        path: "error.data", message: "missing required property 'data'"),
    InvalidMessage(
        name: "error without hint", check: .response(nil),
        json: #"{"jsonrpc": "2.0", "id": 1, "error": {"code": -32010, "message": "no space", "data": {}}}"#,
        path: "error.data.hint", message: "missing required property 'hint'"),
    InvalidMessage(
        name: "unknown error code", check: .response(nil),
        json: #"{"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "m", "data": {"hint": "h"}}}"#,
        path: "error.code", message: "expected one of -32700, -32600"),
    InvalidMessage(
        name: "result and error", check: .response(nil),
        json:
            #"{"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": -32603, "message": "m", "data": {"hint": "h"}}}"#,
        path: "result", message: "unknown property 'result' (allowed: error, id, jsonrpc)"),
    InvalidMessage(
        name: "response to an unknown method", check: .response("spaces/nuke"), json: result("{}"),
        path: "", message: "unknown method 'spaces/nuke'"),
    InvalidMessage(
        name: "shutdown result with content", check: .response("shutdown"), json: result(#"{"bye": true}"#),
        path: "result.bye", message: "unknown property 'bye' (no properties are allowed here)"),

    InvalidMessage(
        name: "notification with an id", check: .notification,
        json: #"{"jsonrpc": "2.0", "id": 1, "method": "log/message", "params": {"level": "info", "message": "m"}}"#,
        path: "id", message: "unknown property 'id' (allowed: jsonrpc, method, params)"),
    InvalidMessage(
        name: "unknown notification", check: .notification, json: #"{"jsonrpc": "2.0", "method": "events/lost"}"#,
        path: "method", message: "unknown method 'events/lost'"),
    InvalidMessage(
        name: "log level", check: .notification,
        json: #"{"jsonrpc": "2.0", "method": "log/message", "params": {"level": "fatal", "message": "m"}}"#,
        path: "params.level", message: #"expected one of "debug", "info", "warning", "error", got "fatal""#),
    InvalidMessage(
        name: "emitted event with a bad batch id", check: .notification,
        json:
            #"{"jsonrpc": "2.0", "method": "events/emitted", "params": {"spaceId": "sp_0123456789abcdef", "batchId": "b_0123456789abcdef", "event": \#(event(#", "durationMs": -1"#))}}"#,
        path: "params.event.durationMs", message: "expected a number >= 0, got -1"),
]

@Suite("Protocol schema")
struct ProtocolSchemaTests {
    @Test func documentIsAJSONSchema() throws {
        let document = try SchemaFile.document()
        #expect(document["$schema"] == "https://json-schema.org/draft/2020-12/schema")
        #expect(document["$defs"]?.objectValue?.isEmpty == false)
    }

    @Test func everyReferenceResolves() throws {
        let document = try SchemaFile.document()
        let validator = JSONSchemaValidator(document: document)
        let found = references(in: document)
        #expect(found.count > 100)
        for reference in Set(found) {
            #expect(validator.resolve(reference) != nil, "unresolved \(reference)")
        }
        for table in ["x-methods", "x-notifications"] {
            for (name, entry) in document[table]?.objectValue ?? [:] {
                for key in ["params", "result"] {
                    guard let pointer = entry[key]?.stringValue else { continue }
                    #expect(validator.resolve(pointer) != nil, "\(table) \(name).\(key) → \(pointer)")
                }
            }
        }
    }

    /// Every definition is reachable from the message, method and notification tables.
    @Test func noOrphanDefinitions() throws {
        let document = try SchemaFile.document()
        let validator = JSONSchemaValidator(document: document)
        var pending = ["#/$defs/Message"]
        for table in ["x-methods", "x-notifications"] {
            for entry in document[table]?.objectValue?.values.map({ $0 }) ?? [] {
                pending += [entry["params"]?.stringValue, entry["result"]?.stringValue].compactMap { $0 }
            }
        }
        var seen: Set<String> = []
        while let pointer = pending.popLast() {
            guard seen.insert(pointer).inserted, let schema = validator.resolve(pointer) else { continue }
            pending += references(in: schema)
        }
        let defined = Set(document["$defs"]?.objectValue?.keys.map { "#/$defs/\($0)" } ?? [])
        #expect(defined.subtracting(seen).sorted() == [])
    }

    @Test func methodNamesAreTheProtocols() throws {
        let schema = try SchemaFile.schema()
        #expect(
            schema.methods == [
                "approvals/list", "approvals/resolve", "audit/read", "audit/verify", "capabilities/invoke",
                "grants/list", "grants/revoke", "initialize", "operations/cancel", "operations/submit", "runs/end",
                "runs/replay", "runs/start", "runs/transcript", "shutdown", "spaces/addCapability", "spaces/create",
                "spaces/destroy", "spaces/get", "spaces/list", "spaces/updatePolicy", "tools/call", "tools/list",
            ])
        #expect(schema.plannedMethods == [])
        #expect(
            schema.notifications == ["approvals/requested", "events/emitted", "log/message", "notifications/cancelled"])
    }

    @Test func eventTypesAreTheProtocols() throws {
        let document = try SchemaFile.document()
        let validator = JSONSchemaValidator(document: document)
        let types = (document["$defs"]?["Event"]?["oneOf"]?.arrayValue ?? []).compactMap { branch in
            branch["$ref"]?.stringValue.flatMap { validator.resolve($0)?["properties"]?["type"]?["const"]?.stringValue }
        }
        #expect(
            Set(types) == [
                "operation.started", "operation.completed", "operation.failed", "policy.denied", "file.written",
                "file.content", "file.edited", "file.deleted", "file.listing", "file.moved", "command.output",
                "command.exited", "approval.requested", "approval.resolved", "output.redacted", "capability.called",
            ])
        #expect(types.count == 16)
    }

    /// The schema's operation kinds are the engine's, and every operation the schema accepts, the engine's
    /// parser accepts too.
    @Test func operationsAgreeWithTheEngine() throws {
        let document = try SchemaFile.document()
        let validator = JSONSchemaValidator(document: document)
        let kinds = (document["$defs"]?["Operation"]?["oneOf"]?.arrayValue ?? []).compactMap { branch in
            branch["$ref"]?.stringValue.flatMap { validator.resolve($0)?["properties"]?["kind"]?["const"]?.stringValue }
        }
        #expect(Set(kinds) == Set(Operation.Kind.allCases.map(\.rawValue)))
        #expect(kinds.count == Operation.Kind.allCases.count)

        let schema = try SchemaFile.schema()
        for (index, operation) in (try JSONValue.parse(allOperations).arrayValue ?? []).enumerated() {
            #expect(schema.validate(operation, def: "Operation") == [])
            #expect(throws: Never.self) { try Operation.parse(operation, index: index) }
        }
        let unknownField: JSONValue = ["kind": "file.delete", "path": "a", "force": true]
        #expect(schema.validate(unknownField, def: "Operation").map(\.instancePath) == ["force"])
        #expect(throws: RPCError.self) { try Operation.parse(unknownField, index: 0) }
    }

    @Test(arguments: validRequests)
    func validRequest(_ json: String) throws {
        let schema = try SchemaFile.schema()
        let message = try JSONValue.parse(json)
        #expect(schema.validateRequest(message).map(\.description) == [])
        #expect(schema.validator.validate(message) == [], "the document as a whole accepts any message")
    }

    @Test(arguments: validResponses.indices)
    func validResponse(_ index: Int) throws {
        let schema = try SchemaFile.schema()
        let (method, json) = validResponses[index]
        let message = try JSONValue.parse(json)
        #expect(schema.validateResponse(message, method: method).map(\.description) == [])
        #expect(schema.validator.validate(message) == [])
    }

    @Test(arguments: validNotifications)
    func validNotification(_ json: String) throws {
        let schema = try SchemaFile.schema()
        let message = try JSONValue.parse(json)
        #expect(schema.validateNotification(message).map(\.description) == [])
        #expect(schema.validator.validate(message) == [])
    }

    @Test(arguments: invalidMessages)
    func invalidMessage(_ testCase: InvalidMessage) throws {
        let schema = try SchemaFile.schema()
        let message = try JSONValue.parse(testCase.json)
        let violations =
            switch testCase.check {
            case .request: schema.validateRequest(message)
            case .response(let method): schema.validateResponse(message, method: method)
            case .notification: schema.validateNotification(message)
            }
        let first = try #require(violations.first, "accepted: \(testCase.json)")
        #expect(first.instancePath == testCase.path, "\(violations)")
        #expect(first.message.contains(testCase.message), "\(first.message)")
    }

    @Test func batchesAreMessages() throws {
        let schema = try SchemaFile.schema()
        let batch = try JSONValue.parse("[\(validRequests[0]), \(validNotifications[1])]")
        #expect(schema.validator.validate(batch) == [])
        #expect(schema.validator.validate([]) != [], "an empty batch is not a message")
    }

    @Test func everyEventValidatesAlone() throws {
        let schema = try SchemaFile.schema()
        for event in try JSONValue.parse(allEvents).arrayValue ?? [] {
            #expect(schema.validate(event, def: "Event") == [], "\(event)")
        }
        #expect(schema.validate(try JSONValue.parse(space), def: "Space") == [])
        #expect(
            schema.validate(1, def: "NoSuchDefinition").map(\.message) == [
                "schema error: cannot resolve #/$defs/NoSuchDefinition"
            ])
    }

    @Test func paramsAbsentMeansEmpty() throws {
        let schema = try SchemaFile.schema()
        let violations = schema.validateRequest(
            try JSONValue.parse(#"{"jsonrpc": "2.0", "id": 1, "method": "runs/start"}"#))
        #expect(violations.map(\.description) == ["params.spaceId: missing required property 'spaceId'"])
    }
}
