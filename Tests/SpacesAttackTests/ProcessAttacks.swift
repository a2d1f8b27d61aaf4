import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The space's pid namespace and its own /proc: only the space's few processes are visible; init is
/// non-dumpable; ptrace and process_vm_* are denied by seccomp.
@Suite("Attacks: /proc and other processes — pid namespace, non-dumpable init, seccomp (needs user namespaces)")
struct ProcAttacks {
    @Test("/proc/1/root (init's root) gives nothing of the host: no shadow, no /work")
    func procOneRoot() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "ls /proc/1/root/; cat /proc/1/root/etc/shadow; ls /proc/1/root/work")
        #expect(exited.exitCode != 0)
        #expect(exited.stdout == "", "\(exited)")
        #expect(exited.stderr.split(separator: "\n").count == 3, "\(exited)")
    }

    @Test("/proc/self/root is the space's own root: no host directories, no shadow")
    func procSelfRoot() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(
            space, "ls /proc/self/root/; cat /proc/self/root/etc/shadow; ls /proc/self/root/work")
        let listing = exited.stdout.split(separator: "\n").map(String.init)
        #expect(listing.contains("workspace"), "\(exited)")
        for hostOnly in ["work", "root", "home", "boot", "srv", "mnt", "var"] {
            #expect(!listing.contains(hostOnly), "\(exited)")
        }
        #expect(exited.stderr.contains("cat: /proc/self/root/etc/shadow: No such file or directory"), "\(exited)")
        #expect(exited.stderr.contains("cannot access '/proc/self/root/work': No such file or directory"), "\(exited)")
    }

    @Test("Only the space's few processes are visible in /proc, none of the host's")
    func hostPidsAreNotVisible() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(
            space, "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(tr '\\0' ' ' < $p/cmdline)\"; done")
        let lines = exited.stdout.split(separator: "\n")
        #expect(lines.count >= 2 && lines.count <= 6, "\(exited)")
        #expect(lines.allSatisfy { ($0.split(separator: " ").first.flatMap { Int($0) } ?? 99999) < 1000 }, "\(exited)")
        #expect(!exited.stdout.contains(" serve "), "the engine is visible: \(exited)")
        #expect(!exited.stdout.contains("SpacesAttackTests") && !exited.stdout.contains("xctest"), "\(exited)")
        #expect(lines.contains { $0.hasPrefix("1 ") } && lines.contains { $0.hasPrefix("2 ") }, "\(exited)")
    }

    @Test("A host process cannot be signalled from inside: kill finds no such process")
    func hostProcessCannotBeKilled() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let victim = Host.spawn(["/bin/sleep", "60"])
        defer { Host.killAndReap(victim) }
        let exited = try engine.shell(space, "kill -9 \(victim); echo after")
        #expect(exited.stderr.contains("No such process"), "\(exited)")
        #expect(Host.isAlive(victim))
    }

    /// A bind mount shows its source's path on the host in mountinfo (bubblewrap's do too): the three binds a
    /// space is made of — the workspace, Bun and the worker — name where they come from, which grants nothing.
    /// No other host path may appear.
    @Test("/proc/self/mountinfo names no host path but the sources of its documented binds")
    func mountinfoShowsNoHostPaths() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "cat /proc/self/mountinfo")
        #expect(exited.exitCode == 0)
        #expect(exited.stdout.contains(" /workspace "), "\(exited)")
        let documentedBinds: Set<Substring> = [
            "/workspace", "/opt/spaces/bin/bun", "/opt/spaces/worker.ts", "/opt/spaces/capabilities.js",
        ]
        let others = exited.stdout.split(separator: "\n").filter { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && !documentedBinds.contains(fields[4])
        }
        #expect(others.count >= 5, "\(exited)")
        for line in others {
            for hostPath in ["/work/", " /work ", "/root", engine.stateDir] {
                #expect(!line.contains(hostPath), "mountinfo names \(hostPath): \(line)")
            }
        }
    }

    @Test("The worker's open descriptors (/proc/2/fd) name no host path")
    func workerDescriptorsShowNoHostPaths() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "for f in /proc/2/fd/*; do readlink $f; done")
        #expect(exited.stdout.contains("pipe:"), "\(exited)")
        for hostPath in ["/work/", "/root", engine.stateDir] {
            #expect(!exited.stdout.contains(hostPath), "the worker's descriptors name \(hostPath): \(exited.stdout)")
        }
    }

    @Test("No command line in the space (/proc/*/cmdline, init's included) names a host path")
    func commandLinesShowNoHostPaths() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        #expect(exited.stdout.contains("/opt/spaces/worker.ts"), "\(exited)")
        for hostPath in ["/work/", "/root", engine.stateDir] {
            #expect(!exited.stdout.contains(hostPath), "a command line names \(hostPath): \(exited.stdout)")
        }
    }

    @Test("ptrace of init fails with EPERM")
    func ptraceInit() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(space, syscallProbe(101, "0x4206, 1, 0, 0"))  // PTRACE_SEIZE
        #expect(exited.stdout == "errno=1\n", "\(exited)")
    }

    @Test("ptrace of the worker (pid 2) fails with EPERM")
    func ptraceWorker() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(space, syscallProbe(101, "0x4206, 2, 0, 0"))  // PTRACE_SEIZE
        #expect(exited.stdout == "errno=1\n", "\(exited)")
        let after = try engine.shell(space, "echo worker-fine")
        #expect(after.stdout == "worker-fine\n")
    }

    @Test("process_vm_readv of init fails with EPERM")
    func processVmReadvInit() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let setup = """
            buf = ctypes.create_string_buffer(64)
            local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 64)
            remote = (ctypes.c_void_p * 2)(0x400000, 64)
            """
        let exited = try engine.python(space, syscallProbe(310, "1, local, 1, remote, 1, 0", setup: setup))
        #expect(exited.stdout == "errno=1\n", "\(exited)")
    }

    @Test("process_vm_readv of the worker (pid 2) fails with EPERM")
    func processVmReadvWorker() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let setup = """
            start = int(open("/proc/2/maps").readline().split("-")[0], 16)
            buf = ctypes.create_string_buffer(64)
            local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 64)
            remote = (ctypes.c_void_p * 2)(start, 64)
            """
        let exited = try engine.python(space, syscallProbe(310, "2, local, 1, remote, 1, 0", setup: setup))
        #expect(exited.stdout == "errno=1\n", "\(exited)")
    }

    @Test("The worker's channel to the engine (/proc/2/fd/3 and 4) cannot be opened by a command")
    func workerChannelIsClosedToCommands() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(
            space,
            "echo '{\"id\":1,\"ok\":true}' > /proc/2/fd/4; cat /proc/2/fd/3 & sleep 0.2; kill $! 2>/dev/null; echo done"
        )
        #expect(exited.stderr.contains("/proc/2/fd/4: Permission denied"), "\(exited)")
        #expect(exited.stderr.contains("/proc/2/fd/3: Permission denied"), "\(exited)")
        let after = try engine.shell(space, "echo genuine")
        #expect(after.stdout == "genuine\n", "\(after)")
    }
}

