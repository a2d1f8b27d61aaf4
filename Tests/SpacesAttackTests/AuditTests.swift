import SpacesConformance
import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The audit log is tamper-evident: any change, removal, reordering or truncation is found and named, by
/// `audit/verify` and by `spaces audit verify`; and a crash of the engine loses no acknowledged operation.
@Suite("Audit log: tampering is detected (needs user namespaces)")
struct AuditTests {
    /// An engine with one space that has done a little work; returns the log's path and its lines.
    static func auditedSpace() throws -> (engine: AttackEngine, space: String, path: String) {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "audited"])
        for index in 1...3 {
            _ = try engine.submit(space, [["kind": "file.write", "path": .string("f\(index).txt"), "content": "x"]])
        }
        return (engine, space, "\(engine.stateDir)/state/audit/\(space).jsonl")
    }

    static func lines(_ path: String) -> [String] {
        (FixtureLoader.readFile(path) ?? "").split(separator: "\n").map(String.init)
    }

    static func write(_ path: String, _ lines: [String]) {
        let file = fopen(path, "w")!
        fputs(lines.joined(separator: "\n") + "\n", file)
        fclose(file)
    }

    static func verify(_ engine: AttackEngine, _ space: String) throws -> JSONValue {
        try engine.client.call("audit/verify", ["spaceId": .string(space)])
    }

    /// `spaces audit verify` on the command line: its exit status and output.
    static func verifyCommand(_ engine: AttackEngine, _ space: String) throws -> (Int32, String) {
        let process = try EngineProcess(
            arguments: [AttackEngine.binary, "audit", "verify", space, "--state-dir", engine.stateDir + "/state"],
            logPath: engine.stateDir + "/verify.log")
        process.closeInput()
        var output = ""
        while let line = try process.nextLine(timeoutMs: 10_000) { output += String(decoding: line, as: UTF8.self) }
        return (process.waitForExit(timeoutMs: 10_000), output)
    }

    @Test("An untouched log verifies, through the protocol and on the command line")
    func untouchedVerifies() throws {
        let (engine, space, path) = try Self.auditedSpace()
        let result = try Self.verify(engine, space)
        #expect(result["ok"] == true, "\(result)")
        #expect(result["entries"]?.intValue == Self.lines(path).count)
        let (status, output) = try Self.verifyCommand(engine, space)
        #expect(status == 0 && output.contains("the chain holds"), "\(output)")
    }

    static let tamperings: [(String, @Sendable ([String]) -> (lines: [String], firstBad: Int))] = [
        (
            "one byte of an entry changed",
            { lines in
                var lines = lines
                lines[4] = lines[4].replacingAll("f1.txt", with: "f9.txt")
                return (lines, 5)
            }
        ),
        ("a line deleted", { lines in (Array(lines[0..<3] + lines[4...]), 4) }),
        (
            "two lines swapped",
            { lines in
                var lines = lines
                lines.swapAt(2, 3)
                return (lines, 3)
            }
        ),
        (
            "the tail cut mid-entry",
            { lines in
                var lines = lines
                lines[lines.count - 1] = String(lines[lines.count - 1].prefix(40))
                return (lines, lines.count)
            }
        ),
        (
            "a flag flipped in the request entry",
            { lines in
                var lines = lines
                lines[1] = lines[1].replacingAll("\"dryRun\":false", with: "\"dryRun\":true")
                return (lines, 2)
            }
        ),
    ]

    @Test("Tampering is found and the first bad entry named", arguments: 0..<tamperings.count)
    func tamperingIsDetected(index: Int) throws {
        let (name, tamper) = Self.tamperings[index]
        let (engine, space, path) = try Self.auditedSpace()
        let original = Self.lines(path)
        #expect(original.count >= 10)
        let (changed, firstBad) = tamper(original)
        Self.write(path, changed)
        let result = try Self.verify(engine, space)
        #expect(result["ok"] == false, "\(name): \(result)")
        #expect(result["firstBadSeq"]?.intValue == firstBad, "\(name): \(result)")
        let (status, output) = try Self.verifyCommand(engine, space)
        #expect(status == 1 && output.contains("BROKEN at entry \(firstBad)"), "\(name): \(output)")
    }

    @Test("SIGKILL of the engine mid-batch, then a restart: the chain verifies and holds every acknowledged operation")
    func crashLosesNothingAcknowledged() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "crashy"])
        var acknowledged: [String] = []
        for index in 1...5 {
            let result = try engine.submit(
                space, [["kind": "file.write", "path": .string("ack\(index).txt"), "content": "x"]])
            acknowledged.append(result["batchId"]?.stringValue ?? "")
        }
        _ = engine.client.send(
            "operations/submit",
            [
                "spaceId": .string(space),
                "operations": [
                    ["kind": "file.write", "path": "during.txt", "content": "y"],
                    ["kind": "command.run", "argv": ["sleep", "30"]],
                ],
            ])
        usleep(300_000)
        let pid = try #require(Host.enginePid(stateDir: engine.stateDir))
        kill(pid, SIGKILL)
        _ = engine.process.waitForExit(timeoutMs: 5000)

        let restarted = try AttackEngine(reusing: engine.stateDir)
        let result = try restarted.client.call("audit/verify", ["spaceId": .string(space)])
        #expect(result["ok"] == true, "\(result)")
        let entries = try restarted.client.call("audit/read", ["spaceId": .string(space), "limit": 10_000])["entries"]
        let ended = Set(
            (entries?.arrayValue ?? []).filter { $0["kind"] == "batch.ended" }.compactMap { $0["batchId"]?.stringValue }
        )
        for batchId in acknowledged { #expect(ended.contains(batchId), "batch \(batchId) is missing from the log") }
        // The log goes on where it stopped.
        _ = try restarted.submit(space, [["kind": "file.write", "path": "after.txt", "content": "z"]])
        #expect(try restarted.client.call("audit/verify", ["spaceId": .string(space)])["ok"] == true)
    }

    @Test("An approval pending when the engine stops is denied, in the audit log, when the engine starts again")
    func restartDeniesPendingApprovals() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "asking", "policy": ["commands": ["ask": ["echo *"]]]])
        let result = try engine.submit(space, [["kind": "command.run", "command": "echo please"]])
        #expect(result["status"] == "awaiting_approval", "\(result)")
        let approvalId = try #require(
            result["events"]?.arrayValue?.first { $0["type"] == "approval.requested" }?["approvalId"]?.stringValue)
        engine.process.closeInput()
        #expect(engine.process.waitForExit(timeoutMs: 10_000) == 0)

        let restarted = try AttackEngine(reusing: engine.stateDir)
        #expect(try restarted.client.call("approvals/list")["approvals"] == [])
        let entries = try restarted.client.call("audit/read", ["spaceId": .string(space), "limit": 10_000])["entries"]
        let denial = entries?.arrayValue?.last { $0["kind"] == "approval.resolved" }
        #expect(denial?["data"]?["approvalId"]?.stringValue == approvalId, "\(entries ?? .null)")
        #expect(denial?["data"]?["decision"] == "deny")
        #expect(denial?["data"]?["by"] == "engine restart")
        #expect(try restarted.client.call("audit/verify", ["spaceId": .string(space)])["ok"] == true)
        let id = restarted.client.send(
            "approvals/resolve", ["approvalId": .string(approvalId), "decision": "allow_once"])
        #expect(try restarted.client.awaitResponse(id: id)["error"]?["code"] == -32012)
    }

    @Test("A replay reports each event that differs from the transcript, by operation and field")
    func replayReportsDifferences() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "replayed"])
        let runId = try engine.client.call("runs/start", ["spaceId": .string(space)])["runId"] ?? .null
        _ = try engine.submit(
            space, [["kind": "command.run", "command": "echo one"]], extra: ["runId": runId])
        var transcript = try engine.client.call("runs/transcript", ["runId": runId])["transcript"]?.arrayValue ?? []
        let kinds = Set(transcript.compactMap { $0["kind"]?.stringValue })
        #expect(kinds.isSuperset(of: ["run.started", "request", "decision", "event", "batch.ended"]), "\(kinds)")
        // Change what the run printed, as if the environment had differed.
        for (index, entry) in transcript.enumerated() where entry["data"]?["type"] == "command.exited" {
            guard case .object(var members) = entry, case .object(var data)? = members["data"] else { continue }
            data["stdout"] = "two\n"
            members["data"] = .object(data)
            transcript[index] = .object(members)
        }
        let replay = try engine.client.call("runs/replay", ["transcript": .array(transcript)])
        #expect(replay["matched"] == false, "\(replay)")
        let difference = replay["differences"]?.arrayValue?.first
        #expect(difference?["opId"] == "op_1")
        #expect(difference?["field"]?.stringValue?.hasSuffix(".stdout") == true, "\(replay)")
        #expect(difference?["expected"] == "two\n")
        #expect(difference?["actual"] == "one\n")
    }

    @Test("Retention removes whole expired runs from the log, records that it did, and the chain still verifies")
    func retentionRemovesExpiredRuns() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["name": "forgetful", "retentionDays": 0])
        let runId = try engine.client.call("runs/start", ["spaceId": .string(space)])["runId"] ?? .null
        _ = try engine.submit(
            space, [["kind": "file.write", "path": "in-run.txt", "content": "x"]], extra: ["runId": runId])
        _ = try engine.client.call("runs/end", ["runId": runId])
        _ = try engine.submit(space, [["kind": "file.write", "path": "outside.txt", "content": "y"]])
        engine.process.closeInput()
        #expect(engine.process.waitForExit(timeoutMs: 10_000) == 0)

        let restarted = try AttackEngine(reusing: engine.stateDir)
        let entries =
            try restarted.client.call("audit/read", ["spaceId": .string(space), "limit": 10_000])["entries"]?
            .arrayValue ?? []
        #expect(!entries.contains { $0["runId"] == runId }, "entries of the expired run remain")
        #expect(entries.contains { $0["data"]?["path"] == "outside.txt" }, "entries outside runs must stay")
        let applied = entries.last { $0["kind"] == "retention.applied" }
        #expect(applied?["data"]?["runs"] == .array([runId]), "\(entries.last ?? .null)")
        #expect(try restarted.client.call("audit/verify", ["spaceId": .string(space)])["ok"] == true)
        let id = restarted.client.send("runs/transcript", ["runId": runId])
        #expect(try restarted.client.awaitResponse(id: id)["error"]?["code"] == -32011)
    }
}
