import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The fresh root (mount namespace, `pivot_root`, old root detached): nothing of the host is visible beyond the
/// read-only binds of `/usr`, `/etc/alternatives`, the Bun binary and the worker script.
@Suite("Attacks: host files beyond the binds — mount namespace (needs user namespaces)")
struct HostFileAttacks {
    @Test("/etc/shadow of the host cannot be read from a command")
    func shadowIsNotVisible() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "cat /etc/shadow")
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.contains("No such file or directory"), "\(exited)")
        #expect(exited.stdout == "")
    }

    @Test("/etc/shadow of the host cannot be read from TypeScript")
    func shadowIsNotVisibleToTypeScript() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.typescript(
            space,
            """
            import fs from "node:fs";
            try { console.log(fs.readFileSync("/etc/shadow", "utf8")); } catch (e: any) { console.log(e.code); }
            try { console.log(await Bun.file("/etc/shadow").text()); } catch (e: any) { console.log(e.code); }
            """)
        #expect(exited.exitCode == 0, "\(exited)")
        #expect(exited.stdout == "ENOENT\nENOENT\n", "\(exited)")
    }

    @Test("/root of the host does not exist inside")
    func rootHomeIsNotVisible() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "ls -a /root; cat /root/.bashrc")
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.contains("ls: cannot access '/root': No such file or directory"), "\(exited)")
        #expect(exited.stderr.contains("cat: /root/.bashrc: No such file or directory"), "\(exited)")
        #expect(exited.stdout == "")
    }

    @Test("The engine's state directory (space records, logs) is not visible and cannot be changed")
    func stateDirectoryIsNotVisible() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary(in: engine.stateDir + "/state")
        defer { Host.remove(canary.path) }
        let exited = try engine.shell(
            space,
            """
            cat '\(canary.path)'; ls '\(engine.stateDir)/state/spaces'; cat /workspace/../space.json; \
            echo pwned > '\(canary.path)'; echo pwned > '\(engine.stateDir)/state/spaces/\(space)/space.json'
            """)
        #expect(exited.exitCode != 0)
        #expect(exited.stdout == "")
        #expect(exited.stderr.contains("cat: \(canary.path): No such file or directory"), "\(exited)")
        #expect(exited.stderr.contains("cannot access '\(engine.stateDir)/state/spaces': No such file"), "\(exited)")
        #expect(exited.stderr.contains("cat: /workspace/../space.json: No such file or directory"), "\(exited)")
        #expect(Host.read(canary.path) == canary.content)
        let record = Host.read("\(engine.stateDir)/state/spaces/\(space)/space.json")
        #expect(record != nil && !record!.contains("pwned"))
    }

    @Test("A search of the whole file system inside finds no file planted on the host")
    func wholeFileSystemSearchFindsNoHostCanary() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let inTmp = Host.plantCanary()
        let inState = Host.plantCanary(in: engine.stateDir)
        defer {
            Host.remove(inTmp.path)
            Host.remove(inState.path)
        }
        let tmpName = String(inTmp.path.split(separator: "/").last!)
        let stateName = String(inState.path.split(separator: "/").last!)
        let exited = try engine.shell(
            space, "find / -path /proc -prune -o \\( -name '\(tmpName)' -o -name '\(stateName)' \\) -print; echo done",
            timeoutMs: 60_000)
        #expect(exited.stdout == "done\n", "\(exited)")
        #expect(Host.read(inTmp.path) == inTmp.content)
        #expect(Host.read(inState.path) == inState.content)
    }

    @Test("The space's /tmp is its own: the host's /tmp files are absent and writing there leaves the host's alone")
    func tmpIsPrivate() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let exited = try engine.shell(
            space, "cat '\(canary.path)'; echo pwned > '\(canary.path)' && cat '\(canary.path)'")
        #expect(exited.stderr.contains("cat: \(canary.path): No such file or directory"), "\(exited)")
        #expect(exited.stdout == "pwned\n", "\(exited)")
        #expect(Host.read(canary.path) == canary.content)
    }

    @Test("The hostname is the space's name, not the host's")
    func hostnameIsTheSpaceName() throws {
        let engine = try AttackEngine()
        let name = Host.marker("space-")
        let space = try engine.createSpace(["name": .string(name)])
        let hostName = Host.hostname()
        let exited = try engine.shell(
            space, "hostname; cat /etc/hostname; hostname pwned; cat /proc/sys/kernel/hostname")
        #expect(exited.stdout.hasPrefix("\(name)\n\(name)\n"), "\(exited)")
        #expect(!exited.stdout.split(separator: "\n").contains { $0 == hostName }, "\(exited)")
        // Whatever the space does to its own uts namespace, the host keeps its name.
        #expect(Host.hostname() == hostName)
    }

    @Test("/etc/hosts is the space's generated one, not the host's")
    func hostsIsGenerated() throws {
        let engine = try AttackEngine()
        let name = Host.marker("space-")
        let space = try engine.createSpace(["name": .string(name)])
        let exited = try engine.shell(space, "cat /etc/hosts")
        #expect(exited.exitCode == 0)
        #expect(exited.stdout.contains("localhost"), "\(exited)")
        #expect(exited.stdout.contains(name), "\(exited)")
        #expect(exited.stdout != Host.read("/etc/hosts"))
    }

    @Test("/etc/resolv.conf is absent")
    func resolvConfIsAbsent() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "cat /etc/resolv.conf")
        #expect(exited.exitCode == 1)
        #expect(exited.stderr == "cat: /etc/resolv.conf: No such file or directory\n", "\(exited)")
    }

    @Test(
        "No other host secret of /etc exists inside (gshadow, machine-id, ssh, sudoers), and passwd is not the host's")
    func etcHoldsNoHostSecrets() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let paths = [
            "/etc/gshadow", "/etc/machine-id", "/etc/ssh", "/etc/sudoers", "/etc/ssl/private", "/etc/environment",
        ]
        let exited = try engine.shell(space, "ls -d \(paths.joined(separator: " ")); cat /etc/passwd")
        for path in paths {
            #expect(exited.stderr.contains("cannot access '\(path)': No such file or directory"), "\(exited)")
        }
        let hostPasswd = Host.read("/etc/passwd") ?? ""
        #expect(exited.stdout != hostPasswd)
        #expect(!exited.stdout.contains("daemon:"), "\(exited)")
    }

    @Test("Host directories outside the binds (/work, /root, /home, /boot, /srv, /mnt) do not exist")
    func hostDirectoriesAreAbsent() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let paths = ["/work", "/root", "/home", "/boot", "/srv", "/mnt", "/media"]
        let exited = try engine.shell(space, "ls -d \(paths.joined(separator: " "))")
        #expect(exited.exitCode != 0)
        #expect(exited.stdout == "")
        for path in paths {
            #expect(exited.stderr.contains("cannot access '\(path)': No such file or directory"), "\(exited)")
        }
    }
}

