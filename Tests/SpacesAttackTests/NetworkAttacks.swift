import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Python that connects to `address` (a Python expression) with a 3 s timeout and prints `connected` or
/// `errno=N`.
private func connectProbe(family: String, type: String = "socket.SOCK_STREAM", address: String) -> String {
    """
    import socket
    s = socket.socket(\(family), \(type))
    s.settimeout(3)
    try:
        s.connect(\(address))
        print("connected")
    except OSError as e:
        print("errno=%s" % e.errno)
    """
}

/// The space's network namespace has only its own loopback: no route anywhere, and the host's loopback, unix
/// sockets and abstract sockets are different objects.
@Suite("Attacks: network — net namespace with loopback only (needs user namespaces)")
struct NetworkAttacks {
    @Test("TCP to a listener on the host's 127.0.0.1 is refused, and the listener sees no connection")
    func hostLoopbackTCP() throws {
        let listener = try HostListener()
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(
            space, connectProbe(family: "socket.AF_INET", address: "('127.0.0.1', \(listener.port))"))
        #expect(exited.stdout == "errno=\(ECONNREFUSED)\n", "\(exited)")
        #expect(!listener.receivedConnection)
    }

    @Test("fetch from TypeScript to a listener on the host's 127.0.0.1 fails, and the listener sees no connection")
    func hostLoopbackFetch() throws {
        let listener = try HostListener()
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.typescript(
            space,
            """
            try { const r = await fetch("http://127.0.0.1:\(listener.port)/", { signal: AbortSignal.timeout(3000) }); console.log("status " + r.status); }
            catch (e: any) { console.log("failed " + e.code); }
            """)
        #expect(exited.stdout == "failed ECONNREFUSED\n" || exited.stdout == "failed ConnectionRefused\n", "\(exited)")
        #expect(!listener.receivedConnection)
    }

    @Test("TCP to a listener on the host's ::1 is refused, and the listener sees no connection")
    func hostLoopbackIPv6() throws {
        let listener = try HostListener(ipv6: true)
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(
            space, connectProbe(family: "socket.AF_INET6", address: "('::1', \(listener.port))"))
        #expect(exited.stdout == "errno=\(ECONNREFUSED)\n", "\(exited)")
        #expect(!listener.receivedConnection)
    }

    @Test("The host's listening sockets are not in the space's /proc/net/tcp")
    func hostSocketsAreNotListed() throws {
        let listener = try HostListener()
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let port = String(listener.port, radix: 16, uppercase: true)
        let exited = try engine.shell(space, "cat /proc/net/tcp /proc/net/tcp6")
        #expect(exited.exitCode == 0)
        #expect(
            !exited.stdout.contains(":\(String(repeating: "0", count: max(0, 4 - port.count)) + port) "), "\(exited)")
    }

    @Test("TCP to 1.1.1.1 fails at once with ENETUNREACH")
    func publicAddress() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(space, connectProbe(family: "socket.AF_INET", address: "('1.1.1.1', 443)"))
        #expect(exited.stdout == "errno=\(ENETUNREACH)\n", "\(exited)")
        #expect((exited["durationMs"]?.intValue ?? 99_999) < 2500, "\(exited)")
    }

    @Test("The cloud metadata address 169.254.169.254 is unreachable")
    func metadataAddress() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(
            space, connectProbe(family: "socket.AF_INET", address: "('169.254.169.254', 80)"))
        #expect(exited.stdout == "errno=\(ENETUNREACH)\n", "\(exited)")
    }

    @Test("TCP to a public IPv6 address fails with ENETUNREACH")
    func publicIPv6() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(
            space, connectProbe(family: "socket.AF_INET6", address: "('2606:4700:4700::1111', 443)"))
        #expect(exited.stdout == "errno=\(ENETUNREACH)\n", "\(exited)")
    }

    @Test("A UDP DNS query to 8.8.8.8 cannot be sent: ENETUNREACH")
    func udpDNS() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(
            space,
            """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.sendto(b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01", ("8.8.8.8", 53))
                print("sent")
            except OSError as e:
                print("errno=%s" % e.errno)
            """)
        #expect(exited.stdout == "errno=\(ENETUNREACH)\n", "\(exited)")
    }

    @Test("A DNS lookup fails fast (getaddrinfo, getent)")
    func dnsLookup() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let result = try engine.submit(
            space,
            [
                Op.argv(
                    [
                        "python3", "-c",
                        "import socket\ntry:\n    print(socket.getaddrinfo('example.com', 443))\nexcept socket.gaierror as e:\n    print('gaierror')",
                    ], timeoutMs: 10_000),
                Op.shell("getent hosts example.com; echo rc=$?", timeoutMs: 10_000),
            ])
        let exits = result.events.filter { $0["type"] == "command.exited" }
        #expect(exits.count == 2)
        #expect(exits.first?.stdout == "gaierror\n", "\(exits)")
        #expect(exits.last?.stdout == "rc=2\n", "\(exits)")
        #expect(exits.allSatisfy { ($0["durationMs"]?.intValue ?? 99_999) < 3000 }, "\(exits)")
    }

    @Test("A DNS lookup and an HTTPS fetch by name fail fast from TypeScript")
    func dnsFromTypeScript() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.typescript(
            space,
            """
            import dns from "node:dns/promises";
            try { console.log(await dns.lookup("example.com")); } catch (e: any) { console.log("lookup failed"); }
            try { const r = await fetch("https://example.com/", { signal: AbortSignal.timeout(5000) }); console.log("status " + r.status); }
            catch (e: any) { console.log(e.name === "TimeoutError" ? "timed out" : "fetch failed"); }
            """, timeoutMs: 15_000)
        #expect(exited.stdout == "lookup failed\nfetch failed\n", "\(exited)")
        #expect((exited["durationMs"]?.intValue ?? 99_999) < 4000, "\(exited)")
    }

    @Test("A unix socket on the host's /tmp cannot be reached: no such file, and the listener sees nothing")
    func hostUnixSocket() throws {
        let path = "/tmp/" + Host.marker("spaces-attack-") + ".sock"
        let listener = try HostListener(unixPath: path)
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(space, connectProbe(family: "socket.AF_UNIX", address: "'\(path)'"))
        #expect(exited.stdout == "errno=\(ENOENT)\n", "\(exited)")
        #expect(!listener.receivedConnection)
    }

    @Test("An abstract unix socket of the host cannot be reached: refused, and the listener sees nothing")
    func hostAbstractSocket() throws {
        let name = Host.marker("spaces-attack-")
        let listener = try HostListener(unixPath: "@" + name)
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(space, connectProbe(family: "socket.AF_UNIX", address: "'\\0\(name)'"))
        #expect(exited.stdout == "errno=\(ECONNREFUSED)\n", "\(exited)")
        #expect(!listener.receivedConnection)
    }

    @Test("The only network interface is loopback")
    func onlyLoopback() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
        #expect(exited.stdout == "lo\n", "\(exited)")
    }
}

