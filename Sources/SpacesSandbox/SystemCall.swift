#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

// The one place this module calls the C library and reads `errno` (STYLE.md, "Wrap each syscall once").

/// Runs `call` until it does not fail with EINTR, and turns a -1 result into a `SandboxError` for `step`.
@discardableResult
func systemCall<Result: FixedWidthInteger>(
    _ step: String,
    _ detail: @autoclosure () -> String,
    _ call: () -> Result
) throws(SandboxError) -> Result {
    while true {
        let result = call()
        if result != -1 {
            return result
        }
        let number = errno
        if number != EINTR {
            throw SandboxError(step: step, errno: number, detail: detail())
        }
    }
}

/// For the calls that return an error number instead of setting errno (posix_spawn and its helpers).
func systemCallReturningError(
    _ step: String,
    _ detail: @autoclosure () -> String,
    _ call: () -> Int32
) throws(SandboxError) {
    let number = call()
    if number != 0 {
        throw SandboxError(step: step, errno: number, detail: detail())
    }
}

/// close(2) for descriptors this module owns. Errors are ignored: Linux releases the descriptor whatever
/// close reports, and retrying could close a descriptor another thread just received.
func closeDescriptor(_ fd: Int32) {
    _ = close(fd)
}

/// `O_PATH` (Linux 2.6.39): a descriptor that names a file without opening it for reading, which is all a bind
/// mount source needs. Not exported to Swift by Glibc's module map (it is `_GNU_SOURCE`), and the same value on
/// every architecture Swift supports.
let openPathOnly: Int32 = 0o10_000_000

/// `pipe2(fds, O_CLOEXEC)`: a pipe created close-on-exec atomically, so that a process another engine thread
/// spawns at the same moment cannot inherit it (an inherited lifeline write end would keep a space alive).
/// `pipe2` is `_GNU_SOURCE` and missing from Swift's Glibc module, so it is looked up once at run time.
func makePipe(_ step: String) throws(SandboxError) -> (read: Int32, write: Int32) {
    guard let pipe2 = pipe2Function else {
        throw SandboxError(step: step, errno: ENOSYS, detail: "pipe2 is not available in this C library")
    }
    var fds: [Int32] = [-1, -1]
    try systemCall(step, "pipe2") { fds.withUnsafeMutableBufferPointer { pipe2($0.baseAddress, O_CLOEXEC) } }
    return (fds[0], fds[1])
}

/// A pipe whose both ends are close-on-exec from the start (`pipe2(O_CLOEXEC)`), so that no program another
/// thread starts meanwhile inherits it; `[read, write]`, or nil with `errno` set.
package func closeOnExecPipe() -> [Int32]? {
    guard let pipe2 = pipe2Function else {
        errno = ENOSYS
        return nil
    }
    var fds: [Int32] = [-1, -1]
    let result = fds.withUnsafeMutableBufferPointer { pipe2($0.baseAddress, O_CLOEXEC) }
    return result == 0 ? fds : nil
}

private typealias Pipe2Function = @convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Int32

/// dlsym with a null handle is RTLD_DEFAULT: the first `pipe2` in the process's global symbol scope (libc's).
private let pipe2Function: Pipe2Function? = dlsym(nil, "pipe2").map { unsafeBitCast($0, to: Pipe2Function.self) }

/// Sends `signal` to `pid`; false when the process does not exist (any more).
@discardableResult
func sendSignal(_ signal: Int32, to pid: pid_t) -> Bool {
    kill(pid, signal) == 0
}

/// The shell convention for a wait status: the exit code, or 128 + the signal that ended the process.
/// (WIFEXITED and friends are C macros, which Swift cannot import.)
func exitCode(fromWaitStatus status: Int32) -> Int32 {
    let signal = status & 0x7f
    return signal == 0 ? (status >> 8) & 0xff : 128 + signal
}

/// Reads `fd` until end-of-file.
func readToEnd(_ fd: Int32, step: String, _ detail: String = "read") throws(SandboxError) -> [UInt8] {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = try systemCall(step, detail) {
            buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        }
        if count == 0 {
            return bytes
        }
        bytes.append(contentsOf: buffer[..<count])
    }
}

/// The contents of a small text file (a /proc or /sys setting), or nil when it cannot be read.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        return nil
    }
    defer { closeDescriptor(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR {
            continue
        }
        guard count > 0 else {
            return count == 0 ? String(decoding: bytes, as: UTF8.self) : nil
        }
        bytes.append(contentsOf: buffer[..<count])
    }
}

/// Whether `path` exists (following symlinks).
func pathExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}

/// Whether `path` is an executable regular file.
func isExecutableFile(_ path: String) -> Bool {
    var status = stat()
    return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
}
