import SpacesProtocol

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
#if canImport(Glibc)
    import Glibc
#endif

/// The engine's state directory: `spaces/<spaceId>/space.json` and `spaces/<spaceId>/workspace/`.
///
/// All host file-system work of the engine happens here; workspace contents are otherwise only touched by
/// the space's worker, inside the space.
struct StateStore: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let root: String

    var spacesDirectory: String { root + "/spaces" }
    func spaceDirectory(_ spaceId: String) -> String { spacesDirectory + "/" + spaceId }
    func workspace(_ spaceId: String) -> String { spaceDirectory(spaceId) + "/workspace" }
    func recordPath(_ spaceId: String) -> String { spaceDirectory(spaceId) + "/space.json" }
    /// Audit logs live apart from the spaces: a destroyed space's log stays.
    var auditDirectory: String { root + "/audit" }
    func auditPath(_ spaceId: String) -> String { auditDirectory + "/" + spaceId + ".jsonl" }

    /// The default: `$XDG_DATA_HOME/agent-spaces`, else `~/.local/share/agent-spaces`.
    static func defaultRoot() -> String {
        let environment = ProcessInfo.processInfo.environment
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") { return xdg + "/agent-spaces" }
        let home = environment["HOME"] ?? "/tmp"
        return home + "/.local/share/agent-spaces"
    }

    func prepare() throws(Failure) {
        try makeDirectory(spacesDirectory, mode: 0o700)
        try makeDirectory(auditDirectory, mode: 0o700)
    }

    func makeDirectory(_ path: String, mode: Int = 0o755) throws(Failure) {
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
        } catch {
            throw Failure(description: "cannot create directory \(path): \(error)")
        }
    }

    /// Writes the record through a temporary file and a rename, so a crash leaves the old or the new one.
    func save(_ record: SpaceRecord) throws(Failure) {
        let path = recordPath(record.spaceId)
        let temporary = path + ".tmp"
        var bytes = record.json.encodedBytes(sortedKeys: true)
        bytes.append(0x0A)
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: temporary))
        } catch {
            throw Failure(description: "cannot write \(temporary): \(error)")
        }
        guard rename(temporary, path) == 0 else {
            throw Failure(description: "cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Every space record found, and a description of each directory that could not be read.
    func loadAll() -> (records: [SpaceRecord], problems: [String]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: spacesDirectory) else {
            return ([], [])
        }
        var records: [SpaceRecord] = []
        var problems: [String] = []
        for name in names.sorted() where name.hasPrefix("sp_") {
            let path = recordPath(name)
            guard let data = FileManager.default.contents(atPath: path) else {
                problems.append("\(path): missing or unreadable")
                continue
            }
            guard let json = try? JSONValue.parse(Array(data)), let record = SpaceRecord(json: json) else {
                problems.append("\(path): not a valid space record")
                continue
            }
            records.append(record)
        }
        return (records, problems)
    }

    func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Copies the contents of a host directory into a workspace.
    func copyContents(of source: String, into destination: String) throws(Failure) {
        var info = stat()
        guard stat(source, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw Failure(description: "'\(source)' is not a directory on the host")
        }
        do {
            for name in try FileManager.default.contentsOfDirectory(atPath: source) {
                try FileManager.default.copyItem(atPath: source + "/" + name, toPath: destination + "/" + name)
            }
        } catch {
            throw Failure(description: "cannot copy '\(source)' into the workspace: \(error)")
        }
    }

    /// The bytes of every file below `path` (symlinks counted as links, not followed).
    func diskUsage(_ path: String) -> Int {
        var info = stat()
        guard lstat(path, &info) == 0 else { return 0 }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { return Int(info.st_size) }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.reduce(0) { $0 + diskUsage(path + "/" + $1) }
    }

    /// How many processes descend from `pid` (not counting it), read from `/proc/PID/task/TID/children`.
    static func descendantCount(of pid: Int32) -> Int {
        var count = 0
        var pending = [pid]
        while let next = pending.popLast() {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(next)/task")) ?? []
            for task in tasks {
                guard let data = FileManager.default.contents(atPath: "/proc/\(next)/task/\(task)/children") else {
                    continue
                }
                for child in String(decoding: data, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                    if let value = Int32(child) {
                        count += 1
                        pending.append(value)
                    }
                }
            }
        }
        return count
    }

    /// Gives a tree to the space's host id, so the space's root owns its workspace. Symlinks are not followed.
    func chown(_ path: String, uid: UInt32, gid: UInt32) {
        guard getuid() == 0 else { return }
        _ = lchown(path, uid, gid)
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR,
            let names = try? FileManager.default.contentsOfDirectory(atPath: path)
        else { return }
        for name in names { chown(path + "/" + name, uid: uid, gid: gid) }
    }
}
