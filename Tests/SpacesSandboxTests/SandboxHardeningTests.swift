import Foundation
import Testing

@testable import SpacesSandbox

#if canImport(Glibc)
    import Glibc
#endif

private typealias Support = SpaceTestSupport

/// The layers on top of the namespaces (docs/SANDBOX.md, "Confinement" and "Limits"), each tried from inside a
/// real space: the system calls the filter denies, the capabilities and securebits, the rlimits, and the
/// cgroups against a memory bomb and a fork bomb. They need root, as in CI: the cgroup tests need a writable
/// /sys/fs/cgroup with the memory and pids controllers.
@Suite("Confinement and limits (need root)")
struct SandboxHardeningTests {
    /// Calls each denied system call with raw numbers (x86_64) through ctypes and prints `name=ERRNO` (or
    /// `name=ok`), so the test sees exactly what the kernel answered.
    static let syscallProbe = #"""
        import ctypes, errno, os, sys, threading
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        buffer = ctypes.create_string_buffer(4096)
        iovec = (ctypes.c_void_p * 2)(ctypes.addressof(buffer), 16)
        def arg(value):
            if isinstance(value, bytes):
                return ctypes.c_char_p(value)
            if isinstance(value, ctypes.Array):
                return ctypes.cast(value, ctypes.c_void_p)
            return ctypes.c_long(value)
        def call(name, number, *args):
            ctypes.set_errno(0)
            result = libc.syscall(ctypes.c_long(number), *[arg(a) for a in args])
            if result == 0 and name.startswith("clone"):
                os._exit(0)  # a clone that went through: the child must not run the rest
            code = ctypes.get_errno()
            print(f"{name}={'ok' if result >= 0 else errno.errorcode.get(code, code)}", flush=True)
        uts = os.open("/proc/self/ns/uts", os.O_RDONLY)
        SIGCHLD = 17
        call("unshare", 272, 0x10000000)
        call("unshare_files", 272, 0x400)
        call("setns", 308, uts, 0)
        call("mount", 165, b"none", b"/tmp", b"tmpfs", 0, 0)
        call("umount2", 166, b"/tmp", 0)
        call("move_mount", 429, -1, b"", -100, b"/tmp", 0)
        call("open_tree", 428, -100, b"/tmp", 0)
        call("fsopen", 430, b"tmpfs", 0)
        call("fsconfig", 431, -1, 0, 0, 0, 0)
        call("fsmount", 432, -1, 0, 0)
        call("fspick", 433, -100, b"/", 0)
        call("mount_setattr", 442, -100, b"/tmp", 0, buffer, 32)
        call("pivot_root", 155, b"/tmp", b"/tmp")
        call("chroot", 161, b"/tmp")
        call("ptrace", 101, 16, 1, 0, 0)
        call("process_vm_readv", 310, 1, iovec, 1, iovec, 1, 0)
        call("process_vm_writev", 311, 1, iovec, 1, iovec, 1, 0)
        call("kexec_load", 246, 0, 0, 0, 0)
        call("kexec_file_load", 320, -1, -1, 0, b"", 0)
        call("init_module", 175, buffer, 0, b"")
        call("finit_module", 313, -1, b"", 0)
        call("delete_module", 176, b"x", 0)
        call("bpf", 321, 5, buffer, 128)
        call("perf_event_open", 298, buffer, 0, -1, -1, 0)
        call("userfaultfd", 323, 0)
        call("io_uring_setup", 425, 1, buffer)
        call("io_uring_enter", 426, -1, 0, 0, 0, 0, 0)
        call("io_uring_register", 427, -1, 0, 0, 0)
        call("keyctl", 250, 0, -3, 0)
        call("add_key", 248, b"user", b"x", b"y", 1, -2)
        call("request_key", 249, b"user", b"x", 0, 0)
        call("clone_newns", 56, 0x20000 | SIGCHLD, 0, 0, 0, 0)
        call("clone_newuser", 56, 0x10000000 | SIGCHLD, 0, 0, 0, 0)
        call("clone_newnet", 56, 0x40000000 | SIGCHLD, 0, 0, 0, 0)
        call("clone_newpid_high_bits", 56, 0x1_20000000 | SIGCHLD, 0, 0, 0, 0)
        call("clone3", 435, buffer, 88)
        call("open_by_handle_at", 304, -100, buffer, 0)
        call("name_to_handle_at", 303, -100, b"/tmp", buffer, buffer, 0)
        call("reboot", 169, 0, 0, 0, 0)
        call("swapon", 167, b"/tmp/swap", 0)
        call("swapoff", 168, b"/tmp/swap")
        call("acct", 163, 0)
        call("quotactl", 179, 0, 0, 0, 0)
        call("quotactl_fd", 443, -1, 0, 0, 0)
        call("syslog", 103, 10, 0, 0)
        call("settimeofday", 164, 0, 0)
        call("clock_settime", 227, 0, buffer)
        call("clock_adjtime", 305, 0, buffer)
        call("adjtimex", 159, buffer)
        call("personality_bsd", 135, 6)
        call("personality_no_randomize", 135, 0x0040000)
        call("personality_bsd_high_bits", 135, 0x1_00000006)
        call("ioctl_tiocsti", 16, 0, 0x5412, b"x")
        call("ioctl_tiocsti_high_bits", 16, 0, 0x1_00005412, b"x")
        call("ioctl_tioclinux", 16, 0, 0x541C, buffer)
        call("socket_netlink", 41, 16, 3, 0)
        call("socket_packet", 41, 17, 3, 0)
        call("socket_bluetooth", 41, 31, 1, 0)
        call("socket_unix_high_bits", 41, 0x1_00000001, 1, 0)
        call("socketpair_netlink", 53, 16, 3, 0, buffer)
        call("vhangup", 153)
        call("lookup_dcookie", 212, 0, 0, 0)
        call("iopl", 172, 3)
        call("ioperm", 173, 0, 1, 1)
        call("uselib", 134, b"/x")
        call("nfsservctl", 180, 0, 0, 0)
        call("create_module", 174, b"x", 0)
        call("get_kernel_syms", 177, 0)
        call("query_module", 178, b"x", 0, 0, 0, 0)
        # What must keep working.
        call("personality_query", 135, 0xFFFFFFFF)
        call("personality_linux", 135, 0)
        call("socket_unix", 41, 1, 1, 0)
        call("socket_inet", 41, 2, 1, 0)
        call("socket_inet6", 41, 10, 2, 0)
        call("ioctl_tcgets", 16, 0, 0x5401, buffer)
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        print(f"fork={os.waitpid(pid, 0)[1] >> 8}", flush=True)
        thread = threading.Thread(target=lambda: print("thread=ok", flush=True))
        thread.start()
        thread.join()
        """#

    /// Denied calls: EPERM, except clone3, which answers ENOSYS so that libc falls back to clone.
    static let denied = [
        "unshare", "unshare_files", "setns", "mount", "umount2", "move_mount", "open_tree", "fsopen", "fsconfig",
        "fsmount", "fspick", "mount_setattr", "pivot_root", "chroot", "ptrace", "process_vm_readv",
        "process_vm_writev", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
        "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl",
        "add_key", "request_key", "clone_newns", "clone_newuser", "clone_newnet", "clone_newpid_high_bits",
        "open_by_handle_at", "name_to_handle_at", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
        "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "personality_bsd",
        "personality_no_randomize", "personality_bsd_high_bits", "ioctl_tiocsti", "ioctl_tiocsti_high_bits",
        "ioctl_tioclinux", "socket_netlink", "socket_packet", "socket_bluetooth", "socket_unix_high_bits",
        "socketpair_netlink", "vhangup", "lookup_dcookie", "iopl", "ioperm", "uselib", "nfsservctl", "create_module",
        "get_kernel_syms", "query_module",
    ]

    @Test(
        "the seccomp filter denies each listed call with EPERM, clone3 with ENOSYS, and lets the rest through (needs root)"
    )
    func seccompDeniesInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        try Self.syscallProbe.write(toFile: host.workspace + "/syscalls.py", atomically: false, encoding: .utf8)
        let space = try Sandbox.launch(
            host.spec("/usr/bin/python3 /workspace/syscalls.py >&4 2>&4"), launcherPath: launcher)
        let output = Support.readToEnd(space.responseFD, timeout: 60)
        #expect(await space.waitForExit() == 0, "\(output)")
        let results = Support.keyValues(output)
        for name in Self.denied {
            #expect(results[name] == "EPERM", "\(name): \(results[name] ?? "not run") (output: \(output))")
        }
        #expect(results["clone3"] == "ENOSYS")
        for name in [
            "personality_query", "personality_linux", "socket_unix", "socket_inet", "socket_inet6", "ioctl_tcgets",
        ] where name != "ioctl_tcgets" {
            #expect(results[name] == "ok", "\(name): \(results[name] ?? "not run")")
        }
        #expect(results["ioctl_tcgets"] == "ENOTTY", "harmless ioctls reach the kernel (fd 0 is /dev/null)")
        #expect(results["fork"] == "7", "fork falls back from clone3 to clone and works")
        #expect(results["thread"] == "ok", "pthread_create falls back from clone3 to clone and works")
    }

    @Test("a system call through another ABI (x32, i386 int 0x80) kills the caller (needs root)")
    func otherABIsAreKilledInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let i386 = """
            import ctypes, mmap
            code = bytes([0xb8, 0x14, 0, 0, 0, 0xcd, 0x80, 0xc3])  # mov eax, 20 (getpid); int 0x80; ret
            page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            page.write(code)
            ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))()
            print("i386 call returned")
            """
        try i386.write(toFile: host.workspace + "/i386.py", atomically: false, encoding: .utf8)
        let script = """
            /usr/bin/python3 -c 'import ctypes; ctypes.CDLL(None).syscall(0x40000027); print("x32 returned")' >&4
            echo x32=$? >&4
            /usr/bin/python3 /workspace/i386.py >&4
            echo i386=$? >&4
            """
        let space = try Sandbox.launch(host.spec(script), launcherPath: launcher)
        let results = Support.keyValues(Support.readToEnd(space.responseFD, timeout: 30))
        #expect(await space.waitForExit() == 0)
        #expect(results["x32"] == String(128 + SIGSYS), "killed by the filter's bad-architecture action")
        #expect(results["i386"] == String(128 + SIGSYS))
    }

    @Test("the worker and init hold no capability, no_new_privs and the filter are set, rlimits apply (needs root)")
    func capabilitiesAndRlimitsInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let script = """
            grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status \
              | tr -d ' \\t' | tr ':' '=' >&4
            grep -E '^(CapPrm|CapEff|CapBnd):' /proc/1/status | tr -d ' \\t' | sed 's/^/init/' | tr ':' '=' >&4
            echo "cgroups=$(cut -d: -f3 /proc/self/cgroup | sort -u | tr '\\n' ' ')" >&4
            bash -c 'echo "nproc=$(ulimit -u) nofile=$(ulimit -n) fsize=$(ulimit -f) core=$(ulimit -c)"' \
              | tr ' ' '\\n' >&4
            head -c 11000000 /dev/zero > /tmp/big 2>/dev/null
            echo "big_exit=$? big_size=$(stat -c %s /tmp/big)" | tr ' ' '\\n' >&4
            if /usr/bin/setpriv --reuid=0 --inh-caps=+sys_admin true 2>/dev/null; then echo regain=yes; \
              else echo regain=no; fi >&4
            """
        var spec = host.spec(script)
        spec.processLimit = 100
        spec.openFileLimit = 256
        spec.fileSizeLimitBytes = 10_000_000
        let space = try Sandbox.launch(spec, launcherPath: launcher)
        let results = Support.keyValues(Support.readToEnd(space.responseFD, timeout: 30))
        #expect(await space.waitForExit() == 0)
        for name in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "initCapPrm", "initCapEff", "initCapBnd"] {
            #expect(results[name] == "0000000000000000", "\(name)=\(results[name] ?? "missing")")
        }
        #expect(results["NoNewPrivs"] == "1")
        #expect(results["Seccomp"] == "2", "filter mode")
        #expect(results["Seccomp_filters"] == "1")
        #expect(results["cgroups"]?.trimmingCharacters(in: .whitespaces) == "/", "the space is its cgroup root")
        #expect(results["nproc"] == "100")
        #expect(results["nofile"] == "256")
        #expect(results["fsize"] == String(10_000_000 / 1024), "bash counts 1024-byte blocks")
        #expect(results["core"] == "0")
        #expect(results["big_exit"] == String(128 + SIGXFSZ), "writing past RLIMIT_FSIZE stops the writer")
        #expect(results["big_size"] == "10000000")
        #expect(results["regain"] == "no", "no capability comes back through exec as uid 0")
    }

    @Test("init's command line and the space's stdout and stderr name nothing of the host (needs root)")
    func noHostPathThroughProcInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let script = """
            echo "init=$(tr '\\0' ' ' < /proc/1/cmdline | sed 's/ *$//')" >&4
            echo "stdout=$(readlink /proc/self/fd/1)" >&4
            echo "stderr=$(readlink /proc/2/fd/2)" >&4
            echo "to the engine's log from \(host.marker)" >&2
            """
        let space = try Sandbox.launch(host.spec(script), launcherPath: launcher)
        let results = Support.keyValues(Support.readToEnd(space.responseFD))
        #expect(await space.waitForExit() == 0)
        #expect(results["init"] == "spaces-launcher", "only the name, no host path and no option")
        #expect(results["stdout"]?.hasPrefix("pipe:[") == true, "\(results)")
        #expect(results["stderr"]?.hasPrefix("pipe:[") == true, "\(results)")
    }

    @Test("the space's cgroups carry its limits, hold its processes, and are removed when it ends (needs root)")
    func cgroupsHoldTheSpaceInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        var spec = host.spec("sleep \(host.marker) & echo ready >&4; wait")
        spec.memoryLimitBytes = 300 << 20
        spec.processLimit = 50
        spec.cpuMillis = 250
        let space = try Sandbox.launch(spec, launcherPath: launcher)
        #expect(Support.readUntil(space.responseFD) { $0.contains("ready") }.contains("ready"))
        #expect(await Support.waitForHostPIDs(withArgument: host.marker, count: 1))
        let sleeper = try #require(Support.hostPIDs(withArgument: host.marker).first)
        #expect(space.cgroupReport.keys.sorted() == ["cpu", "memory", "pids"])
        var directories: [String] = []
        for controller in ["memory", "pids", "cpu"] {
            let directory = try #require(space.cgroupDirectory(controller), "\(space.cgroupReport)")
            directories.append(directory)
            #expect(directory.hasSuffix("/agent-spaces/\(spec.cgroupName)"))
            let members = Support.contents(directory + "/cgroup.procs").split(separator: "\n")
            #expect(members.contains("\(sleeper)"), "\(controller): the space's processes are in its cgroup")
            #expect(members.count == 3, "init, the shell and the sleep: \(members)")
        }
        let v2 = space.cgroupReport["memory"]?.contains(" v2 ") == true
        let memory = Support.contents(directories[0] + (v2 ? "/memory.max" : "/memory.limit_in_bytes"))
        #expect(memory.trimmingCharacters(in: .whitespacesAndNewlines) == String(300 << 20))
        #expect(Support.contents(directories[1] + "/pids.max").trimmingCharacters(in: .whitespacesAndNewlines) == "50")
        let cpu =
            v2
            ? Support.contents(directories[2] + "/cpu.max")
            : Support.contents(directories[2] + "/cpu.cfs_quota_us") + " "
                + Support.contents(directories[2] + "/cpu.cfs_period_us")
        #expect(cpu.split(whereSeparator: \.isWhitespace) == ["25000", "100000"])
        space.kill()
        #expect(await space.waitForExit() == 128 + SIGKILL)
        for directory in directories {
            #expect(!FileManager.default.fileExists(atPath: directory), "\(directory) outlived the space")
        }
    }

    @Test("a memory bomb is killed by the space's memory limit while its other processes live on (needs root)")
    func memoryBombIsKilledInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let script = """
            sleep \(host.marker) & other=$!
            /usr/bin/python3 -c 'chunks = [b"x" * (1 << 20) for _ in range(2048)]; print("allocated 2 GiB")' >&4
            echo bomb=$? >&4
            kill -0 $other && echo other=alive >&4
            echo shell=alive >&4
            read line <&3
            """
        var spec = host.spec(script)
        spec.memoryLimitBytes = 256 << 20
        let space = try Sandbox.launch(spec, launcherPath: launcher)
        let memoryDirectory = try #require(space.cgroupDirectory("memory"), "\(space.cgroupReport)")
        let output = Support.readUntil(space.responseFD, timeout: 60) { $0.contains("shell=alive") }
        let results = Support.keyValues(output)
        #expect(results["bomb"] == String(128 + SIGKILL), "the bomb is OOM-killed: \(output)")
        #expect(!output.contains("allocated 2 GiB"))
        #expect(results["other"] == "alive")
        #expect(results["shell"] == "alive")
        // The kill was the cgroup's doing, not the host's.
        let events =
            Support.contents(memoryDirectory + "/memory.oom_control")
            + Support.contents(memoryDirectory + "/memory.events")
        let kills = events.split(separator: "\n").first { $0.hasPrefix("oom_kill ") }.flatMap {
            Int($0.split(separator: " ")[1])
        }
        #expect((kills ?? 0) >= 1, "\(events)")
        space.kill()
        #expect(await space.waitForExit() == 128 + SIGKILL)
        #expect(Support.hostPIDs(withArgument: host.marker).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: memoryDirectory))
    }

    /// Forks as fast as it can for a second and a half, each child sleeping; then reports and waits.
    static let forkBomb = #"""
        import errno, os, time
        end = time.time() + 1.5
        made = refused = last = 0
        while time.time() < end:
            try:
                pid = os.fork()
            except OSError as error:
                refused += 1
                last = error.errno
                continue
            if pid == 0:
                time.sleep(1000)
                os._exit(0)
            made += 1
        print(f"made={made}\nrefused={refused}\nerrno={errno.errorcode.get(last, last)}", flush=True)
        time.sleep(1000)
        """#

    @Test(
        "a fork bomb stops at the process limit and the space still dies cleanly (needs root)",
        arguments: ["pids.max", "RLIMIT_NPROC"])
    func forkBombIsContainedInSpace(layer: String) async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        try Self.forkBomb.write(toFile: host.workspace + "/bomb.py", atomically: false, encoding: .utf8)
        let limit = 40
        var spec = host.spec("exec /usr/bin/python3 /workspace/bomb.py \(host.marker) >&4")
        spec.processLimit = limit
        // Each layer alone must hold: take the other one away.
        let space = try Sandbox.launch(spec, launcherPath: launcher) { arguments in
            let other = layer == "pids.max" ? "--rlimit-nproc" : "--pids-max"
            if let index = arguments.firstIndex(of: other) {
                arguments.removeSubrange(index...(index + 1))
            }
        }
        let pidsDirectory = try #require(space.cgroupDirectory("pids"), "\(space.cgroupReport)")
        let output = Support.readUntil(space.responseFD, timeout: 60) { $0.contains("errno=") }
        let results = Support.keyValues(output)
        #expect(results["errno"] == "EAGAIN", "\(output)")
        #expect((Int(results["refused"] ?? "") ?? 0) > 0)
        // init and the bomb itself count too.
        #expect((Int(results["made"] ?? "") ?? .max) <= limit - 2, "\(output)")
        let running = Support.hostPIDs(withArgument: host.marker).count
        #expect(running <= limit - 1 && running > limit / 2, "\(running) bomb processes on the host")
        if layer == "pids.max" {
            let current = Int(
                Support.contents(pidsDirectory + "/pids.current").trimmingCharacters(in: .whitespacesAndNewlines))
            #expect((current ?? .max) <= limit)
        }
        space.kill()
        #expect(await space.waitForExit() == 128 + SIGKILL)
        #expect(Support.hostPIDs(withArgument: host.marker).isEmpty, "no process of the bomb survives")
        #expect(!FileManager.default.fileExists(atPath: pidsDirectory))
    }

    @Test(
        "Bun still works under the filter: -e, TypeScript, Bun.write, Bun.spawn, a refused fetch (needs root and Bun)")
    func bunWorksUnderTheFilterInSpace() async throws {
        let host = try Support.prepareSpace()
        defer { host.remove() }
        let launcher = try Support.launcher()
        let bun = try Support.bunPath()
        let program = """
            const answer: number = 41 + 1;
            await Bun.write("/workspace/out.txt", `answer ${answer}`);
            const child = Bun.spawn(["/bin/echo", "child-ok"], { stdout: "pipe" });
            const childOutput = (await new Response(child.stdout).text()).trim();
            await child.exited;
            const sync = Bun.spawnSync(["/bin/sh", "-c", "echo sync-ok"]).stdout.toString().trim();
            let fetched = "connected";
            try { await fetch("http://127.0.0.1:9/"); } catch { fetched = "refused"; }
            const file = await Bun.file("/workspace/out.txt").text();
            const tmp = await Bun.write("/tmp/t.txt", "x".repeat(100000));
            console.log(`file=${file}\\nchild=${childOutput}\\nsync=${sync}\\nfetch=${fetched}\\ntmp=${tmp}`);
            """
        try program.write(toFile: host.workspace + "/program.ts", atomically: false, encoding: .utf8)
        var spec = host.spec(
            """
            /opt/spaces/bin/bun -e 'console.log("eval=" + (1 + 1))' >&4 2>&4
            /opt/spaces/bin/bun /workspace/program.ts >&4 2>&4
            echo bun_exit=$? >&4
            """,
            environment: ["PATH": "/opt/spaces/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp"])
        spec.readOnlyBinds = [.init(hostPath: bun, insidePath: "/opt/spaces/bin/bun")]
        let space = try Sandbox.launch(spec, launcherPath: launcher)
        let output = Support.readToEnd(space.responseFD, timeout: 60)
        #expect(await space.waitForExit() == 0, "\(output)")
        let results = Support.keyValues(output)
        #expect(results["eval"] == "2", "\(output)")
        #expect(results["file"] == "answer 42", "\(output)")
        #expect(results["child"] == "child-ok")
        #expect(results["sync"] == "sync-ok")
        #expect(results["fetch"] == "refused")
        #expect(results["tmp"] == "100000")
        #expect(results["bun_exit"] == "0")
    }
}
