import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Calls one raw system call (x86_64 numbers) through python3's ctypes inside a fresh space and expects it to
/// fail with `errno`. The arguments are chosen so that without the filter the call would succeed or fail with a
/// different errno, so only the seccomp layer (or, where noted, a dropped capability) makes the test pass.
private func expectSyscallFails(
    _ number: Int, _ arguments: String, setup: String = "", forks: Bool = false, errno expected: Int32 = EPERM,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let engine = try AttackEngine()
    let space = try engine.createSpace()
    let exited = try engine.python(space, syscallProbe(number, arguments, setup: setup, forks: forks))
    #expect(exited.stdout == "errno=\(expected)\n", "\(exited)", sourceLocation: sourceLocation)
    // The denial is an error, not a kill: the space goes on.
    let after = try engine.shell(space, "echo alive")
    #expect(after.stdout == "alive\n", sourceLocation: sourceLocation)
}

/// The seccomp filter: each denied call fails with EPERM (clone3 with ENOSYS, so that libc falls back to clone).
@Suite("Attacks: denied system calls — seccomp filter (needs user namespaces)")
struct SeccompAttacks {
    @Test("unshare(CLONE_NEWNS) fails with EPERM")
    func unshare() throws { try expectSyscallFails(272, "0x00020000") }

    @Test("setns into the space's own net namespace fails with EPERM")
    func setns() throws {
        try expectSyscallFails(308, "fd, 0x40000000", setup: "fd = os.open('/proc/self/ns/net', os.O_RDONLY)")
    }

    @Test("mount of a tmpfs fails with EPERM")
    func mount() throws { try expectSyscallFails(165, "b'none', b'/tmp', b'tmpfs', 0, None") }

    @Test("fsopen (the new mount API) fails with EPERM")
    func fsopen() throws { try expectSyscallFails(430, "b'tmpfs', 0") }

    @Test("umount2 of /dev/shm fails with EPERM")
    func umount() throws { try expectSyscallFails(166, "b'/dev/shm', 2") }

    @Test("pivot_root fails with EPERM")
    func pivotRoot() throws { try expectSyscallFails(155, "b'/tmp', b'/tmp'") }

    @Test("chroot fails with EPERM")
    func chroot() throws { try expectSyscallFails(161, "b'/tmp'") }

    @Test("bpf(BPF_MAP_CREATE) fails with EPERM")
    func bpf() throws {
        try expectSyscallFails(321, "0, attr, 128", setup: "attr = ctypes.create_string_buffer(128)")
    }

    @Test("perf_event_open of a user-only software counter fails with EPERM")
    func perfEventOpen() throws {
        let setup = """
            import struct
            attr = ctypes.create_string_buffer(128)
            struct.pack_into("<IIQ", attr, 0, 1, 128, 0)
            struct.pack_into("<Q", attr, 40, 1 | (1 << 5) | (1 << 6))
            """
        try expectSyscallFails(298, "attr, 0, -1, -1, 0", setup: setup)
    }

    @Test("userfaultfd(UFFD_USER_MODE_ONLY) fails with EPERM")
    func userfaultfd() throws { try expectSyscallFails(323, "0x80001") }

    @Test("io_uring_setup fails with EPERM")
    func ioUringSetup() throws {
        try expectSyscallFails(425, "1, params", setup: "params = ctypes.create_string_buffer(120)")
    }

    @Test("keyctl(KEYCTL_GET_KEYRING_ID) fails with EPERM")
    func keyctl() throws { try expectSyscallFails(250, "0, -3, 0") }

    @Test("add_key fails with EPERM")
    func addKey() throws { try expectSyscallFails(248, "b'user', b'atk', b'x', 1, -3") }

    @Test("kexec_load fails with EPERM")
    func kexecLoad() throws { try expectSyscallFails(246, "0, 0, None, 0") }

    @Test("init_module fails with EPERM")
    func initModule() throws { try expectSyscallFails(175, "None, 0, b''") }

    @Test("reboot (with wrong magic numbers) fails with EPERM")
    func reboot() throws { try expectSyscallFails(169, "0, 0, 0, None") }

    @Test("swapon fails with EPERM")
    func swapon() throws { try expectSyscallFails(167, "b'/tmp/swap', 0") }

    @Test("swapoff fails with EPERM")
    func swapoff() throws { try expectSyscallFails(168, "b'/tmp/swap'") }

