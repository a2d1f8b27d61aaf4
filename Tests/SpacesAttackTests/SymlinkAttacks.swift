import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Symlinks and hard links made inside the workspace. The worker resolves every path inside the space and fails
/// one that leads out with `OUTSIDE_WORKSPACE` (the seatbelt); the mount namespace means a link can only ever
/// lead to the space's own files, never the host's (the wall).
@Suite(
    "Attacks: symlinks and hard links out of the workspace — worker path checks and mount namespace (needs user namespaces)"
)
struct SymlinkAttacks {
    @Test("A workspace symlink to a host file: file.read fails OUTSIDE_WORKSPACE, cat finds no such file")
    func symlinkToHostFile() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let result = try engine.submit(
            space, [Op.shell("ln -s '\(canary.path)' link && cat link"), Op.read("link")],
            extra: ["onError": "continue"])
        let exited = result.exited
        #expect(exited.exitCode == 1)
        #expect(exited.stderr == "cat: link: No such file or directory\n", "\(exited)")
        #expect(result.events(ofOp: "op_2").last?["error"]?["code"] == "OUTSIDE_WORKSPACE", "\(result)")
        #expect(Host.read(canary.path) == canary.content)
    }

    @Test(
        "A workspace symlink to /etc/passwd: file.read fails OUTSIDE_WORKSPACE, cat shows only the space's own passwd")
    func symlinkToEtcPasswd() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let result = try engine.submit(
            space, [Op.shell("ln -s /etc/passwd link && cat link"), Op.read("link")], extra: ["onError": "continue"])
        let exited = result.exited
        #expect(exited.exitCode == 0)
        #expect(exited.stdout != Host.read("/etc/passwd"))
        #expect(!exited.stdout.contains("daemon:"), "\(exited)")
        #expect(result.events(ofOp: "op_2").last?["error"]?["code"] == "OUTSIDE_WORKSPACE", "\(result)")
    }

    @Test("Writing, editing and appending output through a symlink to a host file fail OUTSIDE_WORKSPACE")
    func writeThroughSymlink() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let result = try engine.submit(
            space,
            [
                Op.shell("ln -s '\(canary.path)' host && ln -s /etc/passwd passwd"),
                Op.write("host", "pwned"),
                Op.write("passwd", "pwned"),
                ["kind": "file.edit", "path": "passwd", "edits": [["oldText": "root", "newText": "pwned"]]],
                Op.shell("echo pwned", extra: ["stdoutTo": "host"]),
                Op.shell("echo pwned >&2", extra: ["stderrTo": "passwd"]),
            ], extra: ["onError": "continue"])
        for index in 2...6 {
            let events = result.events(ofOp: "op_\(index)")
            #expect(events.last?["error"]?["code"] == "OUTSIDE_WORKSPACE", "op_\(index): \(events)")
        }
        #expect(Host.read(canary.path) == canary.content)
        let passwd = try engine.shell(space, "cat /etc/passwd")
        #expect(!passwd.stdout.contains("pwned"))
    }

    @Test("A symlink to / cannot be listed, read through, written through, nor used as cwd")
    func symlinkToRoot() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let marker = Host.marker()
        let result = try engine.submit(
            space,
            [
                Op.shell("ln -s / up && ln -s /tmp tmp"),
                ["kind": "file.list", "path": "up"],
                Op.read("up/etc/hostname"),
                Op.write("tmp/\(marker)", "pwned"),
                Op.shell("pwd", extra: ["cwd": "up"]),
                ["kind": "file.move", "from": "up/etc/hosts", "to": "hosts"],
                ["kind": "file.move", "from": "up", "to": "moved"],
            ], extra: ["onError": "continue"])
        for index in 2...6 {
            let events = result.events(ofOp: "op_\(index)")
            #expect(events.last?["error"]?["code"] == "OUTSIDE_WORKSPACE", "op_\(index): \(events)")
        }
        // Moving the link itself is allowed only when it stays inside; it points out, so it is refused too.
        #expect(result.events(ofOp: "op_7").last?["error"]?["code"] == "OUTSIDE_WORKSPACE", "\(result)")
        let tmp = try engine.shell(space, "ls /tmp/\(marker)")
        #expect(tmp.stderr.contains("No such file or directory"), "\(tmp)")
        #expect(!Host.exists("/tmp/\(marker)"))
    }

    @Test("Deleting a symlink that points out removes at most the link, never its target")
    func deleteThroughSymlink() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let result = try engine.submit(
            space,
            [
                Op.shell("mkdir -p /tmp/victim && echo keep > /tmp/victim/file && ln -s /tmp/victim out"),
                ["kind": "file.delete", "path": "out", "recursive": true],
                ["kind": "file.delete", "path": "out/file"],
            ], extra: ["onError": "continue"])
        for opId in ["op_2", "op_3"] {
            #expect(result.events(ofOp: opId).last?["error"]?["code"] == "OUTSIDE_WORKSPACE", "\(result)")
        }
        let survivor = try engine.shell(space, "cat /tmp/victim/file")
        #expect(survivor.stdout == "keep\n", "\(result)")
    }

    @Test("A symlink swapped between a workspace directory and /etc during file.read never yields host content")
    func swappedSymlinkNeverYieldsHostContent() throws {
        let (contents, errors) = try Self.raceSwappedDirectory()
        let hostPasswd = Host.read("/etc/passwd") ?? "<none>"
        #expect(!contents.contains(hostPasswd))
        #expect(!contents.contains { $0.contains("daemon:") })
        #expect(errors.isSubset(of: ["OUTSIDE_WORKSPACE", "ENOENT", "ENOTDIR"]), "\(errors)")
    }

    @Test(
        "A symlink swapped between a workspace directory and /etc during file.read never yields a file outside the workspace"
    )
    func swappedSymlinkNeverLeavesTheWorkspace() throws {
        let (contents, errors) = try Self.raceSwappedDirectory()
        #expect(contents.isSubset(of: ["workspace-content\n"]), "the worker read outside the workspace: \(contents)")
        #expect(errors.isSubset(of: ["OUTSIDE_WORKSPACE", "ENOENT", "ENOTDIR"]), "\(errors)")
    }

    /// A background process exchanges `d` (a workspace directory holding `passwd`) with a symlink to /etc
    /// (`renameat2` RENAME_EXCHANGE, atomically, in a tight loop) while 2000 `file.read d/passwd` run.
    /// Returns the distinct contents read and the distinct failure codes.
    static func raceSwappedDirectory() throws -> (Set<String>, Set<String>) {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let swapper = """
            import ctypes, os, time
            libc = ctypes.CDLL(None, use_errno=True)
            os.makedirs("d", exist_ok=True)
            open("d/passwd", "w").write("workspace-content\\n")
            os.symlink("/etc", "e")
            open("/tmp/swapping", "w").close()
            end = time.time() + 30
            while time.time() < end and os.path.exists("/tmp/swapping"):
                libc.renameat2(-100, b"d", -100, b"e", 2)
            """
        _ = try engine.submit(space, [Op.write("swap.py", swapper)])
        let started = try engine.shell(
            space,
            "setsid python3 swap.py </dev/null >/dev/null 2>&1 & for i in $(seq 200); do [ -e /tmp/swapping ] && break; sleep 0.02; done; echo racing"
        )
        #expect(started.stdout == "racing\n")
        var contents = Set<String>()
        var errors = Set<String>()
        for _ in 0..<2 {
            let result = try engine.submit(
                space,
                Array(repeating: Op.read("d/passwd"), count: 1000).enumerated().map { index, op in
                    var op = op.objectValue!
                    op["id"] = .string("r\(index)")
                    return .object(op)
                }, extra: ["onError": "continue"])
            for event in result.events {
                if event["type"] == "file.content", let content = event["content"]?.stringValue {
                    contents.insert(content)
                }
                if let code = event["error"]?["code"]?.stringValue { errors.insert(code) }
            }
        }
        _ = try engine.shell(space, "rm -f /tmp/swapping")
        #expect(contents.contains("workspace-content\n"), "the race never read the workspace file: \(errors)")
        return (contents, errors)
    }

    @Test("A hard link to a host file fails (cross-device) and the host file's link count is unchanged")
    func hardLinkToHostFiles() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let passwdLinks = Host.status("/etc/passwd")?.st_nlink
        let suLinks = Host.status("/usr/bin/su")?.st_nlink
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let exited = try engine.shell(
            space, "ln /etc/passwd p; ln /usr/bin/su s; ln /opt/spaces/bin/bun b; ln '\(canary.path)' c; ls")
        #expect(exited.stdout == "", "\(exited)")
        #expect(
            exited.stderr.contains("ln: failed to create hard link 'p' => '/etc/passwd': Invalid cross-device link"),
            "\(exited)")
        #expect(
            exited.stderr.contains("ln: failed to create hard link 's' => '/usr/bin/su': Invalid cross-device link"),
            "\(exited)")
        #expect(exited.stderr.contains("'/opt/spaces/bin/bun': Invalid cross-device link"), "\(exited)")
        #expect(exited.stderr.contains("ln: failed to access '\(canary.path)': No such file or directory"), "\(exited)")
        #expect(Host.status("/etc/passwd")?.st_nlink == passwdLinks)
        #expect(Host.status("/usr/bin/su")?.st_nlink == suLinks)
    }

    @Test("TypeScript symlinks out of the workspace reach only the space's own files")
    func typescriptSymlink() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let canary = Host.plantCanary()
        defer { Host.remove(canary.path) }
        let exited = try engine.typescript(
            space,
            """
            import fs from "node:fs";
            fs.symlinkSync(\(JSONValue.string(canary.path)), "/workspace/c");
            try { console.log(fs.readFileSync("/workspace/c", "utf8")); } catch (e: any) { console.log(e.code); }
            try { fs.writeFileSync("/workspace/c", "pwned"); console.log("wrote"); } catch (e: any) { console.log(e.code); }
            """)
        // Writing through the dangling link creates the file in the space's own /tmp, never the host's.
        #expect(exited.stdout == "ENOENT\nwrote\n", "\(exited)")
        #expect(Host.read(canary.path) == canary.content)
    }
}
