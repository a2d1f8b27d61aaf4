import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Resource exhaustion: each attack ends its own operation with a clear result while the engine and a second,
/// busy space carry on. The bounds come from the policy's `limits` (rlimits and cgroups in the launcher), the
/// size-capped `/tmp` tmpfs, the output bound of the worker and engine, and the operation timeout.
@Suite("Attacks: resource exhaustion — rlimits, cgroups, tmpfs size, output bounds, timeouts (needs user namespaces)")
struct LimitAttacks {
    @Test("A fork bomb (bounded to 1000 forks) hits the processes limit with EAGAIN; another busy space is unaffected")
    func forkBomb() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["limits": ["processes": 64]])
        let busy = try engine.createSpace()
        let bomb = """
            import os, time
            pids, err = [], None
            for i in range(1000):
                try:
                    pid = os.fork()
                except OSError as e:
                    err = e.errno
                    break
                if pid == 0:
                    null = os.open("/dev/null", os.O_RDWR)
                    os.dup2(null, 1); os.dup2(null, 2)
                    time.sleep(30)
                    os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            print("forked %d errno %s" % (len(pids), err))
            """
        let result = try whileAnotherSpaceIsBusy(engine, attacked: space, busy: busy) {
            try engine.submit(space, [Op.argv(["python3", "-c", bomb], timeoutMs: 30_000)])
        }
        let exited = result.exited
        let words = exited.stdout.split(separator: " ")
        #expect(words.count == 4 && words[3] == "11\n", "fork never failed with EAGAIN: \(exited)")
        #expect((words.count == 4 ? Int(words[1]) : nil).map { $0 < 64 } == true, "\(exited)")
    }

    @Test("A memory bomb (1 GiB from Python) is stopped at memoryMiB; another busy space is unaffected")
    func memoryBombPython() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["limits": ["memoryMiB": 64]])
        let busy = try engine.createSpace()
        let bomb = """
            chunks = []
            for i in range(64):
                chunks.append(b"\\x01" * (16 << 20))
            print("survived")
            """
        let result = try whileAnotherSpaceIsBusy(engine, attacked: space, busy: busy) {
            try engine.submit(space, [Op.argv(["python3", "-c", bomb], timeoutMs: 30_000)])
        }
        let exited = result.exited
        #expect(exited["type"] == "command.exited", "\(result)")
        #expect(!exited.stdout.contains("survived"), "1 GiB was allocated under a 64 MiB limit: \(exited)")
        #expect(exited["signal"] == "SIGKILL" || exited.stderr.contains("MemoryError"), "\(exited)")
    }

    @Test("A memory bomb (1 GiB from TypeScript) is stopped at memoryMiB; another busy space is unaffected")
    func memoryBombTypeScript() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["limits": ["memoryMiB": 64]])
        let busy = try engine.createSpace()
        let bomb = """
            const chunks: Uint8Array[] = [];
            for (let i = 0; i < 64; i++) chunks.push(new Uint8Array(16 << 20).fill(1));
            console.log("survived " + chunks.length);
            """
        let result = try whileAnotherSpaceIsBusy(engine, attacked: space, busy: busy) {
            try engine.submit(space, [Op.typescript(bomb, timeoutMs: 30_000)])
        }
        let exited = result.exited
        #expect(exited["type"] == "command.exited", "\(result)")
        #expect(!exited.stdout.contains("survived"), "1 GiB was allocated under a 64 MiB limit: \(exited)")
        #expect(exited.exitCode != 0, "\(exited)")
    }

    @Test("Filling /tmp past its cap fails with No space left on device; another busy space is unaffected")
    func fillTmp() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let busy = try engine.createSpace()
        let result = try whileAnotherSpaceIsBusy(engine, attacked: space, busy: busy) {
            try engine.submit(
                space,
                [
                    Op.shell(
                        "dd if=/dev/zero of=/tmp/fill bs=1M count=400 2>&1; echo rc=$?; du -m /tmp/fill | cut -f1; rm -f /tmp/fill",
                        timeoutMs: 30_000)
                ])
        }
        let exited = result.exited
        #expect(exited.stdout.contains("No space left on device"), "\(exited)")
        #expect(exited.stdout.contains("rc=1\n"), "\(exited)")
        let megabytes = exited.stdout.split(separator: "\n").last.flatMap { Int($0) } ?? 9999
        #expect(megabytes <= 256, "\(exited)")
    }

    @Test("Filling the workspace past diskMiB by command fails (ENOSPC or EFBIG) and the host holds at most the limit")
    func fillWorkspaceByCommand() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["limits": ["diskMiB": 16]])
        let busy = try engine.createSpace()
        let result = try whileAnotherSpaceIsBusy(engine, attacked: space, busy: busy) {
            try engine.submit(space, [Op.shell("dd if=/dev/zero of=big bs=1M count=64; echo rc=$?", timeoutMs: 30_000)])
        }
        let exited = result.exited
        let size = Host.status(engine.workspacePath(space) + "/big").map { Int($0.st_size) } ?? 0
        _ = try engine.shell(space, "rm -f big")
        #expect(!exited.stdout.contains("rc=0"), "\(exited)")
        #expect(
            exited.stderr.contains("No space left on device") || exited.stderr.contains("File too large")
                || exited.stderr.contains("File size limit exceeded"), "\(exited)")
        #expect(size <= 16 << 20, "the workspace holds \(size) bytes under a 16 MiB limit")
    }

    @Test("Filling the workspace past diskMiB by file.write fails with ENOSPC")
    func fillWorkspaceByFileWrite() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["limits": ["diskMiB": 16]])
        // One 4 MiB write per batch: a request line may not pass maxLineBytes (16 MiB).
        let chunk = String(repeating: "x", count: 4 << 20)
        var written = 0
        var failures: [String] = []
        for index in 1...6 {
            let result = try engine.submit(space, [Op.write("chunk\(index).txt", chunk)])
            if result.event("file.written") != nil { written += 1 }
            if let code = result.failureCode { failures.append(code) }
        }
        #expect(written <= 4, "\(written) × 4 MiB written under a 16 MiB limit")
        #expect(!failures.isEmpty && failures.allSatisfy { $0 == "ENOSPC" }, "\(failures)")
    }

    @Test("Printing 100 MiB is cut to the output bound with exact counts; another busy space is unaffected")
    func outputFlood() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let busy = try engine.createSpace()
        let result = try whileAnotherSpaceIsBusy(engine, attacked: space, busy: busy) {
            try engine.submit(
                space,
                [
                    Op.shell(
                        "head -c 104857600 /dev/zero | tr '\\0' a; head -c 10485760 /dev/zero | tr '\\0' b >&2",
                        timeoutMs: 60_000)
                ])
        }
        let exited = result.exited
        #expect(exited.exitCode == 0)
        #expect(exited["stdoutBytes"]?.intValue == 104_857_600)
        #expect(exited["stderrBytes"]?.intValue == 10_485_760)
        #expect(exited.stdout.utf8.count == 1_048_576)
        #expect(exited.stderr.utf8.count == 1_048_576)
        #expect(exited["truncated"] == true)
        #expect(result.event("operation.completed") != nil)
    }

    @Test("A streamed output flood sends at most the output bound in command.output events")
    func streamedOutputFlood() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace(["limits": ["outputBytes": 65536]])
        let result = try engine.submit(
            space, [Op.shell("yes flood | head -c 20000000", timeoutMs: 60_000)], extra: ["stream": true])
        let batchId = result["batchId"]?.stringValue
        let streamed = engine.notifications.filter {
            $0["params"]?["batchId"]?.stringValue == batchId && $0["params"]?["event"]?["type"] == "command.output"
        }
        let bytes = streamed.reduce(0) { $0 + ($1["params"]?["event"]?["data"]?.stringValue?.utf8.count ?? 0) }
        #expect(bytes <= 65536, "\(bytes) bytes streamed")
        #expect(result.exited["stdoutBytes"]?.intValue == 20_000_000)
        #expect(result.exited.stdout.utf8.count == 65536)
    }

    @Test("A CPU spin is killed at its timeout with TIMEOUT; another busy space is unaffected")
    func cpuSpin() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let busy = try engine.createSpace()
        let result = try whileAnotherSpaceIsBusy(engine, attacked: space, busy: busy) {
            try engine.submit(space, [Op.shell("while :; do :; done", timeoutMs: 1000)])
        }
        #expect(result.exited["timedOut"] == true, "\(result)")
        #expect(result.exited["signal"] == "SIGKILL", "\(result)")
        #expect(result.failureCode == "TIMEOUT")
    }

    @Test("Core dumps are off (RLIMIT_CORE 0) and open files are bounded")
    func rlimits() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "grep -E '^Max (core file size|open files)' /proc/self/limits")
        let core = exited.stdout.split(separator: "\n").first { $0.hasPrefix("Max core file size") }
        let coreValues = core?.split(separator: " ").filter { !$0.isEmpty } ?? []
        #expect(coreValues.count >= 6 && coreValues[4] == "0" && coreValues[5] == "0", "\(exited)")
        let files = exited.stdout.split(separator: "\n").first { $0.hasPrefix("Max open files") }
        let hard = files?.split(separator: " ").filter { !$0.isEmpty }.dropFirst(4).first.flatMap { Int($0) }
        #expect(hard != nil && hard! <= 1_048_576, "\(exited)")
    }

    @Test(
        "Signalling init from inside (SIGTERM, SIGINT to pid 1) ends at most this space's worker; the engine carries on"
    )
    func signalInitFromInside() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let busy = try engine.createSpace()
        let result = try whileAnotherSpaceIsBusy(engine, attacked: space, busy: busy) {
            try engine.submit(space, [Op.shell("kill -TERM 1; kill -INT 1; sleep 1; echo survived", timeoutMs: 20_000)])
        }
        #expect(result.failureCode == "WORKER_CRASHED" || result.exited.stdout == "survived\n", "\(result)")
    }
}