    @Test("acct fails with EPERM")
    func acct() throws { try expectSyscallFails(163, "None") }

    @Test("quotactl fails with EPERM")
    func quotactl() throws {
        try expectSyscallFails(179, "0x80000400, b'/dev/null', 0, buf", setup: "buf = ctypes.create_string_buffer(64)")
    }

    @Test("syslog(SYSLOG_ACTION_READ_ALL) fails with EPERM")
    func syslog() throws {
        try expectSyscallFails(103, "3, buf, 4096", setup: "buf = ctypes.create_string_buffer(4096)")
    }

    @Test("settimeofday fails with EPERM")
    func settimeofday() throws {
        try expectSyscallFails(164, "tv, None", setup: "import time\ntv = (ctypes.c_long * 2)(int(time.time()), 0)")
    }

    @Test("clock_settime fails with EPERM")
    func clockSettime() throws {
        try expectSyscallFails(227, "0, ts", setup: "import time\nts = (ctypes.c_long * 2)(int(time.time()), 0)")
    }

    @Test("personality(ADDR_NO_RANDOMIZE) fails with EPERM")
    func personality() throws { try expectSyscallFails(135, "0x0040000") }

    @Test("clone with CLONE_NEWNS fails with EPERM")
    func cloneNewNamespace() throws { try expectSyscallFails(56, "0x00020000 | 17, 0, 0, 0, 0", forks: true) }

    @Test("clone with CLONE_NEWUSER fails with EPERM")
    func cloneNewUser() throws { try expectSyscallFails(56, "0x10000000 | 17, 0, 0, 0, 0", forks: true) }

    @Test("clone3 fails with ENOSYS (so that libc falls back to clone)")
    func clone3() throws {
        let setup = """
            import struct
            cargs = ctypes.create_string_buffer(88)
            struct.pack_into("<Q", cargs, 0, 0x10000000)
            struct.pack_into("<Q", cargs, 32, 17)
            """
        try expectSyscallFails(435, "cargs, 88", setup: setup, forks: true, errno: ENOSYS)
    }

    @Test("open_by_handle_at fails with EPERM")
    func openByHandleAt() throws {
        let setup = """
            import struct
            fd = os.open("/", os.O_RDONLY)
            handle = ctypes.create_string_buffer(16)
            struct.pack_into("<Ii", handle, 0, 8, 1)
            """
        try expectSyscallFails(304, "fd, handle, 0", setup: setup)
    }

    @Test("name_to_handle_at fails with EPERM")
    func nameToHandleAt() throws {
        let setup = """
            import struct
            handle = ctypes.create_string_buffer(136)
            struct.pack_into("<I", handle, 0, 128)
            mount_id = ctypes.c_int(0)
            """
        try expectSyscallFails(303, "-100, b'/workspace', handle, ctypes.byref(mount_id), 0", setup: setup)
    }

    @Test("ioctl TIOCSTI (typing into a terminal) fails with EPERM")
    func tiocsti() throws {
        try expectSyscallFails(16, "0, 0x5412, ctypes.byref(c)", setup: "c = ctypes.c_char(b'x')")
    }

    @Test("ioctl TIOCLINUX fails with EPERM")
    func tioclinux() throws {
        try expectSyscallFails(16, "0, 0x541C, ctypes.byref(c)", setup: "c = ctypes.c_char(b'\\x02')")
    }

    @Test("A raw IP socket fails with EPERM")
    func rawSocket() throws { try expectSyscallFails(41, "2, 3, 1") }

    @Test("A packet socket fails with EPERM")
    func packetSocket() throws { try expectSyscallFails(41, "17, 3, 0x0300") }

    @Test("A netlink socket fails with EPERM")
    func netlinkSocket() throws { try expectSyscallFails(41, "16, 3, 0") }

    @Test("Control: ordinary fork, threads and TCP/unix sockets still work under the filter")
    func ordinaryCallsStillWork() throws {
        let engine = try AttackEngine()
        let space = try engine.createSpace()
        let exited = try engine.python(
            space,
            """
            import os, socket, threading
            pid = os.fork()
            if pid == 0:
                os._exit(7)
            print(os.waitpid(pid, 0)[1] >> 8)
            t = threading.Thread(target=lambda: print("thread")); t.start(); t.join()
            socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
            a, b = socket.socketpair(); a.send(b"unix"); print(b.recv(4).decode())
            """)
        #expect(exited.stdout == "7\nthread\nunix\n", "\(exited)")
    }
}
