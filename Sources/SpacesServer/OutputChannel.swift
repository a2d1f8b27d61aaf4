import SpacesEngine
import SpacesProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The protocol's stdout: a private duplicate of fd 1, written one whole line at a time.
///
/// `Mutex` serialises writers so lines never interleave. A write blocks when the client does not read: that
/// back-pressure is intended. A client that closed its end (EPIPE; SIGPIPE is ignored) makes later writes no-ops.
public final class OutputChannel: Sendable {
    private let fd: Int32
    private let closed = Mutex(false)

    public init(fd: Int32) { self.fd = fd }

    public func send(_ message: JSONValue) {
        var bytes = message.encodedBytes()
        bytes.append(0x0A)
        closed.withLock { closed in
            guard !closed else { return }
            do {
                try FileDescriptorIO.writeAll(fd, bytes)
            } catch {
                closed = true
            }
        }
    }

    /// Takes fd 1 for the protocol and points fd 1 at stderr, so nothing else can write protocol lines.
    public static func claimStandardOutput() -> OutputChannel {
        let privateFD = fcntl(1, F_DUPFD_CLOEXEC, 3)
        precondition(privateFD >= 0, "cannot duplicate stdout")
        dup2(2, 1)
        signal(SIGPIPE, SIG_IGN)
        return OutputChannel(fd: privateFD)
    }
}
