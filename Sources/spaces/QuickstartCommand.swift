import ArgumentParser
import SpacesConformance
import SpacesProtocol

#if canImport(Glibc)
    import Glibc
#endif

struct Quickstart: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The first run: create a space, write a TypeScript script, run it, read the artifact it made.")

    @Option(help: "The state directory to use (default: a fresh temporary one, removed afterwards).")
    var stateDir: String?

    @Option(help: "The Bun binary to run inside the space.")
    var bun: String?

    static let script = """
        // Runs inside the space, on Bun. It sees only /workspace (read-write), /tmp and a read-only system.
        const orders = [
          { customer: "acme", amount: 1200 }, { customer: "globex", amount: 300 },
          { customer: "acme", amount: 450 }, { customer: "initech", amount: 980 },
          { customer: "globex", amount: 75 },
        ];
        const totals = new Map<string, number>();
        for (const order of orders) totals.set(order.customer, (totals.get(order.customer) ?? 0) + order.amount);
        const rows = [...totals].sort((a, b) => b[1] - a[1]);
        const report = ["# Revenue by customer", "", "| customer | total |", "|---|---|",
          ...rows.map(([name, total]) => `| ${name} | ${total} |`)].join("\\n") + "\\n";
        await Bun.write("out/report.md", report);
        console.log(`wrote out/report.md: ${rows.length} customers, top is ${rows[0][0]}`);
        """

    func run() throws {
        var template = Array("/tmp/spaces-quickstart-XXXXXX".utf8CString)
        let temporary = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        let state = stateDir ?? temporary
        var command =
            "\(Conformance.shellQuote(Conformance.currentExecutable())) serve --state-dir \(Conformance.shellQuote(state)) --log-level warning"
        if let bun { command += " --bun \(Conformance.shellQuote(bun))" }
        let process = try EngineProcess(command: command, logPath: temporary + ".log")
        let client = EngineClient(process: process)
        defer {
            process.closeInput()
            _ = process.waitForExit(timeoutMs: 10_000)
            if stateDir == nil { _ = system("rm -rf '\(temporary)' '\(temporary).log'") }
        }
        do {
            try perform(client)
        } catch {
            print("quickstart failed: \(error)")
            print("engine log: \(temporary).log")
            throw ExitCode(1)
        }
    }

    func perform(_ client: EngineClient) throws(EngineClient.Failure) {
        let hello = try client.call("initialize", ["protocolVersion": "0.1", "client": ["name": "spaces-quickstart"]])
        let isolation = hello["isolation"] ?? .null
        print(
            "engine \(hello["engine"]?["version"]?.stringValue ?? "?") · Bun \(hello["runtimes"]?.arrayValue?.first?["version"]?.stringValue ?? "?")"
        )
        print(
            "isolation: "
                + ["user", "mount", "pid", "net", "ipc", "uts"].filter { isolation[$0]?.boolValue == true }.joined(
                    separator: ", ") + " namespaces")

        let space = try client.call("spaces/create", ["name": "quickstart"])
        let spaceId = space["spaceId"]?.stringValue ?? ""
        print("\nspace \(spaceId) created (name: quickstart, workspace: /workspace)")
        let run = try client.call("runs/start", ["spaceId": .string(spaceId), "label": "quickstart"])
        let runId = run["runId"] ?? .null

        let result = try client.call(
            "operations/submit",
            [
                "spaceId": .string(spaceId), "runId": runId,
                "operations": [
                    ["kind": "file.write", "path": "report.ts", "content": .string(Self.script)],
                    ["kind": "code.run", "language": "typescript", "path": "report.ts"],
                    ["kind": "file.read", "path": "out/report.md"],
                    ["kind": "file.list", "recursive": true],
                ],
            ])
        print("\nbatch \(result["batchId"]?.stringValue ?? "") \(result["status"]?.stringValue ?? ""):")
        for event in result["events"]?.arrayValue ?? [] { print(Self.describe(event)) }

        let summary = try client.call("runs/end", ["runId": runId])
        let counts = summary["operations"] ?? .null
        print(
            "\nrun \(runId.stringValue ?? ""): \(counts["succeeded"]?.intValue ?? 0)/\(counts["total"]?.intValue ?? 0) operations succeeded in \(summary["durationMs"]?.intValue ?? 0) ms; artifacts: "
                + (summary["artifacts"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "))
        if let content = result["events"]?.arrayValue?.first(where: { $0["type"] == "file.content" })?["content"]?
            .stringValue
        {
            print("\nthe artifact, /workspace/out/report.md:\n")
            print(content)
        }
        try client.call("spaces/destroy", ["spaceId": .string(spaceId)])
        print("space \(spaceId) destroyed; every process of it is gone.")
    }

    /// One event as a readable line.
    static func describe(_ event: JSONValue) -> String {
        let seq = event["seq"]?.intValue ?? 0
        let type = event["type"]?.stringValue ?? "?"
        let opId = event["opId"]?.stringValue ?? ""
        var detail = ""
        switch type {
        case "operation.started": detail = event["kind"]?.stringValue ?? ""
        case "operation.completed": detail = "in \(event["durationMs"]?.intValue ?? 0) ms"
        case "operation.failed":
            detail = "\(event["error"]?["code"]?.stringValue ?? ""): \(event["error"]?["message"]?.stringValue ?? "")"
        case "file.written": detail = "\(event["path"]?.stringValue ?? "") (\(event["bytes"]?.intValue ?? 0) bytes)"
        case "file.content": detail = "\(event["path"]?.stringValue ?? "") (\(event["bytes"]?.intValue ?? 0) bytes)"
        case "file.listing":
            detail = (event["entries"]?.arrayValue ?? []).compactMap { entry in
                entry["path"]?.stringValue.map { $0 + (entry["type"] == "directory" ? "/" : "") }
            }.joined(separator: " ")
        case "command.exited":
            detail =
                "exit \(event["exitCode"].map { $0.isNull ? "-" : "\($0)" } ?? "-") in \(event["durationMs"]?.intValue ?? 0) ms"
            let stdout = event["stdout"]?.stringValue ?? ""
            if !stdout.isEmpty {
                detail += "\n" + stdout.split(separator: "\n").map { "        │ " + $0 }.joined(separator: "\n")
            }
            let stderr = event["stderr"]?.stringValue ?? ""
            if !stderr.isEmpty {
                detail += "\n" + stderr.split(separator: "\n").map { "        ! " + $0 }.joined(separator: "\n")
            }
        case "policy.denied": detail = "\(event["rule"]?.stringValue ?? ""): \(event["reason"]?.stringValue ?? "")"
        default: detail = ""
        }
        let padded = type.padding(to: 20)
        return "  #\(seq) \(opId.padding(to: 5)) \(padded) \(detail)"
    }
}

extension String {
    func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
