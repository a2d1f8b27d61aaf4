import SpacesConformance
import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A host that lacks a layer: the engine and `spaces doctor` run under a seccomp filter (installed by a small
/// Python program before it execs them) that refuses to create user namespaces, as a locked-down host would.
@Suite("A host without user namespaces (needs seccomp)")
struct MissingLayerTests {
    /// Python that refuses unshare and clone(CLONE_NEWUSER) with EPERM and clone3 with ENOSYS, then execs argv.
    static let withoutUserNamespaces = """
        import ctypes, struct, os, sys
        def op(code, k, jt=0, jf=0): return struct.pack("HBBI", code, jt, jf, k)
        LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
        EPERM, ENOSYS, ALLOW = 0x00050001, 0x00050026, 0x7fff0000
        program = b"".join([
            op(LD, 0), op(JEQ, 272, 0, 1), op(RET, EPERM), op(JEQ, 435, 0, 1), op(RET, ENOSYS),
            op(JEQ, 56, 0, 3), op(LD, 16), op(JSET, 0x10000000, 0, 1), op(RET, EPERM), op(RET, ALLOW)])
        buffer = ctypes.create_string_buffer(program)
        class Program(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        fprog = Program(len(program) // 8, ctypes.addressof(buffer))
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(38, 1, 0, 0, 0) == 0
        assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()
        os.execv(sys.argv[1], sys.argv[1:])
        """

    @Test("spaces doctor names the missing layer and its fix, and exits 1")
    func doctorNamesTheMissingLayer() throws {
        var template = Array("/tmp/spaces-doctor-test-XXXXXX".utf8CString)
        let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        defer { _ = system("rm -rf '\(directory)'") }
        let process = try EngineProcess(
            arguments: ["/usr/bin/python3", "-c", Self.withoutUserNamespaces, AttackEngine.binary, "doctor"],
            logPath: directory + "/doctor.log")
        process.closeInput()
        var output = ""
        while let line = try process.nextLine(timeoutMs: 60_000) {
            output += String(decoding: line, as: UTF8.self) + "\n"
        }
        #expect(process.waitForExit(timeoutMs: 30_000) == 1, "\(output)")
        #expect(output.contains("MISSING user namespaces"), "\(output)")
        #expect(output.contains("fix:"), "\(output)")
        #expect(output.contains("this host cannot run spaces yet"), "\(output)")
    }

    @Test("spaces/create answers -32020 naming the missing layer, and the engine keeps serving")
    func createNamesTheMissingLayer() throws {
        var template = Array("/tmp/spaces-nouserns-XXXXXX".utf8CString)
        let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        defer { _ = system("rm -rf '\(directory)'") }
        let process = try EngineProcess(
            arguments: [
                "/usr/bin/python3", "-c", Self.withoutUserNamespaces, AttackEngine.binary, "serve", "--state-dir",
                directory + "/state", "--pool", "0",
            ],
            logPath: directory + "/engine.log")
        defer {
            process.closeInput()
            _ = process.waitForExit(timeoutMs: 20_000)
        }
        let client = EngineClient(process: process, timeoutMs: 60_000)
        let hello = try client.call("initialize", ["protocolVersion": "0.1"])
        #expect(hello["isolation"]?["user"] == false)
        let response = try client.awaitResponse(id: client.send("spaces/create", ["name": "nope"]))
        let error = response["error"]
        #expect(error?["code"] == -32020, "\(response)")
        #expect(error?["message"]?.stringValue?.contains("user namespaces") == true, "\(response)")
        #expect(error?["data"]?["hint"]?.stringValue?.contains("--unsafe-no-isolation") == true, "\(response)")
        #expect(try client.call("spaces/list")["spaces"] == [])
    }
}
