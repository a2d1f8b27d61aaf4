import Crypto
import SpacesProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A space's append-only, hash-chained audit log: one JSON object per line in `audit/<spaceId>.jsonl` of the
/// state directory, which outlives the space.
///
/// Each entry is `{seq, at, kind, spaceId, runId?, batchId?, opId?, data, prevHash, hash}` (on disk with `hash`
/// last, the other keys sorted); `hash` is the
/// SHA-256 of `prevHash` followed by the canonical entry without `hash` (keys sorted, no white space), so any
/// edit, removal or reordering breaks the chain from that entry on. Entries are chained as they are recorded
/// and written with `flush()`, which the engine calls before it acknowledges what they record (a response or a
/// streamed event); a write to the file survives the engine's crash. The chain head and the unwritten bytes
/// are in `state`, a `Mutex`.
final class AuditLog: Sendable {
    static let genesis = String(repeating: "0", count: 64)

    private struct State {
        var seq = 0
        var head = AuditLog.genesis
        var buffer: [UInt8] = []
        var fd: Int32 = -1
        var failure: String?
    }

    let path: String
    let spaceId: String
    private let state = Mutex(State())

    /// Opens (creating) the log and finds its head by reading it.
    init(path: String, spaceId: String) {
        self.path = path
        self.spaceId = spaceId
        let (seq, head) = Self.tail(of: path)
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        state.withLock { state in
            state.seq = seq
            state.head = head
            state.fd = fd
            if fd < 0 { state.failure = "cannot open \(path): \(String(cString: strerror(errno)))" }
        }
    }

    deinit {
        let fd = state.withLock { $0.fd }
        if fd >= 0 { close(fd) }
    }

    /// Chains one entry; it reaches the file at the next `flush()`.
    func record(
        _ kind: String, runId: String? = nil, batchId: String? = nil, opId: String? = nil, data: [String: JSONValue]
    ) {
        let at = Clock.timestamp()
        state.withLock { state in
            state.seq += 1
            var entry: [String: JSONValue] = [
                "seq": JSONValue(state.seq), "at": .string(at), "kind": .string(kind), "spaceId": .string(spaceId),
                "data": .object(data), "prevHash": .string(state.head),
            ]
            if let runId { entry["runId"] = .string(runId) }
            if let batchId { entry["batchId"] = .string(batchId) }
            if let opId { entry["opId"] = .string(opId) }
            // The line is the canonical entry with `"hash"` added last: one encoding serves both (verification
            // re-encodes canonically whatever the order of the keys on disk).
            var line = JSONValue.object(entry).encodedBytes(sortedKeys: true)
            let hash = Self.hash(prev: state.head, canonical: line)
            state.head = hash
            line.removeLast()
            line.append(contentsOf: Array(",\"hash\":\"\(hash)\"}\n".utf8))
            state.buffer.append(contentsOf: line)
        }
    }

    /// Writes every recorded entry. Returns false (and logs the reason once) when the file cannot be written.
    @discardableResult
    func flush() -> Bool {
        state.withLock { state in
            guard !state.buffer.isEmpty else { return true }
            guard state.fd >= 0 else { return false }
            do {
                try FileDescriptorIO.writeAll(state.fd, state.buffer)
                state.buffer.removeAll(keepingCapacity: true)
                return true
            } catch {
                state.failure = "cannot write \(path): \(error)"
                return false
            }
        }
    }

    var failure: String? { state.withLock { $0.failure } }