/// Two spaces of one engine: each has its own mount, pid, net, ipc namespaces and host id.
@Suite("Attacks: another space's workspace and processes — namespaces (needs user namespaces)")
struct OtherSpaceAttacks {
    /// An engine with two spaces; `victim` holds `secret.txt`.
    struct Pair {
        let engine: AttackEngine
        let victim: String
        let attacker: String
        let secret: String
        let secretHostPath: String

        init() throws {
            engine = try AttackEngine()
            victim = try engine.createSpace(["name": "victim"])
            attacker = try engine.createSpace(["name": "attacker"])
            secret = "secret " + Host.marker() + "\n"
            let written = try engine.submit(victim, [Op.write("secret.txt", secret)])
            #expect(written.event("file.written") != nil, "\(written)")
            secretHostPath = engine.workspacePath(victim) + "/secret.txt"
            #expect(Host.read(secretHostPath) == secret)
        }
    }

    @Test("Another space's file cannot be read by a command, by its host path or through ..")
    func readByCommand() throws {
        let pair = try Pair()
        let exited = try pair.engine.shell(
            pair.attacker,
            """
            cat '\(pair.secretHostPath)'; cat /workspace/../\(pair.victim)/workspace/secret.txt; \
            cat ../../spaces/\(pair.victim)/workspace/secret.txt
            """)
        #expect(exited.exitCode != 0)
        #expect(exited.stdout == "")
        #expect(exited.stderr.contains("cat: \(pair.secretHostPath): No such file or directory"), "\(exited)")
        #expect(exited.stderr.split(separator: "\n").count == 3, "\(exited)")
    }

