import SpacesConformance
import SpacesProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

struct AttackFailure: Error, CustomStringConvertible {
    var description: String
}

/// A real engine (the `spaces` binary built beside this test bundle) on a fresh state directory, driven through
/// its stdin and stdout like any client.
///
/// Requests may overlap: `send` returns the request's id at once and `response(id)` waits for that answer, keeping
/// every other answer that arrives meanwhile (the engine answers in any order), so two spaces can be kept busy
/// at the same time from one thread.
final class AttackEngine {
    let client: EngineClient
    let process: EngineProcess
    /// A fresh directory on the host: `state` (the engine's state directory) and `engine.log` live in it.
    let stateDir: String
    /// The engine's `initialize` result.
    private(set) var initializeResult: JSONValue = .null
    private var responses: [Int: JSONValue] = [:]
    private(set) var notifications: [JSONValue] = []
    /// Answers `capabilities/invoke` requests (params `{spaceId, capability, method, params}`): a result, or an
    /// error message. nil leaves them unanswered.
    var onInvoke: ((JSONValue) -> Result<JSONValue, AttackFailure>?)?
    /// Every `capabilities/invoke` request the engine sent.
    private(set) var invocations: [JSONValue] = []

    /// The built `spaces` executable: `SPACES_BIN`, else beside the test bundle.
    static var binary: String {
        if let explicit = getenv("SPACES_BIN") { return String(cString: explicit) }
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        var directory = String(decoding: buffer[0..<max(0, count)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        for _ in 0..<4 {
            directory = String(directory[..<(directory.lastIndex(of: "/") ?? directory.endIndex)])
            if access(directory + "/spaces", X_OK) == 0 { return directory + "/spaces" }
        }
        return "spaces"
    }

    /// `environment` is added to the engine's environment (nothing of it may reach a space).
    /// A new engine; with `reusing`, one started again on another engine's state directory.
    init(arguments: [String] = [], environment: [String: String] = [:], reusing: String? = nil) throws {
        stateDir = reusing ?? Host.makeTemporaryDirectory()
        process = try EngineProcess(
            arguments: [Self.binary, "serve", "--state-dir", stateDir + "/state", "--log-level", "warning"] + arguments,
            logPath: stateDir + "/engine.log", environment: environment)
        client = EngineClient(process: process, timeoutMs: 60_000)
        initializeResult = try call(
            "initialize", ["protocolVersion": "0.1", "capabilities": ["capabilityHandlers": true]])
    }

    deinit {
        process.closeInput()
        _ = process.waitForExit(timeoutMs: 20_000)
        _ = system("rm -rf '\(stateDir)'")
    }

    // MARK: requests

    /// Sends a request without waiting; returns its id.
    func send(_ method: String, _ params: JSONValue) -> Int { client.send(method, params) }

    /// Sends a notification (no id, no answer).
    func notify(_ method: String, _ params: JSONValue) throws {
        let message: JSONValue = ["jsonrpc": "2.0", "method": .string(method), "params": params]
        try process.send(message.encodedBytes() + [0x0A])
    }

    /// The whole response message (`result` or `error`) for request `id`.
    func response(_ id: Int, timeoutMs: Int = 60_000) throws -> JSONValue {
        let deadline = Host.nowMs() + timeoutMs
        while true {
            if let message = responses.removeValue(forKey: id) { return message }
            try readOne(untilMs: deadline)
        }
    }

    /// The `result` of request `id`; a JSON-RPC error is thrown.
    func result(_ id: Int, timeoutMs: Int = 60_000) throws -> JSONValue {
        let message = try response(id, timeoutMs: timeoutMs)
        if let error = message["error"] {
            throw AttackFailure(description: "JSON-RPC error: \(error)")
        }
        return message["result"] ?? .null
    }

    @discardableResult
    func call(_ method: String, _ params: JSONValue = .object([:]), timeoutMs: Int = 60_000) throws -> JSONValue {
        try result(send(method, params), timeoutMs: timeoutMs)
    }

    /// Reads until a notification matching `predicate` arrives (or one already did); returns it.
    func waitForNotification(timeoutMs: Int = 30_000, _ predicate: (JSONValue) -> Bool) throws -> JSONValue {
        let deadline = Host.nowMs() + timeoutMs
        while true {
            if let found = notifications.first(where: predicate) { return found }
            try readOne(untilMs: deadline)
        }
    }

    private func readOne(untilMs deadline: Int) throws {
        let remaining = deadline - Host.nowMs()
        guard remaining > 0 else { throw AttackFailure(description: "no answer from the engine in time") }
        guard let line = try process.nextLine(timeoutMs: remaining) else {
            throw AttackFailure(description: "the engine closed its output")
        }
        let message = try JSONValue.parse(line)
        if message["method"] == "capabilities/invoke", let id = message["id"] {
            invocations.append(message["params"] ?? .null)
            let answer: JSONValue? =
                switch onInvoke?(message["params"] ?? .null) {
                case .success(let result)?: ["jsonrpc": "2.0", "id": id, "result": result]
                case .failure(let failure)?:
                    [
                        "jsonrpc": "2.0", "id": id,
                        "error": [
                            "code": -32000, "message": .string(failure.description), "data": ["hint": "check the CRM"],
                        ],
                    ]
                case nil: nil
                }
            if let answer { try process.send(answer.encodedBytes() + [0x0A]) }
        } else if let id = message["id"]?.intValue {
            responses[id] = message
        } else if message["id"] == .null, let error = message["error"] {
            throw AttackFailure(description: "the engine refused a request line: \(error)")
        } else if message["method"] != nil {
            notifications.append(message)
        }
    }

    // MARK: spaces and operations

    func createSpace(_ params: JSONValue = .object([:])) throws -> String {
        try call("spaces/create", params)["spaceId"]?.stringValue ?? ""
    }

    func destroySpace(_ spaceId: String) throws {
        try call("spaces/destroy", ["spaceId": .string(spaceId)])
    }

    /// The space's workspace directory on the host.
    func workspacePath(_ spaceId: String) -> String { "\(stateDir)/state/spaces/\(spaceId)/workspace" }

    private func submitParams(_ spaceId: String, _ operations: [JSONValue], _ extra: [String: JSONValue]) -> JSONValue {
        var params = extra
        params["spaceId"] = .string(spaceId)
        params["operations"] = .array(operations)
        return .object(params)
    }

    /// Submits operations and returns the batch result.
    func submit(_ spaceId: String, _ operations: [JSONValue], extra: [String: JSONValue] = [:]) throws -> JSONValue {
        try call("operations/submit", submitParams(spaceId, operations, extra))
    }

    /// Submits operations without waiting; returns the request id (`result(id)` is the batch result).
    func submitLater(_ spaceId: String, _ operations: [JSONValue], extra: [String: JSONValue] = [:]) -> Int {
        send("operations/submit", submitParams(spaceId, operations, extra))
    }

    /// Runs a shell command in the space and returns its `command.exited` event (or the failure event).
    func shell(_ spaceId: String, _ command: String, timeoutMs: Int = 20_000) throws -> JSONValue {
        try submit(spaceId, [Op.shell(command, timeoutMs: timeoutMs)]).exited
    }

    /// Runs a program (no shell) in the space and returns its `command.exited` event (or the failure event).
    func run(_ spaceId: String, _ argv: [String], timeoutMs: Int = 20_000) throws -> JSONValue {
        try submit(spaceId, [Op.argv(argv, timeoutMs: timeoutMs)]).exited
    }

    /// Runs a TypeScript program in the space and returns its `command.exited` event.
    func typescript(_ spaceId: String, _ source: String, timeoutMs: Int = 20_000) throws -> JSONValue {
        try submit(spaceId, [Op.typescript(source, timeoutMs: timeoutMs)]).exited
    }

    /// Runs a Python program (`/usr/bin/python3` inside the space) and returns its `command.exited` event.
    func python(_ spaceId: String, _ source: String, timeoutMs: Int = 20_000) throws -> JSONValue {
        try run(spaceId, ["python3", "-c", source], timeoutMs: timeoutMs)
    }
}

/// Operation objects.
enum Op {
    static func shell(_ command: String, timeoutMs: Int = 20_000, extra: [String: JSONValue] = [:]) -> JSONValue {
        var op: [String: JSONValue] = [
            "kind": "command.run", "command": .string(command), "timeoutMs": JSONValue(timeoutMs),
        ]
        op.merge(extra) { $1 }
        return .object(op)
    }

    static func argv(_ argv: [String], timeoutMs: Int = 20_000) -> JSONValue {
        ["kind": "command.run", "argv": .array(argv.map { .string($0) }), "timeoutMs": JSONValue(timeoutMs)]
    }

    static func typescript(_ source: String, timeoutMs: Int = 20_000) -> JSONValue {
        ["kind": "code.run", "language": "typescript", "source": .string(source), "timeoutMs": JSONValue(timeoutMs)]
    }

    static func write(_ path: String, _ content: String) -> JSONValue {
        ["kind": "file.write", "path": .string(path), "content": .string(content)]
    }

    static func read(_ path: String) -> JSONValue { ["kind": "file.read", "path": .string(path)] }
}

extension JSONValue {
    /// A batch result's events.
    var events: [JSONValue] { self["events"]?.arrayValue ?? [] }

    /// A batch result's first event of `type`.
    func event(_ type: String) -> JSONValue? { events.first { $0["type"]?.stringValue == type } }

    /// A batch result's `command.exited` event, else its last event.
    var exited: JSONValue { event("command.exited") ?? events.last ?? .null }

    /// A batch result's `operation.failed` error code (of its first failed operation).
    var failureCode: String? { event("operation.failed")?["error"]?["code"]?.stringValue }

    /// The events of one operation of a batch result.
    func events(ofOp opId: String) -> [JSONValue] { events.filter { $0["opId"]?.stringValue == opId } }

    var stdout: String { self["stdout"]?.stringValue ?? "" }
    var stderr: String { self["stderr"]?.stringValue ?? "" }
    var exitCode: Int? { self["exitCode"]?.intValue }
}

/// Asserts that every operation of `result` was refused by the workspace boundary: `policy.denied` with rule
/// `workspace.boundary`, then `operation.failed` with `DENIED`, and never started.
func expectBoundaryDenied(_ result: JSONValue, operations: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    for index in 1...operations {
        let events = result.events(ofOp: "op_\(index)")
        let denied = events.first { $0["type"] == "policy.denied" }
        #expect(denied?["rule"] == "workspace.boundary", "op_\(index): \(events)", sourceLocation: sourceLocation)
        let failed = events.first { $0["type"] == "operation.failed" }
        #expect(failed?["error"]?["code"] == "DENIED", "op_\(index): \(events)", sourceLocation: sourceLocation)
        #expect(
            !events.contains { $0["type"] == "operation.started" }, "op_\(index) started: \(events)",
            sourceLocation: sourceLocation)
    }
}

/// Asserts that every operation of `result` failed with `code` (the worker's refusal) after starting.
func expectEveryOperationFailed(
    _ result: JSONValue, operations: Int, code: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    for index in 1...operations {
        let events = result.events(ofOp: "op_\(index)")
        let failed = events.first { $0["type"] == "operation.failed" }
        #expect(
            failed?["error"]?["code"]?.stringValue == code, "op_\(index): \(events)", sourceLocation: sourceLocation)
        #expect(
            !events.contains { $0["type"] == "policy.denied" }, "op_\(index): \(events)", sourceLocation: sourceLocation
        )
    }
}