    /// Removes every entry of the given runs and chains the rest again (new `seq`, `prevHash` and `hash`),
    /// through a temporary file and a rename; then records what was removed, with the head the log had before,
    /// so the removal itself is on the record. Returns how many entries went.
    func prune(runs: Set<String>, reason: String) -> Int {
        let (removed, previousHead) = state.withLock { state -> (Int, String) in
            if !state.buffer.isEmpty, state.fd >= 0, (try? FileDescriptorIO.writeAll(state.fd, state.buffer)) != nil {
                state.buffer.removeAll(keepingCapacity: true)
            }
            let previousHead = state.head
            var kept: [[String: JSONValue]] = []
            var removed = 0
            for line in Self.readLines(path) {
                guard case .object(let entry)? = try? JSONValue.parse(line) else { continue }
                if let runId = entry["runId"]?.stringValue, runs.contains(runId) {
                    removed += 1
                } else {
                    kept.append(entry)
                }
            }
            guard removed > 0 else { return (0, previousHead) }
            var head = Self.genesis
            var bytes: [UInt8] = []
            for (index, original) in kept.enumerated() {
                var entry = original
                entry["hash"] = nil
                entry["seq"] = JSONValue(index + 1)
                entry["prevHash"] = .string(head)
                var line = JSONValue.object(entry).encodedBytes(sortedKeys: true)
                head = Self.hash(prev: head, canonical: line)
                line.removeLast()
                line.append(contentsOf: Array(",\"hash\":\"\(head)\"}\n".utf8))
                bytes.append(contentsOf: line)
            }
            let temporary = path + ".prune"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0, (try? FileDescriptorIO.writeAll(fd, bytes)) != nil, rename(temporary, path) == 0 else {
                if fd >= 0 { close(fd) }
                unlink(temporary)
                return (0, previousHead)
            }
            close(fd)
            if state.fd >= 0 { close(state.fd) }
            state.fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            state.seq = kept.count
            state.head = head
            return (removed, previousHead)
        }
        guard removed > 0 else { return 0 }
        record(
            "retention.applied",
            data: [
                "runs": .array(runs.sorted().map(JSONValue.string)), "removedEntries": JSONValue(removed),
                "reason": .string(reason), "previousHead": .string(previousHead),
            ])
        flush()
        return removed
    }

    static func hash(prev: String, canonical: [UInt8]) -> String {
        var hasher = Crypto.SHA256()
        hasher.update(data: Array(prev.utf8))
        hasher.update(data: canonical)
        return hexString(hasher.finalize())
    }

    /// Lowercase hex of a digest.
    static func hexString(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    // MARK: Reading and verifying

    struct Verification {
        var ok: Bool
        var entries: Int
        var headHash: String
        var firstBadSeq: Int?
    }

    /// Re-reads the log from disk and checks every entry: it parses, its `seq` follows, its `prevHash` is the
    /// previous entry's hash, and its `hash` is right.
    static func verify(path: String) -> Verification {
        let lines = readLines(path)
        var head = genesis
        for (index, line) in lines.enumerated() {
            let expectedSeq = index + 1
            guard let entry = try? JSONValue.parse(line), case .object(var members) = entry,
                members["seq"]?.intValue == expectedSeq, members["prevHash"]?.stringValue == head,
                let hash = members["hash"]?.stringValue
            else {
                return Verification(ok: false, entries: lines.count, headHash: head, firstBadSeq: expectedSeq)
            }
            members["hash"] = nil
            guard Self.hash(prev: head, canonical: JSONValue.object(members).encodedBytes(sortedKeys: true)) == hash
            else {
                return Verification(ok: false, entries: lines.count, headHash: head, firstBadSeq: expectedSeq)
            }
            head = hash
        }
        return Verification(ok: true, entries: lines.count, headHash: head, firstBadSeq: nil)
    }

    /// Entries after `afterSeq`, at most `limit`, and the log's head hash.
    static func read(path: String, afterSeq: Int, limit: Int) -> (entries: [JSONValue], head: String) {
        var entries: [JSONValue] = []
        var head = genesis
        for line in readLines(path) {
            guard let entry = try? JSONValue.parse(line) else { continue }
            if let hash = entry["hash"]?.stringValue { head = hash }
            if let seq = entry["seq"]?.intValue, seq > afterSeq, entries.count < limit { entries.append(entry) }
        }
        return (entries, head)
    }

    /// The last entry's seq and hash (0 and the genesis hash for an empty or missing log).
    static func tail(of path: String) -> (Int, String) {
        guard let last = readLines(path).last, let entry = try? JSONValue.parse(last),
            let seq = entry["seq"]?.intValue, let hash = entry["hash"]?.stringValue
        else { return (0, genesis) }
        return (seq, hash)
    }

    static func readLines(_ path: String) -> [[UInt8]] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes: [UInt8] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
        defer { buffer.deallocate() }
        while let count = try? FileDescriptorIO.read(fd, into: buffer), count > 0 {
            bytes.append(contentsOf: buffer[0..<count])
        }
        return bytes.split(separator: 0x0A, omittingEmptySubsequences: true).map(Array.init)
    }
}
