import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Only `/workspace`, `/tmp` and `/dev/shm` are writable: the root tmpfs is remounted read-only and every
/// bind of the host is read-only.
@Suite("Attacks: writing the read-only root — read-only mounts (needs user namespaces)")
struct ReadOnlyRootAttacks {
    @Test("Writing into /usr fails with Read-only file system and nothing appears on the host")
    func writeUsr() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let name = Host.marker("spaces-attack-")
        defer { Host.remove("/usr/bin/\(name)") }
        let exited = try engine.shell(space, "touch /usr/bin/\(name); rm -f /usr/bin/env; chmod 777 /usr/bin/su")
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.contains("touch: cannot touch '/usr/bin/\(name)': Read-only file system"), "\(exited)")
        #expect(exited.stderr.contains("rm: cannot remove '/usr/bin/env': Read-only file system"), "\(exited)")
        #expect(!Host.exists("/usr/bin/\(name)"))
        #expect(Host.exists("/usr/bin/env"))
        #expect(Host.status("/usr/bin/su").map { $0.st_mode & 0o7777 } == 0o4755)
    }

    @Test("Writing /etc fails with Read-only file system and the host's /etc/passwd is unchanged")
    func writeEtc() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let before = Host.read("/etc/passwd")
        let exited = try engine.shell(space, "echo 'pwned::0:0::/:/bin/sh' >> /etc/passwd; touch /etc/shadow")
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.contains("/etc/passwd: Read-only file system"), "\(exited)")
        #expect(exited.stderr.contains("touch: cannot touch '/etc/shadow': Read-only file system"), "\(exited)")
        #expect(Host.read("/etc/passwd") == before)
    }

    @Test("Creating anything at / fails with Read-only file system")
    func writeRoot() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let name = Host.marker("spaces-attack-")
        let exited = try engine.shell(space, "mkdir /\(name); echo x > /\(name).txt")
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.contains("mkdir: cannot create directory"), "\(exited)")
        #expect(exited.stderr.contains("/\(name)’: Read-only file system"), "\(exited)")
        #expect(exited.stderr.contains("/\(name).txt: Read-only file system"), "\(exited)")
        #expect(!Host.exists("/\(name)"))
        #expect(!Host.exists("/\(name).txt"))
    }

    @Test("The Bun binary at /opt/spaces/bin/bun cannot be replaced, and every space still gets the same one")
    func replaceBun() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let before = try engine.shell(space, "sha256sum /opt/spaces/bin/bun")
        #expect(before.exitCode == 0)
        let exited = try engine.shell(
            space, "cp /bin/true /opt/spaces/bin/bun; echo pwned > /opt/spaces/worker.ts; rm -f /opt/spaces/bin/bun")
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.contains("Read-only file system"), "\(exited)")
        #expect(!exited.stderr.contains("Text file busy"), "refused by the mount, not by luck: \(exited)")
        let other = try engine.createSpace()
        let after = try engine.shell(other, "sha256sum /opt/spaces/bin/bun")
        #expect(after.stdout == before.stdout)
    }

    @Test("TypeScript cannot write outside /workspace and /tmp: EROFS")
    func typescriptWrites() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.typescript(
            space,
            """
            import fs from "node:fs";
            for (const p of ["/etc/pwned", "/usr/pwned", "/pwned", "/opt/spaces/pwned"]) {
              try { fs.writeFileSync(p, "x"); console.log("wrote " + p); } catch (e: any) { console.log(e.code); }
            }
            """)
        #expect(exited.stdout == "EROFS\nEROFS\nEROFS\nEROFS\n", "\(exited)")
    }

    @Test("The read-only root cannot be remounted read-write")
    func remountReadWrite() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let name = Host.marker("spaces-attack-")
        let exited = try engine.shell(
            space, "mount -o remount,rw / ; mount -o remount,rw,bind /usr; touch /\(name) /usr/\(name)")
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.contains("touch: cannot touch '/\(name)': Read-only file system"), "\(exited)")
        #expect(exited.stderr.contains("touch: cannot touch '/usr/\(name)': Read-only file system"), "\(exited)")
        #expect(!Host.exists("/usr/\(name)"))
    }

    @Test("Host kernel settings cannot be written through /proc/sys or /proc/sysrq-trigger")
    func procSysIsReadOnly() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let corePattern = Host.read("/proc/sys/kernel/core_pattern")
        let exited = try engine.shell(
            space,
            "echo '|/workspace/pwn' > /proc/sys/kernel/core_pattern; echo h > /proc/sysrq-trigger; echo 1 > /proc/sys/vm/drop_caches"
        )
        if Host.read("/proc/sys/kernel/core_pattern") != corePattern, let corePattern {
            Host.write("/proc/sys/kernel/core_pattern", corePattern)  // undo before failing
        }
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.split(separator: "\n").count == 3, "\(exited)")
        #expect(!exited.stderr.contains("No such file"), "\(exited)")
        #expect(Host.read("/proc/sys/kernel/core_pattern") == corePattern)
    }
}