/// The worker's clean environment: nothing of the engine's environment reaches a space.
@Suite("Attacks: host environment variables — clean worker environment (needs user namespaces)")
struct EnvironmentAttacks {
    static func engineWithCanary() throws -> (AttackEngine, String, String) {
        let name = "SPACES_ATTACK_CANARY_" + Host.marker().uppercased()
        let value = "canary-value-" + Host.marker()
        return (try AttackEngine(environment: [name: value, "AWS_SECRET_ACCESS_KEY": value]), name, value)
    }

    @Test("A command's environment holds none of the engine's variables")
    func commandEnvironment() throws {
        let (engine, name, value) = try Self.engineWithCanary()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "env")
        #expect(exited.exitCode == 0)
        #expect(!exited.stdout.contains(name) && !exited.stdout.contains(value), "\(exited)")
        #expect(!exited.stdout.contains("AWS_SECRET_ACCESS_KEY"), "\(exited)")
        #expect(exited.stdout.contains("PATH=/opt/spaces/bin:"), "\(exited)")
    }

    @Test("TypeScript's process.env holds none of the engine's variables")
    func typescriptEnvironment() throws {
        let (engine, name, value) = try Self.engineWithCanary()
        let space = try engine.createSpace()
        let exited = try engine.typescript(
            space, "console.log(JSON.stringify(process.env)); console.log(JSON.stringify(Bun.env));")
        #expect(exited.exitCode == 0)
        #expect(!exited.stdout.contains(name) && !exited.stdout.contains(value), "\(exited)")
    }

    @Test("No process of the space (init, the worker) carries the engine's variables in /proc/*/environ")
    func procEnvironment() throws {
        let (engine, name, value) = try Self.engineWithCanary()
        let space = try engine.createSpace()
        let exited = try engine.shell(
            space, "cat /proc/[0-9]*/environ | tr '\\0' '\\n'; cat /proc/1/environ; echo done")
        #expect(exited.stdout.hasSuffix("done\n"))
        #expect(!exited.stdout.contains(name) && !exited.stdout.contains(value), "\(exited)")
    }
}

