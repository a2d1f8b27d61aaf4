import SpacesProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// An engine under test: a shell command with pipes on its stdin and stdout, its stderr in a log file.
///
/// Single-threaded by design: the runner reads stdout with `poll`, so no lock is needed.
public final class EngineProcess {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    let pid: pid_t
    private var input: Int32
    private let output: Int32
    private var buffer: [UInt8] = []
    private var outputClosed = false
    private var exitStatus: Int32?

    /// Starts `/bin/sh -c command` with stderr appended to `logPath`.
    public convenience init(command: String, logPath: String, environment: [String: String] = [:]) throws(Failure) {
        try self.init(arguments: ["/bin/sh", "-c", command], logPath: logPath, environment: environment)
    }

    /// Starts a program (`arguments[0]` is its path) with stderr appended to `logPath`.
    public init(arguments: [String], logPath: String, environment: [String: String] = [:]) throws(Failure) {
        var inPipe: [Int32] = [0, 0]
        var outPipe: [Int32] = [0, 0]
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0 else {
            throw Failure(description: "pipe failed: \(String(cString: strerror(errno)))")
        }
        for fd in inPipe + outPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var merged: [String: String] = [:]
        var index = 0
        while let entry = environ[index] {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                merged[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            index += 1
        }
        for (key, value) in environment { merged[key] = value }
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        close(inPipe[0])
        close(outPipe[1])
        guard status == 0 else {
            close(inPipe[1])
            close(outPipe[0])
            throw Failure(description: "cannot start the engine: \(String(cString: strerror(status)))")
        }
        self.pid = pid
        self.input = inPipe[1]
        self.output = outPipe[0]
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        if input >= 0 { close(input) }
        close(output)
    }

    public func send(_ bytes: [UInt8]) throws(Failure) {
        guard input >= 0 else { throw Failure(description: "stdin is already closed") }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(input, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "writing to the engine failed: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }

    public func closeInput() {
        if input >= 0 {
            close(input)
            input = -1
        }
    }

    /// The next line the engine writes, or nil at end-of-file; throws after `timeoutMs` without one.
    public func nextLine(timeoutMs: Int) throws(Failure) -> [UInt8]? {
        let deadline = Self.now() + timeoutMs
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            if outputClosed {
                if buffer.isEmpty { return nil }
                defer { buffer = [] }
                return buffer
            }
            let remaining = deadline - Self.now()
            guard remaining > 0 else {
                throw Failure(description: "no output from the engine within \(timeoutMs) ms")
            }
            var descriptor = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(min(remaining, 1000)))
            if ready < 0 && errno != EINTR {
                throw Failure(description: "poll failed: \(String(cString: strerror(errno)))")
            }
            if ready > 0 { try fill() }
        }
    }

    private func fill() throws(Failure) {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let count = chunk.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR || errno == EAGAIN { return }
            throw Failure(description: "reading from the engine failed: \(String(cString: strerror(errno)))")
        }
        if count == 0 {
            outputClosed = true
        } else {
            buffer.append(contentsOf: chunk[0..<count])
        }
    }

    /// Waits for the engine to exit; kills it after `timeoutMs`. Returns the exit code (128+N for signal N).
    public func waitForExit(timeoutMs: Int) -> Int32 {
        if let exitStatus { return exitStatus }
        let deadline = Self.now() + timeoutMs
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { break }
            if Self.now() > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                exitStatus = 255
                return 255
            }
            usleep(2_000)
        }
        let code: Int32 = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        exitStatus = code
        return code
    }

    static func now() -> Int {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return spec.tv_sec * 1000 + spec.tv_nsec / 1_000_000
    }
}