/// The policy's workspace boundary: the engine normalises every path field lexically and denies one that
/// leaves the workspace (`policy.denied`, rule `workspace.boundary`, then `DENIED`) before anything runs.
@Suite("Attacks: .. and absolute paths in every file operation — policy workspace.boundary (needs user namespaces)")
struct PathBoundaryAttacks {
    static let escapes = [
        "../../../../../../etc/passwd", "/etc/passwd", "/workspace/../etc/passwd", "a/../../etc/passwd",
    ]

    @Test("file.write with .. or an absolute path is denied and the host file is unchanged")
    func write() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let result = try engine.submit(
            space, [Op.write(canary.path, "pwned"), Op.write("../../../../../../../.." + canary.path, "pwned")],
            extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 2)
        #expect(Host.read(canary.path) == canary.content)
    }

    @Test("file.read with .. or an absolute path is denied")
    func read() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let result = try engine.submit(space, Self.escapes.map { Op.read($0) }, extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: Self.escapes.count)
        #expect(result.event("file.content") == nil)
    }

    @Test("file.edit with .. or an absolute path is denied and the host file is unchanged")
    func edit() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let edit: JSONValue = [["oldText": "canary", "newText": "pwned"]]
        let result = try engine.submit(
            space,
            [
                ["kind": "file.edit", "path": .string(canary.path), "edits": edit],
                ["kind": "file.edit", "path": .string("../../../../../../.." + canary.path), "edits": edit],
            ], extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 2)
        #expect(Host.read(canary.path) == canary.content)
    }

    @Test("file.delete with .. or an absolute path is denied and the host file survives")
    func delete() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let result = try engine.submit(
            space,
            [
                ["kind": "file.delete", "path": .string(canary.path)],
                ["kind": "file.delete", "path": .string("../../../../../../.." + canary.path)],
                ["kind": "file.delete", "path": "..", "recursive": true],
                ["kind": "file.delete", "path": "/", "recursive": true],
            ], extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 4)
        #expect(Host.read(canary.path) == canary.content)
    }

    @Test("file.list of .. or / is denied")
    func list() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let result = try engine.submit(
            space,
            [
                ["kind": "file.list", "path": ".."], ["kind": "file.list", "path": "/", "recursive": true],
                ["kind": "file.list", "path": "/workspace/.."],
            ], extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 3)
        #expect(result.event("file.listing") == nil)
    }

    @Test("file.move from outside the workspace is denied and the host file stays where it is")
    func moveFrom() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let result = try engine.submit(
            space,
            [
                ["kind": "file.move", "from": .string(canary.path), "to": "stolen.txt"],
                ["kind": "file.move", "from": .string("../../../../../../.." + canary.path), "to": "stolen.txt"],
            ], extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 2)
        #expect(Host.read(canary.path) == canary.content)
        #expect(!Host.exists(engine.workspacePath(space) + "/stolen.txt"))
    }

    @Test("file.move to outside the workspace is denied and nothing lands on the host")
    func moveTo() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let target = "/tmp/" + Host.marker("spaces-attack-")
        defer { Host.remove(target) }
        let result = try engine.submit(
            space,
            [
                Op.write("payload.txt", "payload"),
                ["kind": "file.move", "from": "payload.txt", "to": .string(target)],
                ["kind": "file.move", "from": "payload.txt", "to": .string("../../../../../../.." + target)],
            ], extra: ["onError": "continue"])
        #expect(result.event("file.written") != nil)
        for opId in ["op_2", "op_3"] {
            let events = result.events(ofOp: opId)
            #expect(events.first?["rule"] == "workspace.boundary", "\(events)")
            #expect(events.last?["error"]?["code"] == "DENIED", "\(events)")
        }
        #expect(!Host.exists(target))
        #expect(Host.read(engine.workspacePath(space) + "/payload.txt") == "payload")
    }

    @Test("command.run with a cwd outside the workspace is denied before it runs")
    func commandCwd() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let marker = Host.marker()
        let result = try engine.submit(
            space,
            [
                Op.shell("touch \(marker)", extra: ["cwd": "/"]), Op.shell("touch \(marker)", extra: ["cwd": ".."]),
                Op.shell("touch \(marker)", extra: ["cwd": "/tmp"]),
            ], extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 3)
        #expect(result.event("command.exited") == nil)
    }

    @Test("command.run with stdoutTo or stderrTo outside the workspace is denied and the host file is unchanged")
    func commandStdoutTo() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let result = try engine.submit(
            space,
            [
                Op.shell("echo pwned", extra: ["stdoutTo": .string(canary.path)]),
                Op.shell("echo pwned >&2", extra: ["stderrTo": .string("../../../../../../.." + canary.path)]),
                Op.shell("echo pwned", extra: ["stdoutTo": "../x.txt"]),
            ], extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 3)
        #expect(Host.read(canary.path) == canary.content)
    }

    @Test("code.run of a program path outside the workspace is denied")
    func codeRunPath() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let result = try engine.submit(
            space,
            [
                ["kind": "code.run", "language": "typescript", "path": "/opt/spaces/worker.ts"],
                ["kind": "code.run", "language": "typescript", "path": "../../tmp/x.ts"],
            ], extra: ["onError": "continue"])
        expectBoundaryDenied(result, operations: 2)
    }
}