/// The space's root is root only inside: mapped to an unprivileged host id, with every capability dropped and
/// `PR_SET_NO_NEW_PRIVS`, so setuid programs and privileged calls gain nothing.
@Suite("Attacks: privilege — user namespace id map, capabilities, no_new_privs (needs user namespaces)")
struct PrivilegeAttacks {
    @Test("Files and processes of the space belong to an unprivileged host id, never host root")
    func unprivilegedHostId() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let marker = Host.marker()
        let exited = try engine.shell(
            space,
            "touch owned.txt && setsid bash -c 'exec -a \(marker) sleep 1000' </dev/null >/dev/null 2>&1 & echo ok")
        #expect(exited.stdout == "ok\n")
        let owner = Host.status(engine.workspacePath(space) + "/owned.txt")?.st_uid
        #expect(owner != nil && owner != 0 && owner != getuid(), "owner \(String(describing: owner))")
        #expect(Host.waitUntil(timeoutMs: 5000) { !Host.processes(containing: marker).isEmpty })
        for pid in Host.processes(containing: marker) {
            let status = Host.read("/proc/\(pid)/status") ?? ""
            let uidLine = status.split(separator: "\n").first { $0.hasPrefix("Uid:") } ?? ""
            let ids = uidLine.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().compactMap { Int($0) }
            #expect(ids.count == 4 && !ids.contains(0), "\(uidLine)")
        }
    }

    @Test("Every capability set is empty (inheritable, permitted, effective, bounding, ambient)")
    func capabilitiesDropped() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "grep ^Cap /proc/self/status")
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            #expect(exited.stdout.contains("\(set):\t0000000000000000"), "\(exited)")
        }
    }

    @Test("no_new_privs is set for every process of the space")
    func noNewPrivs() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "grep -h ^NoNewPrivs /proc/self/status /proc/2/status")
        #expect(exited.stdout == "NoNewPrivs:\t1\nNoNewPrivs:\t1\n", "\(exited)")
    }

    @Test("The setuid su gains nothing: it fails")
    func setuidSu() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "su -c id nobody </dev/null")
        #expect(exited.exitCode != 0, "\(exited)")
        #expect(!exited.stdout.contains("uid=65534"), "\(exited)")
    }

    @Test("The setuid mount cannot mount anything")
    func setuidMount() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(
            space, "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m; echo rc=$?; grep -c ' /tmp/m ' /proc/self/mountinfo")
        #expect(!exited.stdout.contains("rc=0"), "\(exited)")
        #expect(exited.stdout.hasSuffix("0\n"), "\(exited)")
    }

    @Test("A setuid copy made inside does not run setuid (nosuid /tmp and /workspace)")
    func setuidCopy() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(
            space,
            "cp /usr/bin/sleep /tmp/s && chmod 4755 /tmp/s; cp /usr/bin/sleep s && chmod 4755 s; grep -E ' /tmp | /workspace ' /proc/self/mountinfo"
        )
        let mounts = exited.stdout.split(separator: "\n")
        #expect(mounts.count == 2, "\(exited)")
        #expect(mounts.allSatisfy { $0.contains("nosuid") }, "\(exited)")
        let owner = Host.status(engine.workspacePath(space) + "/s")
        #expect(owner.map { $0.st_uid != 0 } == true)
    }

    @Test("chown to an id outside the map fails with Invalid argument")
    func chownToHostIds() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "touch f && chown 1000:1000 f; chown 65534 f")
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.contains("chown: changing ownership of 'f': Invalid argument"), "\(exited)")
        let owner = Host.status(engine.workspacePath(space) + "/f")?.st_uid
        #expect(owner != 1000 && owner != 65534 && owner != 0)
    }

    @Test("Creating a nested user namespace (unshare -r) fails with Operation not permitted")
    func nestedUserNamespace() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "unshare -r id; unshare -m true")
        #expect(exited.exitCode != 0)
        #expect(exited.stderr.contains("unshare failed: Operation not permitted"), "\(exited)")
        #expect(!exited.stdout.contains("uid="), "\(exited)")
    }
}

/// `initialize` reports the layers each space gets; a client (and `spaces doctor`) relies on it being true.
@Suite("Attacks: the isolation report — initialize says what a space really gets (needs user namespaces)")
struct IsolationReportAttacks {
    @Test("initialize's isolation report matches a space's namespaces, seccomp and capabilities")
    func reportIsTrue() throws {
        let engine = try AttackEngine()
        let isolation = engine.initializeResult["isolation"] ?? .null
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "grep -E '^(Seccomp|CapEff):' /proc/self/status")
        let seccompOn = exited.stdout.contains("Seccomp:\t2")
        let capsDropped = exited.stdout.contains("CapEff:\t0000000000000000")
        for layer in ["user", "mount", "pid", "net", "ipc", "uts"] {
            #expect(isolation[layer] == true, "\(layer): \(isolation)")
        }
        #expect(isolation["seccomp"]?.boolValue == seccompOn, "reported \(isolation), space has \(exited.stdout)")
        #expect(
            isolation["capabilitiesDropped"]?.boolValue == capsDropped,
            "reported \(isolation), space has \(exited.stdout)")
        #expect(isolation["unsafe"] == nil || isolation["unsafe"] == false, "\(isolation)")
    }
}