    @Test("Another space's file cannot be read by file operations: .. and absolute paths are denied")
    func readByFileOperation() throws {
        let pair = try Pair()
        let result = try pair.engine.submit(
            pair.attacker,
            [
                Op.read(pair.secretHostPath), Op.read("../\(pair.victim)/workspace/secret.txt"),
                Op.read("/workspace/../../\(pair.victim)/workspace/secret.txt"),
            ], extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 3)
        #expect(result.event("file.content") == nil)
    }

    @Test("Another space's file cannot be read through a symlink, by file operation or by command")
    func readBySymlink() throws {
        let pair = try Pair()
        let result = try pair.engine.submit(
            pair.attacker,
            [
                Op.shell("ln -s '\(pair.secretHostPath)' link && cat link"),
                Op.read("link"),
            ], extra: ["onError": "continue"])
        let exited = result.exited
        #expect(exited.exitCode == 1, "\(exited)")
        #expect(exited.stderr == "cat: link: No such file or directory\n", "\(exited)")
        #expect(result.events(ofOp: "op_2").last?["error"]?["code"] == "OUTSIDE_WORKSPACE", "\(result)")
        #expect(result.event("file.content") == nil)
    }

    @Test("Another space's file cannot be read from TypeScript, nor the spaces directory listed")
    func readByTypeScript() throws {
        let pair = try Pair()
        let exited = try pair.engine.typescript(
            pair.attacker,
            """
            import fs from "node:fs";
            try { console.log(fs.readFileSync(\(JSONValue.string(pair.secretHostPath)), "utf8")); } catch (e: any) { console.log(e.code); }
            try { console.log(fs.readdirSync(\(JSONValue.string(pair.engine.stateDir + "/state/spaces")))); } catch (e: any) { console.log(e.code); }
            """)
        #expect(exited.stdout == "ENOENT\nENOENT\n", "\(exited)")
    }

    @Test("A search of the whole file system finds neither the other space's file nor its content")
    func searchFindsNothing() throws {
        let pair = try Pair()
        let exited = try pair.engine.shell(
            pair.attacker,
            """
            find / -path /proc -prune -o -name secret.txt -print; \
            grep -rsl '\(pair.secret.dropLast())' /tmp /workspace /opt /dev/shm /etc; echo done
            """, timeoutMs: 60_000)
        #expect(exited.stdout == "done\n", "\(exited)")
    }

    @Test("Another space's file cannot be overwritten or deleted")
    func writeAndDelete() throws {
        let pair = try Pair()
        let exited = try pair.engine.shell(
            pair.attacker,
            "echo pwned > '\(pair.secretHostPath)'; rm -f '\(pair.secretHostPath)'; rm -rf /workspace/../\(pair.victim)"
        )
        // dash says "Directory nonexistent": not even the victim's workspace directory exists here.
        #expect(exited.stderr.contains("\(pair.secretHostPath): Directory nonexistent"), "\(exited)")
        #expect(Host.read(pair.secretHostPath) == pair.secret)
        let result = try pair.engine.submit(
            pair.attacker,
            [
                Op.write(pair.secretHostPath, "pwned"),
                ["kind": "file.delete", "path": .string("../\(pair.victim)/workspace/secret.txt")],
            ], extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 2)
        #expect(Host.read(pair.secretHostPath) == pair.secret)
    }