/// Python source that calls one raw system call through ctypes and prints `errno=N` when it failed or `ok=R`
/// when it returned R. `setup` runs first (it may define variables used in `arguments`); a call that clones
/// (`forks: true`) makes the child exit at once.
func syscallProbe(_ number: Int, _ arguments: String, setup: String = "", forks: Bool = false) -> String {
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def L(v):
        return ctypes.c_long(v) if isinstance(v, int) else v
    \(setup)
    args = [\(arguments)]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(\(number)), *[L(a) for a in args])
    e = ctypes.get_errno()
    if \(forks ? "True" : "False") and r == 0:
        os._exit(0)
    if r == -1:
        print("errno=%d" % e)
        print(os.strerror(e), file=sys.stderr)
    else:
        if \(forks ? "True" : "False"):
            os.waitpid(r, 0)
        print("ok=%d" % r)
    """
}

/// The host side of an attack: canaries, processes, listeners.
enum Host {
    static func nowMs() -> Int {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return spec.tv_sec * 1000 + spec.tv_nsec / 1_000_000
    }

    /// A unique marker for names and command lines (letters and digits only).
    static func marker(_ prefix: String = "atk") -> String {
        var generator = SystemRandomNumberGenerator()
        return prefix + String(UInt64.random(in: 1 << 60..<UInt64.max, using: &generator), radix: 16)
    }

    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count - 1)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    static func makeTemporaryDirectory() -> String {
        var template = Array("/tmp/spaces-attack-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    @discardableResult
    static func write(_ path: String, _ content: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(content.utf8)
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }

    static func exists(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0
    }

    static func status(_ path: String) -> stat? {
        var status = stat()
        return lstat(path, &status) == 0 ? status : nil
    }

    static func remove(_ path: String) { _ = system("rm -rf '\(path)'") }

    /// A canary file under the host's /tmp with unique content; removed by `remove`.
    static func plantCanary(in directory: String = "/tmp") -> (path: String, content: String) {
        let name = marker("spaces-attack-canary-")
        let content = "canary " + marker() + "\n"
        let path = directory + "/" + name
        write(path, content)
        return (path, content)
    }

    /// What a host shell command prints (stdout and whatever it redirects there).
    static func capture(_ command: String) -> String {
        guard let pipe = popen(command, "r") else { return "" }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, pipe)
            if count <= 0 { break }
            output += buffer[0..<count]
        }
        pclose(pipe)
        return String(decoding: output, as: UTF8.self)
    }

    /// Host processes whose command line contains `marker`.
    static func processes(containing marker: String) -> [Int32] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var found: [Int32] = []
        let me = getpid()
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            guard let pid = Int32(name), pid != me else { continue }
            guard let cmdline = read("/proc/\(pid)/cmdline") else { continue }
            if cmdline.contains(marker) { found.append(pid) }
        }
        return found
    }

    /// Waits until `condition` holds, polling every 20 ms; returns whether it held in time.
    @discardableResult
    static func waitUntil(timeoutMs: Int, _ condition: () -> Bool) -> Bool {
        let deadline = nowMs() + timeoutMs
        while true {
            if condition() { return true }
            if nowMs() > deadline { return false }
            usleep(20_000)
        }
    }

    /// The pid of the engine serving `stateDir` (its command line names the state directory).
    static func enginePid(stateDir: String) -> Int32? {
        processes(containing: stateDir + "/state").first { pid in
            let arguments = (read("/proc/\(pid)/cmdline") ?? "").split(separator: "\0")
            return arguments.count > 1 && arguments[1] == "serve"
        }
    }

    /// Starts a host process (not in any space) and returns its pid.
    static func spawn(_ arguments: [String]) -> pid_t {
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        _ = posix_spawn(&pid, arguments[0], nil, nil, argv, environ)
        return pid
    }

    static func killAndReap(_ pid: pid_t) {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    static func isAlive(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0 && kill(pid, 0) == 0
    }
}

/// A listening socket on the host that an attack tries to reach from inside a space.
final class HostListener {
    let fd: Int32
    private(set) var port: Int = 0
    let path: String?

    /// TCP on 127.0.0.1 (or ::1 with `ipv6`), on a free port.
    init(ipv6: Bool = false) throws {
        path = nil
        fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw AttackFailure(description: "socket: \(errno)") }
        if ipv6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_addr = in6addr_loopback
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
            guard bound == 0 else { throw AttackFailure(description: "bind ::1: \(errno)") }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else { throw AttackFailure(description: "bind 127.0.0.1: \(errno)") }
        }
        try listenNonBlocking()
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        // sin_port and sin6_port sit at the same offset
        port = Int(UInt16(bigEndian: storage.sin6_port))
    }

    /// A unix socket at `path` on the host, or in the abstract namespace when `path` starts with "@".
    init(unixPath: String) throws {
        path = unixPath
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw AttackFailure(description: "socket: \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(unixPath.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() where index < buffer.count - 1 { buffer[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw AttackFailure(description: "bind \(unixPath): \(errno)") }
        try listenNonBlocking()
    }

    private func listenNonBlocking() throws {
        guard listen(fd, 16) == 0 else { throw AttackFailure(description: "listen: \(errno)") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Whether any connection reached the listener (accepting it, without blocking).
    var receivedConnection: Bool {
        let accepted = accept(fd, nil, nil)
        if accepted >= 0 {
            close(accepted)
            return true
        }
        return false
    }

    deinit {
        close(fd)
        if let path, !path.hasPrefix("@") { unlink(path) }
    }
}

/// A shell loop that keeps a space's CPU busy for about a second and prints `busy-done 200000`.
let busyLoop = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo busy-done $i"

/// Runs `attack` in one space while `busySpace` runs `busyLoop`; checks that the busy space's command completed
/// normally, that the engine still answers, and that the attacked space still runs a command afterwards.
/// Returns the attack's batch result.
func whileAnotherSpaceIsBusy(
    _ engine: AttackEngine, attacked: String, busy: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ attack: () throws -> JSONValue
) throws -> JSONValue {
    let busyRequest = engine.submitLater(busy, [Op.shell(busyLoop, timeoutMs: 60_000)])
    let result = try attack()
    let busyExited = try engine.result(busyRequest).exited
    #expect(busyExited.exitCode == 0, "busy space: \(busyExited)", sourceLocation: sourceLocation)
    #expect(busyExited.stdout == "busy-done 200000\n", "busy space: \(busyExited)", sourceLocation: sourceLocation)
    let listed = try engine.call("spaces/list")["spaces"]?.arrayValue ?? []
    #expect(listed.count == 2, sourceLocation: sourceLocation)
    let after = try engine.shell(attacked, "echo still-alive")
    #expect(after.stdout == "still-alive\n", "attacked space afterwards: \(after)", sourceLocation: sourceLocation)
    return result
}
