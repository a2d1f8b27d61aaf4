import SpacesConformance
import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A shell command that starts a process which escapes the command's process group and session
/// (`setsid`), holds none of its pipes, and shows `marker` as its command line.
func escapee(_ marker: String) -> String {
    "setsid bash -c 'exec -a \(marker) sleep 1000' </dev/null >/dev/null 2>&1 &"
}

/// Killing is total: the pid namespace's init, its lifeline to the engine and the monitor's wait mean that
/// whatever ends a space (or an operation) leaves none of its processes behind on the host.
@Suite("Attacks: killing is total — pid namespace init, lifeline, process groups (needs user namespaces)")
struct KillAttacks {
    /// An engine with one space named after a marker (so its monitor and init show it too) running an escapee.
    static func spaceWithEscapee() throws -> (engine: AttackEngine, space: String, escapee: String, name: String) {
        let engine = try AttackEngine()
        let name = Host.marker("space-")
        let space = try engine.createSpace(["name": .string(name)])
        let marker = Host.marker()
        let started = try engine.shell(space, escapee(marker) + " echo started")
        #expect(started.stdout == "started\n")
        #expect(
            Host.waitUntil(timeoutMs: 5000) { !Host.processes(containing: marker).isEmpty }, "the escapee never ran")
        #expect(!Host.processes(containing: name).isEmpty, "the space's monitor and init are not found by name")
        return (engine, space, marker, name)
    }

    @Test("Destroying a space leaves no process of it on the host, a setsid escapee included")
    func destroy() throws {
        let (engine, space, marker, name) = try Self.spaceWithEscapee()
        try engine.destroySpace(space)
        // spaces/destroy answers only once every process of the space is gone: no waiting here.
        #expect(Host.processes(containing: marker).isEmpty, "the escapee survived the destroy")
        #expect(Host.processes(containing: name).isEmpty, "the space's monitor or init survived the destroy")
    }

    @Test("A timed-out command's detached children are gone")
    func timeout() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let marker = Host.marker()
        let request = engine.submitLater(space, [Op.shell(escapee(marker) + " sleep 30", timeoutMs: 1500)])
        #expect(
            Host.waitUntil(timeoutMs: 5000) { !Host.processes(containing: marker).isEmpty }, "the escapee never ran")
        let result = try engine.result(request)
        #expect(result.exited["timedOut"] == true, "\(result)")
        #expect(result.failureCode == "TIMEOUT")
        #expect(
            Host.waitUntil(timeoutMs: 2000) { Host.processes(containing: marker).isEmpty },
            "the timed-out command's setsid child survived: \(Host.processes(containing: marker))")
    }

    @Test("A cancelled batch's detached children are gone")
    func cancel() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let marker = Host.marker()
        let request = engine.submitLater(space, [Op.shell(escapee(marker) + " sleep 30", timeoutMs: 60_000)])
        #expect(
            Host.waitUntil(timeoutMs: 5000) { !Host.processes(containing: marker).isEmpty }, "the escapee never ran")
        try engine.notify("notifications/cancelled", ["requestId": JSONValue(request)])
        let result = try engine.result(request)
        #expect(result["status"] == "cancelled", "\(result)")
        #expect(result.failureCode == "CANCELLED")
        #expect(
            Host.waitUntil(timeoutMs: 2000) { Host.processes(containing: marker).isEmpty },
            "the cancelled command's setsid child survived: \(Host.processes(containing: marker))")
    }

    @Test("SIGKILL of the engine leaves no process of any space")
    func engineKilled() throws {
        let (engine, _, marker, name) = try Self.spaceWithEscapee()
        let second = try engine.createSpace(["name": .string(name + "-b")])
        let secondMarker = Host.marker()
        _ = try engine.shell(second, escapee(secondMarker) + " echo started")
        #expect(Host.waitUntil(timeoutMs: 5000) { !Host.processes(containing: secondMarker).isEmpty })
        let pid = try #require(Host.enginePid(stateDir: engine.stateDir))
        kill(pid, SIGKILL)
        #expect(engine.process.waitForExit(timeoutMs: 5000) == 128 + SIGKILL)
        #expect(
            Host.waitUntil(timeoutMs: 5000) {
                Host.processes(containing: marker).isEmpty && Host.processes(containing: secondMarker).isEmpty
                    && Host.processes(containing: name).isEmpty
            }, "processes outlived the engine: \(Host.processes(containing: marker) + Host.processes(containing: name))"
        )
    }

    @Test(
        "SIGTERM stops the engine gracefully: running work answers cancelled, no process of any space is left, exit 0")
    func engineTerminated() throws {
        let (engine, space, marker, name) = try Self.spaceWithEscapee()
        let running = Host.marker()
        let id = engine.client.send(
            "operations/submit",
            [
                "spaceId": .string(space),
                "operations": [
                    ["kind": "command.run", "argv": ["bash", "-c", .string("exec -a \(running) sleep 300")]]
                ],
            ])
        #expect(Host.waitUntil(timeoutMs: 5000) { !Host.processes(containing: running).isEmpty })
        let pid = try #require(Host.enginePid(stateDir: engine.stateDir))
        kill(pid, SIGTERM)
        let answer = try engine.client.awaitResult(id: id)
        #expect(answer["status"] == "cancelled", "\(answer)")
        #expect(engine.process.waitForExit(timeoutMs: 10_000) == 0)
        #expect(
            Host.waitUntil(timeoutMs: 2000) {
                Host.processes(containing: marker).isEmpty && Host.processes(containing: name).isEmpty
                    && Host.processes(containing: running).isEmpty
            }, "processes outlived the engine")
    }

    @Test("The engine's end of input (client gone) leaves no process of any space")
    func engineInputClosed() throws {
        let (engine, _, marker, name) = try Self.spaceWithEscapee()
        engine.process.closeInput()
        #expect(engine.process.waitForExit(timeoutMs: 10_000) == 0)
        #expect(
            Host.waitUntil(timeoutMs: 2000) {
                Host.processes(containing: marker).isEmpty && Host.processes(containing: name).isEmpty
            }, "processes outlived the engine")
    }

    @Test("shutdown leaves no process of any space")
    func shutdown() throws {
        let (engine, _, marker, name) = try Self.spaceWithEscapee()
        try engine.call("shutdown")
        #expect(engine.process.waitForExit(timeoutMs: 10_000) == 0)
        #expect(
            Host.waitUntil(timeoutMs: 2000) {
                Host.processes(containing: marker).isEmpty && Host.processes(containing: name).isEmpty
            }, "processes outlived the shutdown")
    }

    @Test("A worker killed from inside takes every process of the space with it; the next operation gets a new worker")
    func workerCrash() throws {
        let (engine, space, marker, _) = try Self.spaceWithEscapee()
        let result = try engine.submit(space, [Op.shell("kill -9 2; sleep 5")])
        #expect(result.failureCode == "WORKER_CRASHED", "\(result)")
        #expect(
            Host.waitUntil(timeoutMs: 2000) { Host.processes(containing: marker).isEmpty },
            "the escapee outlived its worker")
        let after = try engine.shell(space, "echo new-worker")
        #expect(after.stdout == "new-worker\n")
    }

    @Test("kill -9 -1 inside reaches only the space's own processes; a host process survives and the engine carries on")
    func killEverything() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let other = try engine.createSpace()
        let victim = Host.spawn(["/bin/sleep", "60"])
        defer { Host.killAndReap(victim) }
        _ = try engine.submit(space, [Op.shell("kill -9 -1; sleep 5")])
        #expect(Host.isAlive(victim))
        let fine = try engine.shell(other, "echo other-fine")
        #expect(fine.stdout == "other-fine\n")
        let again = try engine.shell(space, "echo again")
        #expect(again.stdout == "again\n")
    }
}
