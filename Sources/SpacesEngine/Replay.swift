import SpacesPolicy
import SpacesProtocol
import Synchronization

/// Transcripts and replay: a run's audit entries, and the same operations applied again and compared.
extension Engine {
    /// `runs/transcript`: every audit entry of the run, in order (requests, decisions, events; redacted).
    public func transcript(_ params: Params) throws(RPCError) -> JSONValue {
        let runId = try params.string("runId")
        let spaces = state.withLock { Array($0.spaces.values) }
        guard let space = spaces.first(where: { $0.runState(runId) != nil }) else {
            throw Self.runNotFound(runId, field: params.fieldPath("runId"))
        }
        space.audit.flush()
        let entries = AuditLog.read(path: store.auditPath(space.id), afterSeq: 0, limit: Int.max).entries
            .filter { $0["runId"]?.stringValue == runId }
        return ["runId": .string(runId), "spaceId": .string(space.id), "transcript": .array(entries)]
    }

    /// `runs/replay`: the transcript's batches applied again, in a new space with the original's policy (or
    /// in `into`), and their events compared with the recorded ones — ids, sequence numbers, times and
    /// durations aside.
    public func replay(_ params: Params) async throws(RPCError) -> JSONValue {
        let entries: [JSONValue]
        if let runId = try params.optionalString("runId") {
            entries =
                try transcript(Params(members: ["runId": .string(runId)], path: "params"))["transcript"]?
                .arrayValue ?? []
        } else if let given = try params.optionalArray("transcript") {
            entries = given
        } else {
            throw RPCError.invalidParams(
                params.fieldPath("runId"), "runs/replay needs runId or transcript",
                hint: "send the runId of a run of this engine, or a transcript from runs/transcript")
        }
        guard let originalSpace = entries.first?["spaceId"]?.stringValue else {
            throw RPCError.invalidParams(
                params.fieldPath("transcript"), "the transcript is empty",
                hint: "replay a run that ran operations; runs/transcript shows what it holds")
        }
        let target: Space
        if let into = try params.optionalString("into"), into != "new" {
            target = try space(into)
        } else {
            let policy = state.withLock { $0.spaces[originalSpace] }?.policy.json ?? "default"
            let created = try await createSpace(
                Params(members: ["name": .string("replay-" + originalSpace), "policy": policy], path: "params"))
            target = try space(created["spaceId"]?.stringValue ?? "")
        }
        var differences: [JSONValue] = []
        for request in entries where request["kind"] == "request" {
            guard let batchId = request["batchId"]?.stringValue, let data = request["data"] else { continue }
            var operations: [Operation] = []
            for (index, raw) in (data["operations"]?.arrayValue ?? []).enumerated() {
                operations.append(try Operation.parse(raw, index: index, pathPrefix: "params.transcript.operations"))
            }
            guard !operations.isEmpty, data["dryRun"] != true else { continue }
            let batch = BatchRequest(
                spaceId: target.id, runId: nil, operations: operations, stopOnError: data["onError"] != "continue",
                stream: false, dryRun: false, idempotencyKey: nil)
            let control = BatchControl(batchId: Identifier.make("b_"), spaceId: target.id)
            let (result, _) = await target.run(batch, control: control, notify: nil)
            let expected = entries.filter { $0["kind"] == "event" && $0["batchId"]?.stringValue == batchId }
                .compactMap { $0["data"] }
            differences += Self.compare(expected: expected, actual: result["events"]?.arrayValue ?? [])
        }
        return [
            "matched": .bool(differences.isEmpty), "spaceId": .string(target.id), "differences": .array(differences),
        ]
    }

    /// Fields that differ from one run to the next by nature.
    static let unstableFields: Set<String> = ["seq", "at", "batchId", "durationMs", "approvalId"]

    static func compare(expected: [JSONValue], actual: [JSONValue]) -> [JSONValue] {
        var differences: [JSONValue] = []
        for index in 0..<max(expected.count, actual.count) {
            let want: JSONValue? = index < expected.count ? expected[index] : nil
            let got: JSONValue? = index < actual.count ? actual[index] : nil
            let opId = (want ?? got)?["opId"]?.stringValue ?? "op_1"
            guard let want, let got else {
                differences.append([
                    "opId": .string(opId), "field": .string("events[\(index)]"), "expected": want ?? .null,
                    "actual": got ?? .null,
                ])
                continue
            }
            let keys = Set(want.objectValue?.keys ?? [:].keys).union(got.objectValue?.keys ?? [:].keys)
                .subtracting(unstableFields)
            for key in keys.sorted() where want[key] != got[key] {
                differences.append([
                    "opId": .string(opId), "field": .string("events[\(index)].\(key)"), "expected": want[key] ?? .null,
                    "actual": got[key] ?? .null,
                ])
            }
        }
        return differences
    }
}
