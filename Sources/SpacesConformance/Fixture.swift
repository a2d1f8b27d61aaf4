public import SpacesProtocol

/// One golden conformance case: lines to send, lines expected back, and a few directives.
///
/// The file format (`Fixtures/conformance/*.case`), one step per line:
///
/// | line | meaning |
/// |---|---|
/// | `# …` | a comment; the first comment line is the case's description |
/// | `> TEXT` | send TEXT as one line, verbatim (it need not be JSON); `"$name"` is replaced by a captured value |
/// | `< JSON` | the next message the engine writes must match JSON |
/// | `<~ JSON` | consecutive `<~` lines: the next messages must match them, in any order |
/// | `! eof` | close the engine's stdin |
/// | `! exit N` | the engine must exit with status N, having written nothing unexpected |
/// | `! restart` | close stdin, wait for exit 0, start the engine again on the same state directory |
/// | `! sleep MS` | wait MS milliseconds |
/// | `! oversize N` | send one line of N bytes (`{` followed by `a`s) |
/// | `! crlf TEXT` | send TEXT terminated by `\r\n` |
/// | `! args ARGS` | (first step only) append ARGS to the engine command, e.g. `--max-spaces 2` |
///
/// In expected JSON, objects must have exactly the expected keys and arrays the expected length. String
/// placeholders: `"<any>"`, `"<string>"`, `"<number>"`, `"<int>"`, `"<bool>"`, `"<time>"` (RFC 3339 UTC),
/// `"<sha256>"`, `"<id:PREFIX>"` (PREFIX then 16 hex digits); `"$name"` captures the value the first time
/// and must equal it afterwards.
public struct Fixture: Sendable {
    public enum Step: Sendable, Equatable {
        case send(String)
        case sendCRLF(String)
        case sendOversized(Int)
        case expect(JSONValue)
        case expectUnordered([JSONValue])
        case closeInput
        case expectExit(Int32)
        case restart
        case sleep(milliseconds: Int)
        case engineArguments(String)
    }

    public struct ParseError: Error, CustomStringConvertible {
        public var line: Int
        public var reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    public var name: String
    public var description: String
    public var steps: [Step]

    public init(name: String, text: String) throws(ParseError) {
        self.name = name
        var description = ""
        var steps: [Step] = []
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(rawLine)
            let number = offset + 1
            if line.trimmingSpaces.isEmpty { continue }
            if line.hasPrefix("#") {
                if description.isEmpty { description = String(line.dropFirst().trimmingSpaces) }
                continue
            }
            if line.hasPrefix("> ") {
                steps.append(.send(String(line.dropFirst(2))))
            } else if line.hasPrefix("<~ ") {
                let value = try Self.json(line.dropFirst(3), line: number)
                if case .expectUnordered(let group)? = steps.last {
                    steps[steps.count - 1] = .expectUnordered(group + [value])
                } else {
                    steps.append(.expectUnordered([value]))
                }
            } else if line.hasPrefix("< ") {
                steps.append(.expect(try Self.json(line.dropFirst(2), line: number)))
            } else if line.hasPrefix("! ") {
                let words = line.dropFirst(2).split(separator: " ", maxSplits: 1).map(String.init)
                switch (words.first, words.count > 1 ? words[1] : nil) {
                case ("eof", nil): steps.append(.closeInput)
                case ("restart", nil): steps.append(.restart)
                case ("exit", let code?):
                    guard let value = Int32(code) else { throw ParseError(line: number, reason: "exit needs a number") }
                    steps.append(.expectExit(value))
                case ("sleep", let ms?):
                    guard let value = Int(ms) else {
                        throw ParseError(line: number, reason: "sleep needs milliseconds")
                    }
                    steps.append(.sleep(milliseconds: value))
                case ("oversize", let bytes?):
                    guard let value = Int(bytes) else { throw ParseError(line: number, reason: "oversize needs bytes") }
                    steps.append(.sendOversized(value))
                case ("crlf", let text?): steps.append(.sendCRLF(text))
                case ("args", let arguments?):
                    guard steps.isEmpty else { throw ParseError(line: number, reason: "args must be the first step") }
                    steps.append(.engineArguments(arguments))
                default: throw ParseError(line: number, reason: "unknown directive '\(line)'")
                }
            } else {
                throw ParseError(line: number, reason: "a step starts with '> ', '< ', '<~ ', '! ' or '#'")
            }
        }
        self.description = description
        self.steps = steps
    }

    static func json(_ text: Substring, line: Int) throws(ParseError) -> JSONValue {
        do {
            return try JSONValue.parse(String(text))
        } catch {
            throw ParseError(line: line, reason: "expected JSON: \(error)")
        }
    }
}

extension StringProtocol {
    var trimmingSpaces: Substring {
        var slice = self[...]
        while let first = slice.first, first == " " || first == "\t" || first == "\r" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" || last == "\r" { slice = slice.dropLast() }
        return Substring(slice)
    }
}