    @Test("Another space's processes are not visible in /proc (pid namespaces)")
    func processesAreNotVisible() throws {
        let pair = try Pair()
        let marker = Host.marker()
        let started = try pair.engine.shell(
            pair.victim, "setsid bash -c 'exec -a \(marker) sleep 1000' </dev/null >/dev/null 2>&1 & echo started")
        #expect(started.stdout == "started\n")
        #expect(Host.waitUntil(timeoutMs: 5000) { !Host.processes(containing: marker).isEmpty })
        let seen = try pair.engine.shell(pair.attacker, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; echo done")
        #expect(!seen.stdout.contains(marker), "\(seen)")
        #expect(seen.stdout.hasSuffix("done\n"))
        let own = try pair.engine.shell(pair.victim, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        #expect(own.stdout.contains(marker), "the victim sees its own process: \(own)")
    }

    @Test("Another space's loopback and abstract unix sockets cannot be reached (network namespaces)")
    func socketsAreNotReachable() throws {
        let pair = try Pair()
        let abstract = Host.marker()
        let server = """
            import socket, os
            a = socket.socket(socket.AF_UNIX); a.bind("\\0\(abstract)"); a.listen(8)
            t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("127.0.0.1", 47123)); t.listen(8)
            open("/tmp/listening", "w").close()
            import time; time.sleep(60)
            """
        _ = try pair.engine.submit(pair.victim, [Op.write("server.py", server)])
        let started = try pair.engine.shell(
            pair.victim,
            "setsid python3 server.py </dev/null >/dev/null 2>&1 & for i in $(seq 100); do [ -e /tmp/listening ] && break; sleep 0.05; done; echo up"
        )
        #expect(started.stdout == "up\n")
        let client = """
            import socket
            for family, address in ((socket.AF_UNIX, "\\0\(abstract)"), (socket.AF_INET, ("127.0.0.1", 47123))):
                s = socket.socket(family); s.settimeout(3)
                try:
                    s.connect(address); print("connected")
                except OSError as e:
                    print("errno=%d" % e.errno)
            """
        let own = try pair.engine.python(pair.victim, client)
        #expect(own.stdout == "connected\nconnected\n", "the victim reaches its own sockets: \(own)")
        let other = try pair.engine.python(pair.attacker, client)
        #expect(other.stdout == "errno=\(ECONNREFUSED)\nerrno=\(ECONNREFUSED)\n", "\(other)")
    }

    @Test("A space made after another was destroyed (warm pool or not) inherits none of its files or processes")
    func noReuseAfterDestroy() throws {
        let engine = try AttackEngine()
        let first = try engine.createSpace()
        let marker = Host.marker()
        let planted = try engine.shell(
            first,
            "echo \(marker) > /tmp/\(marker); echo \(marker) > /dev/shm/\(marker); echo \(marker) > \(marker).txt; "
                + escapee(marker) + " echo planted")
        #expect(planted.stdout == "planted\n")
        try engine.destroySpace(first)
        for _ in 0..<3 {
            let next = try engine.createSpace()
            let seen = try engine.shell(
                next,
                "cat /tmp/\(marker) /dev/shm/\(marker) /workspace/\(marker).txt; cat /proc/[0-9]*/cmdline | tr '\\0' ' '"
            )
            #expect(!seen.stdout.contains("\(marker) 1000"), "the destroyed space's escapee is here: \(seen)")
            #expect(seen.stderr.split(separator: "\n").count == 3, "\(seen)")
        }
    }

    @Test("Another space's /dev/shm and System V shared memory are not shared (ipc namespaces)")
    func ipcIsNotShared() throws {
        let pair = try Pair()
        let marker = Host.marker()
        let own = try pair.engine.shell(
            pair.victim, "echo x > /dev/shm/\(marker) && ipcmk -M 4096 >/dev/null && ipcs -m | grep -c '^0x'")
        #expect(own.stdout == "1\n", "\(own)")
        let other = try pair.engine.shell(pair.attacker, "ls /dev/shm/\(marker); ipcs -m | grep -c '^0x'")
        #expect(other.stderr.contains("No such file or directory"), "\(other)")
        #expect(other.stdout == "0\n", "\(other)")
    }
}
