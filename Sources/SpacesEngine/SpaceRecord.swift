import SpacesPolicy
import SpacesProtocol

/// What the state directory keeps of a space (`spaces/<id>/space.json`): enough to list it and to operate on
/// it again after an engine restart.
struct SpaceRecord: Sendable {
    var spaceId: String
    var name: String
    var createdAt: String
    var policyJSON: JSONValue
    var hostUID: UInt32
    var hostGID: UInt32
    /// Event sequence numbers up to this one may have been used; a restarted engine continues above it.
    var seqReserved: Int
    var runs: [RunRecord]
    /// Where each secret's value is kept on the host (never the value).
    var secrets: [SecretReference] = []
    /// Actions allowed for the whole space by `allow_for_space` approvals.
    var grants: [Grant] = []
    /// Days an ended run's transcript is kept; nil: the engine's `--retention-days`.
    var retentionDays: Int?
    /// The capabilities programs in the space may call, as declared (secrets as `${secret:NAME}` references).
    var capabilities: [CapabilityDeclaration] = []

    var json: JSONValue {
        [
            "spaceId": .string(spaceId), "name": .string(name), "createdAt": .string(createdAt),
            "policy": policyJSON, "hostUID": JSONValue(Int(hostUID)), "hostGID": JSONValue(Int(hostGID)),
            "seqReserved": JSONValue(seqReserved), "runs": .array(runs.map(\.json)),
            "secrets": .object(Dictionary(uniqueKeysWithValues: secrets.map { ($0.name, $0.json) })),
            "grants": .array(grants.map(\.json)), "retentionDays": retentionDays.map { JSONValue($0) } ?? .null,
            "capabilities": .array(capabilities.map(\.json)),
        ]
    }

    init(
        spaceId: String, name: String, createdAt: String, policyJSON: JSONValue, hostUID: UInt32, hostGID: UInt32,
        seqReserved: Int, runs: [RunRecord], secrets: [SecretReference] = []
    ) {
        self.secrets = secrets
        self.spaceId = spaceId
        self.name = name
        self.createdAt = createdAt
        self.policyJSON = policyJSON
        self.hostUID = hostUID
        self.hostGID = hostGID
        self.seqReserved = seqReserved
        self.runs = runs
    }

    init?(json: JSONValue) {
        guard let spaceId = json["spaceId"]?.stringValue, let name = json["name"]?.stringValue,
            let createdAt = json["createdAt"]?.stringValue, let policy = json["policy"],
            let uid = json["hostUID"]?.intValue, let gid = json["hostGID"]?.intValue,
            let seqReserved = json["seqReserved"]?.intValue
        else { return nil }
        self.init(
            spaceId: spaceId, name: name, createdAt: createdAt, policyJSON: policy, hostUID: UInt32(uid),
            hostGID: UInt32(gid), seqReserved: seqReserved,
            runs: (json["runs"]?.arrayValue ?? []).compactMap(RunRecord.init(json:)))
        secrets = (try? SecretReference.parse(Params(json["secrets"], path: "secrets"))) ?? []
        grants = (json["grants"]?.arrayValue ?? []).compactMap(Grant.init(json:))
        retentionDays = json["retentionDays"]?.intValue
        let secretNames = Set(secrets.map(\.name))
        capabilities = (json["capabilities"]?.arrayValue ?? []).enumerated().compactMap { index, value in
            try? CapabilityDeclaration.parse(value, path: "capabilities[\(index)]", secrets: secretNames)
        }
    }
}

/// A run: a labelled stretch of a space's operations, with counts and the files it produced.
struct RunRecord: Sendable {
    var runId: String
    var label: String?
    var metadata: JSONValue?
    var startedAt: String
    var startedMonotonic: UInt64
    var endedAt: String?
    var durationMs: Int?
    var status: String?
    var total = 0
    var succeeded = 0
    var failed = 0
    var denied = 0
    var artifacts: [String] = []

    init(runId: String, label: String?, metadata: JSONValue?, startedAt: String) {
        self.runId = runId
        self.label = label
        self.metadata = metadata
        self.startedAt = startedAt
        self.startedMonotonic = Clock.monotonicNanoseconds()
    }

    mutating func recordArtifact(_ path: String) {
        if !artifacts.contains(path) { artifacts.append(path) }
    }

    var summary: JSONValue {
        var result: [String: JSONValue] = [
            "runId": .string(runId), "status": .string(status ?? "running"), "startedAt": .string(startedAt),
            "operations": [
                "total": JSONValue(total), "succeeded": JSONValue(succeeded), "failed": JSONValue(failed),
                "denied": JSONValue(denied),
            ],
            "artifacts": .array(artifacts.map(JSONValue.string)),
        ]
        if let label { result["label"] = .string(label) }
        if let endedAt { result["endedAt"] = .string(endedAt) }
        if let durationMs { result["durationMs"] = JSONValue(durationMs) }
        return .object(result)
    }

    var json: JSONValue {
        guard case .object(var fields) = summary else { return summary }
        if let metadata { fields["metadata"] = metadata }
        return .object(fields)
    }

    init?(json: JSONValue) {
        guard let runId = json["runId"]?.stringValue, let startedAt = json["startedAt"]?.stringValue else {
            return nil
        }
        self.init(runId: runId, label: json["label"]?.stringValue, metadata: json["metadata"], startedAt: startedAt)
        endedAt = json["endedAt"]?.stringValue
        durationMs = json["durationMs"]?.intValue
        status = json["status"]?.stringValue.flatMap { $0 == "running" ? nil : $0 }
        let counts = json["operations"]
        total = counts?["total"]?.intValue ?? 0
        succeeded = counts?["succeeded"]?.intValue ?? 0
        failed = counts?["failed"]?.intValue ?? 0
        denied = counts?["denied"]?.intValue ?? 0
        artifacts = (json["artifacts"]?.arrayValue ?? []).compactMap(\.stringValue)
    }
}

extension String {
    /// A space name as a host name: `_` is not a host-name character.
    var replacingUnderscores: String { String(map { $0 == "_" ? "-" : $0 }) }
}
