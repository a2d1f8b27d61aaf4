import Crypto
import SpacesPolicy
import SpacesProtocol

/// The exact action an approval or a grant is about: a command line, a path and its access, or a program.
struct ActionMatcher: Sendable, Equatable {
    var kind: String
    var value: String
    var access: String?

    var json: JSONValue {
        var result: [String: JSONValue] = ["kind": .string(kind), "value": .string(value)]
        if let access { result["access"] = .string(access) }
        return .object(result)
    }

    init(kind: String, value: String, access: String?) {
        self.kind = kind
        self.value = value
        self.access = access
    }

    init?(json: JSONValue) {
        guard let kind = json["kind"]?.stringValue, let value = json["value"]?.stringValue else { return nil }
        self.init(kind: kind, value: value, access: json["access"]?.stringValue)
    }

    /// A call of a capability's method, as a person approves it (and a grant covers every call of it).
    static func capability(_ name: String, _ method: String) -> ActionMatcher {
        ActionMatcher(kind: "capability", value: "\(name).\(method)", access: nil)
    }

    /// What an operation does, as a person approves it.
    static func of(_ operation: Operation) -> ActionMatcher {
        let fields = operation.fields
        func path(_ key: String) -> String {
            WorkspaceBoundary.relativePath(fields[key]?.stringValue ?? ".") ?? (fields[key]?.stringValue ?? ".")
        }
        switch operation.kind {
        case .commandRun:
            let line =
                fields["command"]?.stringValue
                ?? (fields["argv"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ")
            return ActionMatcher(kind: "command", value: line, access: nil)
        case .codeRun:
            if let file = fields["path"]?.stringValue {
                return ActionMatcher(kind: "command", value: "bun run \(file)", access: nil)
            }
            let digest = SHA256.hash(data: Array((fields["source"]?.stringValue ?? "").utf8))
            return ActionMatcher(
                kind: "command", value: "code.run source sha256:" + AuditLog.hexString(digest), access: nil)
        case .fileRead, .fileList:
            return ActionMatcher(kind: "file", value: path("path"), access: "read")
        case .fileMove:
            return ActionMatcher(kind: "file", value: path("from") + " -> " + path("to"), access: "write")
        case .fileWrite, .fileEdit, .fileDelete:
            return ActionMatcher(kind: "file", value: path("path"), access: "write")
        }
    }

    /// A sentence for the person asked.
    var what: String {
        switch kind {
        case "command": "run `\(value)`"
        case "file": (access == "read" ? "read " : "change ") + value
        case "capability": "call \(value)"
        default: value
        }
    }
}

/// Permission given once for a space: later operations with the same action are allowed without asking.
struct Grant: Sendable {
    var grantId: String
    var spaceId: String
    var matcher: ActionMatcher
    var createdAt: String
    var by: String

    var json: JSONValue {
        [
            "grantId": .string(grantId), "spaceId": .string(spaceId), "matcher": matcher.json,
            "createdAt": .string(createdAt), "by": .string(by),
        ]
    }

    init(grantId: String, spaceId: String, matcher: ActionMatcher, createdAt: String, by: String) {
        self.grantId = grantId
        self.spaceId = spaceId
        self.matcher = matcher
        self.createdAt = createdAt
        self.by = by
    }

    init?(json: JSONValue) {
        guard let grantId = json["grantId"]?.stringValue, let spaceId = json["spaceId"]?.stringValue,
            let matcher = json["matcher"].flatMap(ActionMatcher.init(json:)),
            let createdAt = json["createdAt"]?.stringValue, let by = json["by"]?.stringValue
        else { return nil }
        self.init(grantId: grantId, spaceId: spaceId, matcher: matcher, createdAt: createdAt, by: by)
    }
}

/// A batch stopped before an operation its policy asks about, waiting for a person.
struct PendingApproval: Sendable {
    var approvalId: String
    var spaceId: String
    var batchId: String
    var opId: String
    var decision: Decision
    var matcher: ActionMatcher
    /// The rest of the batch, the asked operation first.
    var remainder: BatchRequest
    var requestedAt: String
    var expiresAt: String
    var stream: Bool
    /// For a capability call: the call with its params (`crm.delete({"id":7})`).
    var callSummary: String? = nil

    var what: String { callSummary.map { "call \($0)" } ?? matcher.what }
    var title: String { "Approve: \(what)" }
    var why: String { decision.reason }
    var impact: String {
        switch matcher.kind {
        case "command": "runs a program in the space, with the space's access to its workspace"
        case "file": matcher.access == "read" ? "the agent sees this file's content" : "changes the workspace"
        default:
            "calls \(matcher.value) outside the space, with the capability's access (the program waits for the answer)"
        }
    }

    var eventFields: [String: JSONValue] {
        [
            "approvalId": .string(approvalId), "title": .string(title), "what": .string(what),
            "why": .string(why), "impact": .string(impact),
            "options": ["allow_once", "allow_for_space", "deny"],
        ]
    }

    var json: JSONValue {
        [
            "approvalId": .string(approvalId), "spaceId": .string(spaceId), "batchId": .string(batchId),
            "opId": .string(opId), "title": .string(title), "what": .string(what), "why": .string(why),
            "impact": .string(impact), "options": ["allow_once", "allow_for_space", "deny"],
            "requestedAt": .string(requestedAt), "expiresAt": .string(expiresAt),
        ]
    }
}

/// Why an approval was denied without a person's answer.
enum ApprovalExpiry: Sendable {
    case timeout(ms: Int)
    case cancelled
    case destroyed
    /// An MCP session, where nobody can answer.
    case unanswerable

    /// `approval.resolved`'s `by`.
    var by: String {
        switch self {
        case .timeout: "timeout"
        case .cancelled: "cancel"
        case .destroyed: "destroy"
        case .unanswerable: "mcp"
        }
    }

    /// A sentence for logs, audit notes and the program's APPROVAL_DENIED message.
    var reason: String {
        switch self {
        case .timeout(let ms): "no answer within approvalTimeoutMs (\(ms) ms)"
        case .cancelled: "its batch was cancelled"
        case .destroyed: "the space was destroyed"
        case .unanswerable: "nobody can answer approvals in an MCP session"
        }
    }

    /// Whether the waiting operation is stopped too.
    var stopsOperation: Bool {
        switch self {
        case .cancelled, .destroyed: true
        case .timeout, .unanswerable: false
        }
    }
}