/// The minimal /dev: null, zero, full, random, urandom, tty bound from the host; no way to make others.
@Suite("Attacks: devices — minimal /dev, no device nodes (needs user namespaces)")
struct DeviceAttacks {
    @Test("/dev/mem, /dev/kmem, /dev/port are absent and /proc/kcore is unreadable")
    func kernelMemory() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(
            space, "head -c 16 /dev/mem; head -c 16 /dev/kmem; head -c 16 /dev/port; head -c 16 /proc/kcore")
        #expect(exited.stdout == "", "\(exited)")
        #expect(exited.stderr.contains("/dev/mem' for reading: No such file or directory"), "\(exited)")
        #expect(exited.stderr.contains("/dev/kmem' for reading: No such file or directory"), "\(exited)")
        #expect(exited.stderr.contains("/dev/port' for reading: No such file or directory"), "\(exited)")
        #expect(
            exited.stderr.contains("/proc/kcore' for reading: Permission denied")
                || exited.stderr.contains("/proc/kcore' for reading: No such file or directory"), "\(exited)")
    }

    @Test("/dev/kmsg is absent and /proc/kmsg unreadable: no host kernel log")
    func kernelLog() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "head -c 100 /dev/kmsg; timeout 1 head -c 100 /proc/kmsg; dmesg")
        #expect(exited.stdout == "", "\(exited)")
        #expect(exited.stderr.contains("/dev/kmsg' for reading: No such file or directory"), "\(exited)")
        #expect(exited.stderr.contains("/proc/kmsg' for reading: Permission denied"), "\(exited)")
        #expect(exited.stderr.contains("dmesg: read kernel buffer failed: Operation not permitted"), "\(exited)")
    }

    @Test("Block devices (/dev/sda, /dev/vda, /dev/nvme0n1, /dev/loop0) are absent")
    func blockDevices() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let devices = ["/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/loop0", "/dev/loop-control"]
        let exited = try engine.shell(space, "ls \(devices.joined(separator: " ")); cat /proc/partitions | wc -l")
        for device in devices {
            #expect(exited.stderr.contains("cannot access '\(device)': No such file or directory"), "\(exited)")
        }
    }

    @Test("/dev holds only the harmless devices")
    func devListing() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "ls -A /dev")
        let allowed: Set<String> = [
            "null", "zero", "full", "random", "urandom", "tty", "shm", "fd", "stdin", "stdout", "stderr", "pts", "ptmx",
            "mqueue",
        ]
        let entries = Set(exited.stdout.split(separator: "\n").map(String.init))
        #expect(entries.isSubset(of: allowed), "extra: \(entries.subtracting(allowed))")
        #expect(entries.isSuperset(of: ["null", "zero", "urandom"]))
    }

    @Test("mknod of a character or block device fails with Operation not permitted")
    func mknod() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(
            space, "mknod /tmp/mem c 1 1; mknod /workspace/vda b 254 0; ls /tmp/mem /workspace/vda")
        #expect(exited.stderr.contains("mknod: /tmp/mem: Operation not permitted"), "\(exited)")
        #expect(exited.stderr.contains("mknod: /workspace/vda: Operation not permitted"), "\(exited)")
        #expect(!Host.exists(engine.workspacePath(space) + "/vda"))
    }

    @Test("/sys is absent")
    func sysfs() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.shell(space, "ls /sys/class/net; cat /sys/kernel/mm/transparent_hugepage/enabled")
        #expect(exited.stdout == "")
        #expect(exited.stderr.contains("cannot access '/sys/class/net': No such file or directory"), "\(exited)")
    }
}
