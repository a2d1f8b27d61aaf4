public import SpacesProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// Runs golden cases against an engine command and reports each case's first difference.
public struct ConformanceRunner {
    /// What a case run found.
    public struct CaseResult: Sendable {
        public var name: String
        public var passed: Bool
        public var failure: String?
        public var messagesChecked: Int
        public var durationMs: Int
    }

    /// Checks every message sent and received; returns problems (empty when the message is valid).
    public typealias Validator = @Sendable (_ message: JSONValue, _ direction: Direction, _ method: String?) -> [String]

    public enum Direction: Sendable {
        case sent
        case received
    }

    /// A shell command; `{stateDir}` is replaced by a fresh directory for each case.
    public var engineCommand: String
    public var timeoutMs: Int
    public var validator: Validator?
    public var environment: [String: String]

    public init(
        engineCommand: String, timeoutMs: Int = 20_000, validator: Validator? = nil, environment: [String: String] = [:]
    ) {
        self.engineCommand = engineCommand
        self.timeoutMs = timeoutMs
        self.validator = validator
        self.environment = environment
    }

    struct CaseFailure: Error {
        var message: String
    }

    public func run(_ fixture: Fixture) -> CaseResult {
        let started = EngineProcess.now()
        var template = Array("/tmp/spaces-conformance-XXXXXX".utf8CString)
        let stateDir = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let pointer = mkdtemp(buffer.baseAddress!) else { return nil }
            return String(cString: pointer)
        }
        guard let stateDir else {
            return CaseResult(
                name: fixture.name, passed: false, failure: "mkdtemp failed", messagesChecked: 0, durationMs: 0)
        }
        defer { removeTree(stateDir) }
        let logPath = stateDir + ".log"
        defer { unlink(logPath) }
        var checked = 0
        do {
            try execute(fixture, stateDir: stateDir, logPath: logPath, checked: &checked)
            return CaseResult(
                name: fixture.name, passed: true, failure: nil, messagesChecked: checked,
                durationMs: EngineProcess.now() - started)
        } catch {
            let log = tail(of: logPath, lines: 15)
            return CaseResult(
                name: fixture.name, passed: false,
                failure: error.message + (log.isEmpty ? "" : "\n    engine stderr (last lines):\n" + log),
                messagesChecked: checked, durationMs: EngineProcess.now() - started)
        }
    }

    func start(stateDir: String, logPath: String, arguments: String) throws(CaseFailure) -> EngineProcess {
        do {
            return try EngineProcess(
                command: engineCommand.replacingAll("{stateDir}", with: stateDir) + arguments, logPath: logPath,
                environment: environment)
        } catch {
            throw CaseFailure(message: error.description)
        }
    }

    func execute(_ fixture: Fixture, stateDir: String, logPath: String, checked: inout Int) throws(CaseFailure) {
        var arguments = ""
        if case .engineArguments(let extra)? = fixture.steps.first { arguments = " " + extra }
        var engine = try start(stateDir: stateDir, logPath: logPath, arguments: arguments)
        var matcher = Matcher()
        var methods: [JSONValue: String] = [:]

        func send(_ text: String, terminator: [UInt8] = [0x0A]) throws(CaseFailure) {
            let line = matcher.substitute(text)
            if let message = try? JSONValue.parse(line) {
                for request in (message.arrayValue ?? [message]) {
                    if let id = request["id"], let method = request["method"]?.stringValue { methods[id] = method }
                }
                if let validator {
                    let problems = (message.arrayValue ?? [message]).flatMap { validator($0, .sent, nil) }
                    if !problems.isEmpty {
                        throw CaseFailure(
                            message: "sent message fails the schema: \(problems.joined(separator: "; "))\n    \(line)")
                    }
                }
            }
            do {
                try engine.send(Array(line.utf8) + terminator)
            } catch {
                throw CaseFailure(message: error.description)
            }
        }

        func receive() throws(CaseFailure) -> JSONValue {
            let bytes: [UInt8]?
            do {
                bytes = try engine.nextLine(timeoutMs: timeoutMs)
            } catch {
                throw CaseFailure(message: error.description)
            }
            guard let bytes else { throw CaseFailure(message: "the engine closed stdout while a message was expected") }
            guard let message = try? JSONValue.parse(bytes) else {
                throw CaseFailure(
                    message: "the engine wrote a line that is not JSON: \(String(decoding: bytes, as: UTF8.self))")
            }
            checked += 1
            if let validator {
                for element in message.arrayValue ?? [message] {
                    let method = element["id"].flatMap { methods[$0] }
                    let problems = validator(element, .received, method)
                    if !problems.isEmpty {
                        throw CaseFailure(
                            message:
                                "received message fails the schema: \(problems.joined(separator: "; "))\n    \(message)"
                        )
                    }
                }
            }
            return message
        }

        func expectNothingMore() throws(CaseFailure) {
            engine.closeInput()
            let bytes: [UInt8]?
            do {
                bytes = try engine.nextLine(timeoutMs: timeoutMs)
            } catch {
                throw CaseFailure(message: error.description)
            }
            if let bytes {
                throw CaseFailure(message: "unexpected output: \(String(decoding: bytes, as: UTF8.self))")
            }
        }

        for (index, step) in fixture.steps.enumerated() {
            let where_ = "step \(index + 1)"
            switch step {
            case .send(let text):
                try send(text)
            case .sendCRLF(let text):
                try send(text, terminator: [0x0D, 0x0A])
            case .sendOversized(let count):
                do {
                    try engine.send(
                        [UInt8(ascii: "{")] + [UInt8](repeating: UInt8(ascii: "a"), count: max(0, count - 1)) + [0x0A])
                } catch {
                    throw CaseFailure(message: error.description)
                }
            case .expect(let expected):
                let actual = try receive()
                if let difference = matcher.mismatch(expected: expected, actual: actual) {
                    throw CaseFailure(
                        message: "\(where_): \(difference)\n    expected: \(expected)\n    actual:   \(actual)")
                }
            case .expectUnordered(let group):
                var remaining = group
                while !remaining.isEmpty {
                    let actual = try receive()
                    var differences: [String] = []
                    var matchedIndex: Int?
                    for (position, expected) in remaining.enumerated() {
                        var trial = matcher
                        if let difference = trial.mismatch(expected: expected, actual: actual) {
                            differences.append(difference)
                        } else {
                            matcher = trial
                            matchedIndex = position
                            break
                        }
                    }
                    guard let matchedIndex else {
                        throw CaseFailure(
                            message: "\(where_): \(actual) matches none of the \(remaining.count) expected messages: "
                                + differences.joined(separator: " | "))
                    }
                    remaining.remove(at: matchedIndex)
                }
            case .closeInput:
                engine.closeInput()
            case .expectExit(let code):
                try expectNothingMore()
                let status = engine.waitForExit(timeoutMs: timeoutMs)
                guard status == code else {
                    throw CaseFailure(message: "\(where_): exit status \(status), expected \(code)")
                }
            case .restart:
                try expectNothingMore()
                let status = engine.waitForExit(timeoutMs: timeoutMs)
                guard status == 0 else {
                    throw CaseFailure(message: "\(where_): engine exited with \(status) on restart")
                }
                engine = try start(stateDir: stateDir, logPath: logPath, arguments: arguments)
                methods = [:]
            case .sleep(let milliseconds):
                usleep(UInt32(milliseconds) * 1000)
            case .engineArguments:
                break
            }
        }
        try expectNothingMore()
        let status = engine.waitForExit(timeoutMs: timeoutMs)
        guard status == 0 else { throw CaseFailure(message: "the engine exited with \(status) at end of input") }
    }

    func tail(of path: String, lines count: Int) -> String {
        guard let file = fopen(path, "r") else { return "" }
        defer { fclose(file) }
        var lines: [String] = []
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            lines.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            if lines.count > count { lines.removeFirst() }
        }
        return lines.map { "      " + $0 }.joined()
    }

    func removeTree(_ path: String) {
        let argv: [UnsafeMutablePointer<CChar>?] = (["/bin/rm", "-rf", path] as [String]).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        if posix_spawn(&pid, "/bin/rm", nil, nil, argv, environ) == 0 {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
}

extension ConformanceRunner.CaseFailure {
    init(_ message: String) { self.message = message }
}

/// Loads every `*.case` file of a directory, sorted by name.
public enum FixtureLoader {
    public static func load(directory: String) throws -> [Fixture] {
        guard let dir = opendir(directory) else {
            throw ConformanceRunner.LoadError(
                description: "cannot open \(directory): \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name.hasSuffix(".case") { names.append(name) }
        }
        var fixtures: [Fixture] = []
        for name in names.sorted() {
            let path = directory + "/" + name
            guard let text = readFile(path) else {
                throw ConformanceRunner.LoadError(description: "cannot read \(path)")
            }
            do {
                fixtures.append(try Fixture(name: String(name.dropLast(5)), text: text))
            } catch {
                throw ConformanceRunner.LoadError(description: "\(path): \(error)")
            }
        }
        return fixtures
    }

    public static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension ConformanceRunner {
    public struct LoadError: Error, CustomStringConvertible {
        public var description: String
    }
}
