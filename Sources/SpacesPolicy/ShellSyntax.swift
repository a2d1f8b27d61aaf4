/// One word of a shell command after quote removal.
struct ShellWord: Sendable, Equatable {
    /// The value after quote removal. Expansions (`$x`, `${x}`, `$(…)`, `` `…` ``, `$((…))`) stay as written.
    var text: String
    /// False when the shell may change the word when it runs: a parameter, command or arithmetic expansion, an
    /// unquoted glob (`*`, `?`, `[…]`) or brace expansion (`{a,b}`), or an ANSI-C string that holds a NUL.
    var isLiteral: Bool
    /// How many leading Unicode scalars of `text` were written with no quote, escape or expansion.
    var plainPrefix: Int
    /// True when the whole word was written with no quote, escape or expansion (reserved words must be).
    var isPlain: Bool

    init(text: String, isLiteral: Bool, plainPrefix: Int, isPlain: Bool) {
        self.text = text
        self.isLiteral = isLiteral
        self.plainPrefix = plainPrefix
        self.isPlain = isPlain
    }

    /// A word given as an argv element: no shell reads it, so it is literal.
    init(argument: String) {
        self.init(text: argument, isLiteral: true, plainPrefix: argument.unicodeScalars.count, isPlain: true)
    }

    /// `NAME=value` (or `NAME+=value`, `NAME[i]=value`) with the name and `=` unquoted: an assignment, not a
    /// program, when it comes before the program.
    var isAssignment: Bool {
        let scalars = Array(text.unicodeScalars.prefix(plainPrefix))
        guard let first = scalars.first, first.isNameStart else { return false }
        var index = 1
        while index < scalars.count, scalars[index].isNameContinuation { index += 1 }
        if index < scalars.count, scalars[index] == "[" {
            guard let close = scalars[index...].firstIndex(of: "]") else { return false }
            index = close + 1
        }
        if index < scalars.count, scalars[index] == "+" { index += 1 }
        return index < scalars.count && scalars[index] == "="
    }
}

extension Unicode.Scalar {
    var isNameStart: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) || self == "_" }
    var isNameContinuation: Bool { isNameStart || ("0"..."9").contains(self) }
    var isDigit: Bool { ("0"..."9").contains(self) }
}

/// Where a simple command's standard input comes from, as far as the text shows.
enum ShellStdin: Equatable {
    /// The input of the command line itself.
    case inherited
    /// The output of the previous command of a pipeline.
    case pipe
    /// A file (`< file`, `<> file`, `<&3`).
    case file
    /// A here-document or here-string; `isLiteral` is false when the shell expands something in it first.
    case text(String, isLiteral: Bool)
}

/// One simple command as written, before wrappers are looked through.
struct ParsedCommand {
    var words: [ShellWord]
    /// How deeply it is nested in substitutions, subshells and command strings.
    var depth: Int
    var stdin: ShellStdin
}

/// Shared by every parser and analysis step of one command line: bounds the work a hostile string can cause.
///
/// Owned by one analysis on one thread; never shared.
final class ShellBudget {
    /// Steps left: words read, substitutions entered, commands analysed.
    var remaining: Int
    /// Set when the budget or the nesting bound ran out; every loop stops.
    var aborted = false

    init(for text: String) {
        remaining = 16 * text.unicodeScalars.count + 4_096
    }

    func spend() -> Bool {
        remaining -= 1
        if remaining < 0 { aborted = true }
        return !aborted
    }
}

/// A recursive-descent reader of POSIX shell (and the bash extensions agents write) that finds every simple
/// command a command line contains, without running anything.
///
/// It reads Unicode scalars, as a shell reads bytes, so a combining mark after a quote cannot hide the quote;
/// blanks are space and tab only (a carriage return is part of a word, as it is for bash).
/// Command substitutions are parsed in place (`$(…)` to its matching parenthesis, through quotes, comments,
/// `case` patterns and here-documents), backquoted ones after their backslashes are removed. The commands found
/// inside words, assignments and redirection targets are recorded before the command that holds them.
struct ShellParser {
    struct Result {
        /// The simple commands, in the order they were completed.
        var commands: [ParsedCommand] = []
        /// Syntax the shell would refuse (an unterminated quote or substitution).
        var syntaxProblems: [String] = []
        /// Parts that were not examined (nesting or work bound reached).
        var unexamined: [String] = []
    }

    /// How deeply substitutions, subshells, `sh -c` strings and `eval` arguments may nest.
    static let maxDepth = 16

    private struct Stops: OptionSet {
        let rawValue: Int
        static let closeParen = Stops(rawValue: 1)
        static let caseItemEnd = Stops(rawValue: 2)
        static let esac = Stops(rawValue: 4)
    }

    private enum Stop {
        case end, closeParen, caseItemEnd, esac
    }

    private struct Heredoc {
        var id: Int
        var delimiter: [Unicode.Scalar]
        var expands: Bool
        var stripsTabs: Bool
        /// The index in `result.commands` of the command whose standard input this is.
        var owner: Int?
    }

    /// What a redirection does to the command's standard input.
    private enum Redirection {
        case input, pipe, hereString(ShellWord), heredoc(id: Int), other
    }

    private struct Checkpoint {
        var position: Int
        var commands: Int
        var syntaxProblems: Int
        var heredocs: [Heredoc]
    }

    private let input: [Unicode.Scalar]
    private var position = 0
    private var depth: Int
    private var result = Result()
    /// Above zero while reading words that are not commands (arrays, extended globs, `for` headers): only the
    /// commands of substitutions in them are recorded.
    private var wordsOnly = 0
    private var pendingHeredocs: [Heredoc] = []
    private var heredocCount = 0
    private let budget: ShellBudget

    private init(_ text: String, depth: Int, budget: ShellBudget) {
        self.input = Array(text.unicodeScalars)
        self.depth = depth
        self.budget = budget
    }

    /// Parses `text` found at `depth` (0 for the command line itself).
    static func parse(_ text: String, depth: Int, budget: ShellBudget) -> Result {
        var parser = ShellParser(text, depth: depth, budget: budget)
        guard parser.enter() else { return parser.result }
        _ = parser.parseList([])
        return parser.result
    }

    // MARK: Reading

    private var aborted: Bool { budget.aborted }

    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        let index = position + offset
        return index < input.count ? input[index] : nil
    }

    private func source(from start: Int) -> ArraySlice<Unicode.Scalar> {
        input[start..<min(position, input.count)]
    }

    private mutating func syntaxProblem(_ message: String) {
        if !result.syntaxProblems.contains(message) { result.syntaxProblems.append(message) }
    }

    /// Enters one level of nesting; false (and everything stops) past ``maxDepth``.
    private mutating func enter() -> Bool {
        guard depth <= Self.maxDepth else {
            if !budget.aborted {
                result.unexamined.append("it nests more than \(Self.maxDepth) levels deep")
            }
            budget.aborted = true
            return false
        }
        guard budget.spend() else {
            result.unexamined.append("it is too long or too complex to examine")
            return false
        }
        return true
    }

    private mutating func nested<T>(_ body: (inout ShellParser) -> T) -> T? {
        depth += 1
        defer { depth -= 1 }
        guard enter() else { return nil }
        return body(&self)
    }

    /// A substitution: its commands run even where the surrounding words are not commands.
    private mutating func nestedCommands<T>(_ body: (inout ShellParser) -> T) -> T? {
        let outer = wordsOnly
        wordsOnly = 0
        defer { wordsOnly = outer }
        return nested(body)
    }

    private func checkpoint() -> Checkpoint {
        Checkpoint(
            position: position, commands: result.commands.count, syntaxProblems: result.syntaxProblems.count,
            heredocs: pendingHeredocs)
    }

    /// Forgets what was read since `checkpoint` (the lists only grow in between).
    private mutating func restore(_ checkpoint: Checkpoint) {
        position = checkpoint.position
        result.commands.removeLast(max(0, result.commands.count - checkpoint.commands))
        result.syntaxProblems.removeLast(max(0, result.syntaxProblems.count - checkpoint.syntaxProblems))
        pendingHeredocs = checkpoint.heredocs
    }

    /// Skips blanks, escaped newlines and a comment (`#` where a word could start), not the newline itself.
    private mutating func skipBlanks() {
        while let scalar = peek() {
            if scalar == " " || scalar == "\t" {
                position += 1
            } else if scalar == "\\" && peek(1) == "\n" {
                position += 2
            } else if scalar == "#" {
                while let next = peek(), next != "\n" { position += 1 }
            } else {
                return
            }
        }
    }

    private mutating func consumeNewline() {
        position += 1
        readPendingHeredocs()
    }

    private mutating func skipBlanksAndNewlines() {
        while !aborted {
            skipBlanks()
            guard peek() == "\n" else { return }
            consumeNewline()
        }
    }

    // MARK: Lists and commands

    private mutating func parseList(_ stops: Stops) -> Stop {
        var piped = false
        while !aborted {
            skipBlanks()
            guard let scalar = peek() else { return .end }
            switch scalar {
            case "\n":
                consumeNewline()
            case ";":
                if peek(1) == ";" || peek(1) == "&" {
                    position += 2
                    if peek() == "&" { position += 1 }
                    if stops.contains(.caseItemEnd) { return .caseItemEnd }
                } else {
                    position += 1
                }
                piped = false
            case "&":
                if peek(1) == ">" {
                    if let stop = parseCommand(stops, piped: piped) { return stop }
                } else {
                    position += peek(1) == "&" ? 2 : 1
                }
                piped = false
            case "|":
                piped = peek(1) != "|"
                position += peek(1) == "|" || peek(1) == "&" ? 2 : 1
            case ")":
                position += 1
                if stops.contains(.closeParen) { return .closeParen }
            default:
                if let stop = parseCommand(stops, piped: piped) { return stop }
                piped = false
            }
        }
        return .end
    }

    /// One simple command, or the opening of a compound one; stops before a control operator.
    private mutating func parseCommand(_ stops: Stops, piped: Bool) -> Stop? {
        var words: [ShellWord] = []
        var commandPosition = true
        var afterTime = false
        var stdin: ShellStdin = piped ? .pipe : .inherited
        var heredocs: [Int] = []
        func redirect(_ redirection: Redirection) {
            switch redirection {
            case .input: stdin = .file
            case .pipe: stdin = .pipe
            case .hereString(let word): stdin = .text(word.text, isLiteral: word.isLiteral)
            case .heredoc(let id): heredocs.append(id)
            case .other: break
            }
        }
        defer { record(words, stdin: stdin, heredocs: heredocs) }
        while !aborted {
            skipBlanks()
            guard let scalar = peek() else { break }
            switch scalar {
            case "\n", ";", "|", ")":
                return nil
            case "&":
                guard peek(1) == ">" else { return nil }
                redirect(parseRedirection(fd: nil))
                continue
            case "<", ">":
                if peek(1) != "(" {
                    redirect(parseRedirection(fd: nil))
                    continue
                }
            case "(":
                if words.isEmpty && commandPosition {
                    if peek(1) == "(" && tryArithmetic(skipping: 2) {
                        commandPosition = false
                    } else {
                        parseSubshell()
                        commandPosition = false
                    }
                    continue
                }
                if words.count == 1 && skipFunctionParentheses() {
                    words = []
                    commandPosition = true
                    continue
                }
                // A syntax error for the shell; read what follows as a subshell so that nothing goes unseen.
                record(words, stdin: stdin, heredocs: heredocs)
                words = []
                heredocs = []
                parseSubshell()
                continue
            default:
                break
            }
            guard let word = readWord() else {
                position += 1
                continue
            }
            if let next = peek(), next == "<" || next == ">", peek(1) != "(", word.isRedirectionPrefix {
                redirect(parseRedirection(fd: word.text))
                continue
            }
            if commandPosition && word.isPlain {
                if afterTime && word.text.hasPrefix("-") { continue }
                afterTime = false
                switch word.text {
                case "{", "!", "then", "else", "do", "if", "elif", "while", "until", "coproc":
                    continue
                case "time":
                    afterTime = true
                    continue
                case "}", "fi", "done":
                    commandPosition = false
                    continue
                case "esac":
                    if stops.contains(.esac) { return .esac }
                    commandPosition = false
                    continue
                case "case":
                    parseCase()
                    commandPosition = false
                    continue
                case "for", "select":
                    skipForHeader()
                    return nil
                case "[[":
                    parseConditional()
                    commandPosition = false
                    continue
                case "function":
                    skipBlanks()
                    _ = readWord()
                    _ = skipFunctionParentheses()
                    continue
                default:
                    break
                }
            }
            afterTime = false
            words.append(word)
            commandPosition = false
        }
        return nil
    }

    private mutating func record(_ words: [ShellWord], stdin: ShellStdin, heredocs: [Int]) {
        guard !words.isEmpty, wordsOnly == 0 else { return }
        result.commands.append(ParsedCommand(words: words, depth: depth, stdin: stdin))
        for index in pendingHeredocs.indices where heredocs.contains(pendingHeredocs[index].id) {
            pendingHeredocs[index].owner = result.commands.count - 1
        }
    }

    private mutating func parseSubshell() {
        position += 1
        let stop = nested { $0.parseList(.closeParen) }
        if stop == .end { syntaxProblem("a ( is never closed") }
    }

    /// After a function name: `( )`, consumed when present.
    private mutating func skipFunctionParentheses() -> Bool {
        let start = position
        skipBlanks()
        guard peek() == "(" else {
            position = start
            return false
        }
        position += 1
        skipBlanks()
        guard peek() == ")" else {
            position = start
            return false
        }
        position += 1
        return true
    }

    /// `case WORD in PATTERN) LIST ;; … esac`: the patterns are not commands, the lists are.
    private mutating func parseCase() {
        skipBlanks()
        _ = readWord()
        skipBlanksAndNewlines()
        guard let keyword = readWord(), keyword.isPlain, keyword.text == "in" else {
            syntaxProblem("a case has no `in`")
            return
        }
        while !aborted {
            skipBlanksAndNewlines()
            guard peek() != nil else {
                syntaxProblem("a case has no esac")
                return
            }
            let before = checkpoint()
            if let word = readWord(), word.isPlain, word.text == "esac" { return }
            restore(before)
            if peek() == "(" { position += 1 }
            patterns: while !aborted {
                skipBlanks()
                switch peek() {
                case nil, "\n", ";":
                    syntaxProblem("a case pattern has no )")
                    return
                case ")":
                    position += 1
                    break patterns
                case "|":
                    position += 1
                default:
                    if readWord() == nil { position += 1 }
                }
            }
            switch nested({ $0.parseList([.caseItemEnd, .esac]) }) {
            case .esac?:
                return
            case .caseItemEnd?:
                continue
            case nil:
                return
            case .end?, .closeParen?:
                syntaxProblem("a case has no esac")
                return
            }
        }
    }

    /// `for NAME in WORDS` / `for ((…))` / `select …` up to the separator: words, not commands.
    private mutating func skipForHeader() {
        skipBlanks()
        if peek() == "(" && peek(1) == "(" {
            if !tryArithmetic(skipping: 2) { syntaxProblem("a for (( is never closed") }
        }
        wordsOnly += 1
        defer { wordsOnly -= 1 }
        while !aborted {
            skipBlanks()
            guard let scalar = peek(), !["\n", ";", "&", "|", ")", "("].contains(scalar) else { return }
            if scalar == "<" || scalar == ">", peek(1) != "(" {
                _ = parseRedirection(fd: nil)
            } else if readWord() == nil {
                position += 1
            }
        }
    }

    /// `[[ … ]]`: its words are operands, `&&`, `||`, `<`, `>`, `(` and `)` are operators of the test.
    private mutating func parseConditional() {
        while !aborted {
            skipBlanks()
            guard let scalar = peek(), scalar != "\n", scalar != ";" else {
                syntaxProblem("a [[ has no ]]")
                return
            }
            if "&|<>()!".unicodeScalars.contains(scalar) && !(scalar == "<" && peek(1) == "(") {
                position += 1
                continue
            }
            guard let word = readWord() else {
                position += 1
                continue
            }
            if word.isPlain && word.text == "]]" { return }
        }
    }

    // MARK: Redirections and here-documents

    /// At `<`, `>` or `&>` (after the fd number `fd`, if any): the operator and its target, which is not an
    /// argument.
    private mutating func parseRedirection(fd: String?) -> Redirection {
        var heredocStripsTabs: Bool?
        var hereString = false
        var input = false
        if peek() == "&" {
            position += 2
            if peek() == ">" { position += 1 }
        } else if peek() == "<" {
            position += 1
            switch peek() {
            case "<":
                position += 1
                if peek() == "<" {
                    position += 1
                    hereString = true
                } else if peek() == "-" {
                    position += 1
                    heredocStripsTabs = true
                } else {
                    heredocStripsTabs = false
                }
            case "&", ">":
                position += 1
                input = true
            default:
                input = true
            }
        } else {
            position += 1
            if let next = peek(), next == ">" || next == "&" || next == "|" { position += 1 }
        }
        skipBlanks()
        guard let next = peek() else { return .other }
        let startsProcessSubstitution = (next == "<" || next == ">") && peek(1) == "("
        guard !"\n;&|()<>".unicodeScalars.contains(next) || startsProcessSubstitution, let target = readWord() else {
            return .other
        }
        let isStdin = fd == nil || fd == "0"
        if let heredocStripsTabs {
            heredocCount += 1
            pendingHeredocs.append(
                Heredoc(
                    id: heredocCount, delimiter: Array(target.text.unicodeScalars), expands: target.isPlain,
                    stripsTabs: heredocStripsTabs))
            return isStdin ? .heredoc(id: heredocCount) : .other
        }
        if hereString { return isStdin ? .hereString(target) : .other }
        guard input && isStdin else { return .other }
        // `< <(…)` reads another command's output, as a pipe does.
        return target.text.hasPrefix("<(") && !target.isLiteral ? .pipe : .input
    }

    /// Reads the bodies of the here-documents opened on the line that just ended. A body whose delimiter was
    /// unquoted is expanded, so its `$(…)` and backquotes run and are parsed; the rest of it is data.
    private mutating func readPendingHeredocs() {
        let heredocs = pendingHeredocs
        pendingHeredocs = []
        for heredoc in heredocs {
            var body: [Unicode.Scalar] = []
            defer {
                if let owner = heredoc.owner, owner < result.commands.count {
                    let expanded = heredoc.expands && body.contains { $0 == "$" || $0 == "`" || $0 == "\\" }
                    result.commands[owner].stdin = .text(
                        String(String.UnicodeScalarView(body)), isLiteral: !expanded)
                }
            }
            while !aborted, position < input.count {
                let lineStart = position
                var lineEnd = lineStart
                while lineEnd < input.count && input[lineEnd] != "\n" { lineEnd += 1 }
                var line = input[lineStart..<lineEnd]
                if heredoc.stripsTabs {
                    while line.first == "\t" { line = line.dropFirst() }
                }
                if line.elementsEqual(heredoc.delimiter) {
                    position = min(lineEnd + 1, input.count)
                    break
                }
                body += input[lineStart..<lineEnd]
                body.append("\n")
                if heredoc.expands {
                    var ignored = WordBuilder()
                    while !aborted, position < lineEnd {
                        switch input[position] {
                        case "\\": position += 2
                        case "$": readDollar(into: &ignored, inDoubleQuotes: true)
                        case "`": readBackquotes(into: &ignored)
                        default: position += 1
                        }
                    }
                }
                position = max(position, min(lineEnd + 1, input.count))
            }
        }
    }

    // MARK: Words

    /// Reads one word up to an unquoted metacharacter; nil when none starts here.
    private mutating func readWord() -> ShellWord? {
        guard budget.spend() else {
            if result.unexamined.isEmpty { result.unexamined.append("it is too long or too complex to examine") }
            return nil
        }
        var word = WordBuilder()
        let start = position
        reading: while !aborted, let scalar = peek() {
            switch scalar {
            case " ", "\t", "\n", ";", "&", "|", ")":
                break reading
            case "(":
                // `name=(…)` is an array and `@(…)` an extended glob: words, not commands.
                guard word.endsAssignmentOrExtglob else { break reading }
                let open = position
                position += 1
                wordsOnly += 1
                let stop = nested { $0.parseList(.closeParen) }
                wordsOnly -= 1
                if stop == .end { syntaxProblem("a ( is never closed") }
                word.appendExpansion(source(from: open))
            case "<", ">":
                guard peek(1) == "(" else { break reading }
                let open = position
                position += 2
                let stop = nestedCommands { $0.parseList(.closeParen) }
                if stop == .end { syntaxProblem("a process substitution is never closed") }
                word.appendExpansion(source(from: open))
            case "\\":
                if peek(1) == "\n" {
                    position += 2
                } else if let escaped = peek(1) {
                    word.appendQuoted(escaped)
                    position += 2
                } else {
                    word.appendQuoted("\\")
                    position += 1
                }
            case "'":
                readSingleQuoted(into: &word)
            case "\"":
                readDoubleQuoted(into: &word)
            case "$":
                readDollar(into: &word, inDoubleQuotes: false)
            case "`":
                readBackquotes(into: &word)
            default:
                word.appendPlain(scalar)
                position += 1
            }
        }
        return position == start ? nil : word.finish()
    }

    private mutating func readSingleQuoted(into word: inout WordBuilder) {
        position += 1
        word.markQuoted()
        while let scalar = peek() {
            position += 1
            if scalar == "'" { return }
            word.appendQuoted(scalar)
        }
        syntaxProblem("a single quote is never closed")
    }

    private mutating func readDoubleQuoted(into word: inout WordBuilder) {
        position += 1
        word.markQuoted()
        while !aborted, let scalar = peek() {
            switch scalar {
            case "\"":
                position += 1
                return
            case "\\":
                switch peek(1) {
                case "\n":
                    position += 2
                case let escaped? where "$`\"\\".unicodeScalars.contains(escaped):
                    word.appendQuoted(escaped)
                    position += 2
                default:
                    word.appendQuoted("\\")
                    position += 1
                }
            case "$":
                readDollar(into: &word, inDoubleQuotes: true)
            case "`":
                readBackquotes(into: &word)
            default:
                word.appendQuoted(scalar)
                position += 1
            }
        }
        if !aborted { syntaxProblem("a double quote is never closed") }
    }

    private mutating func readDollar(into word: inout WordBuilder, inDoubleQuotes: Bool) {
        let start = position
        switch peek(1) {
        case "'" where !inDoubleQuotes:
            position += 2
            readANSIC(into: &word)
        case "\"" where !inDoubleQuotes:
            position += 1
            readDoubleQuoted(into: &word)
        case "(":
            if peek(2) == "(" && tryArithmetic(skipping: 3) {
                word.appendExpansion(source(from: start))
                return
            }
            position += 2
            let stop = nestedCommands { $0.parseList(.closeParen) }
            if stop == .end { syntaxProblem("a $( is never closed") }
            word.appendExpansion(source(from: start))
        case "{":
            position += 2
            _ = nested { $0.skipParameterExpansion() }
            word.appendExpansion(source(from: start))
        case let next? where next.isNameStart:
            position += 1
            while let scalar = peek(), scalar.isNameContinuation { position += 1 }
            word.appendExpansion(source(from: start))
        case let next? where next.isDigit || "@*#?$!-".unicodeScalars.contains(next):
            position += 2
            word.appendExpansion(source(from: start))
        default:
            position += 1
            if inDoubleQuotes { word.appendQuoted("$") } else { word.appendPlain("$") }
        }
    }

    /// The rest of `${…}` up to its closing brace; substitutions inside it are parsed.
    private mutating func skipParameterExpansion() {
        var ignored = WordBuilder()
        while !aborted, let scalar = peek() {
            switch scalar {
            case "}":
                position += 1
                return
            case "\\": position += 2
            case "'": readSingleQuoted(into: &ignored)
            case "\"": readDoubleQuoted(into: &ignored)
            case "$": readDollar(into: &ignored, inDoubleQuotes: false)
            case "`": readBackquotes(into: &ignored)
            default: position += 1
            }
        }
        if !aborted { syntaxProblem("a ${ is never closed") }
    }

    /// `((…))` or `$((…))`, when it is arithmetic: true with the position after `))`. When the parentheses do
    /// not close as `))` the shell reads nested subshells instead, and so does the caller: nothing is kept.
    private mutating func tryArithmetic(skipping count: Int) -> Bool {
        let before = checkpoint()
        depth += 1
        defer { depth -= 1 }
        guard enter() else { return false }
        position += count
        var parentheses = 0
        var ignored = WordBuilder()
        // Each scalar costs one step: a failed attempt is read again as subshells, so the work must be bounded.
        while budget.spend(), let scalar = peek() {
            switch scalar {
            case "(":
                parentheses += 1
                position += 1
            case ")":
                if parentheses == 0 {
                    if peek(1) == ")" {
                        position += 2
                        return true
                    }
                    restore(before)
                    return false
                }
                parentheses -= 1
                position += 1
            case "\\": position += 2
            case "'": readSingleQuoted(into: &ignored)
            case "\"": readDoubleQuoted(into: &ignored)
            case "$": readDollar(into: &ignored, inDoubleQuotes: false)
            case "`": readBackquotes(into: &ignored)
            default: position += 1
            }
        }
        restore(before)
        return false
    }

    /// `` `…` ``: the text between the backquotes, with `` \` ``, `\\` and `\$` unescaped, is a command line.
    private mutating func readBackquotes(into word: inout WordBuilder) {
        let start = position
        position += 1
        var body: [Unicode.Scalar] = []
        var closed = false
        while let scalar = peek() {
            if scalar == "`" {
                position += 1
                closed = true
                break
            }
            if scalar == "\\", let escaped = peek(1), "`\\$".unicodeScalars.contains(escaped) {
                body.append(escaped)
                position += 2
            } else {
                body.append(scalar)
                position += 1
            }
        }
        if !closed { syntaxProblem("a backquote is never closed") }
        let inner = Self.parse(String(String.UnicodeScalarView(body)), depth: depth + 1, budget: budget)
        result.commands += inner.commands
        for problem in inner.syntaxProblems { syntaxProblem(problem) }
        result.unexamined += inner.unexamined
        word.appendExpansion(source(from: start))
    }

    /// `$'…'` with its escapes decoded as bash does, so `$'\x63url'` is `curl`.
    private mutating func readANSIC(into word: inout WordBuilder) {
        word.markQuoted()
        func hexValue(_ scalar: Unicode.Scalar) -> UInt32? {
            switch scalar {
            case "0"..."9": scalar.value - 48
            case "a"..."f": scalar.value - 87
            case "A"..."F": scalar.value - 55
            default: nil
            }
        }
        while let scalar = peek() {
            position += 1
            if scalar == "'" { return }
            guard scalar == "\\", let escape = peek() else {
                word.appendQuoted(scalar)
                continue
            }
            position += 1
            var value: UInt32?
            switch escape {
            case "a": value = 7
            case "b": value = 8
            case "e", "E": value = 27
            case "f": value = 12
            case "n": value = 10
            case "r": value = 13
            case "t": value = 9
            case "v": value = 11
            case "\\", "'", "\"", "?": value = escape.value
            case "c":
                if let control = peek() {
                    position += 1
                    value = control.value & 0x1F
                }
            case "0"..."7":
                var number = escape.value - 48
                for _ in 0..<2 {
                    guard let digit = peek(), ("0"..."7").contains(digit) else { break }
                    number = number * 8 + digit.value - 48
                    position += 1
                }
                value = number
            case "x", "u", "U":
                let limit = escape == "x" ? 2 : escape == "u" ? 4 : 8
                var number: UInt32 = 0
                var digits = 0
                while digits < limit, let digit = peek(), let hex = hexValue(digit) {
                    number = number &* 16 &+ hex
                    digits += 1
                    position += 1
                }
                value = digits == 0 ? nil : number
                if digits == 0 {
                    word.appendQuoted("\\")
                    word.appendQuoted(escape)
                    continue
                }
            default:
                word.appendQuoted("\\")
                word.appendQuoted(escape)
                continue
            }
            if let value, value != 0, let decoded = Unicode.Scalar(value) {
                word.appendQuoted(decoded)
            } else {
                // A NUL ends the word where bash reads it; an invalid scalar has no faithful text.
                word.markNotLiteral()
            }
        }
        syntaxProblem("a $' is never closed")
    }
}

extension ShellWord {
    /// `2` in `2>&1`, or `{fd}` in `{fd}>file`.
    fileprivate var isRedirectionPrefix: Bool {
        guard isPlain, !text.isEmpty else { return false }
        if text.unicodeScalars.allSatisfy(\.isDigit) { return true }
        return text.hasPrefix("{") && text.hasSuffix("}") && text.count > 2
    }
}

/// Accumulates one word: its text after quote removal and what the shell could still do to it.
struct WordBuilder {
    private var scalars = String.UnicodeScalarView()
    private var isLiteral = true
    private var plain = true
    private var plainPrefix = 0
    private var globCharacter = false
    private var openBracket = false
    private var braceOpen = false
    private var braceSeparator = false
    private var braceExpansion = false
    private var lastPlain: Unicode.Scalar?

    mutating func appendPlain(_ scalar: Unicode.Scalar) {
        scalars.append(scalar)
        if plain { plainPrefix += 1 }
        switch scalar {
        case "*", "?": globCharacter = true
        case "[": openBracket = true
        case "]": if openBracket { globCharacter = true }
        case "{": braceOpen = true
        case ",": if braceOpen { braceSeparator = true }
        case ".": if braceOpen && lastPlain == "." { braceSeparator = true }
        case "}": if braceOpen && braceSeparator { braceExpansion = true }
        default: break
        }
        lastPlain = scalar
    }

    mutating func appendQuoted(_ scalar: Unicode.Scalar) {
        plain = false
        scalars.append(scalar)
        lastPlain = nil
    }

    mutating func appendExpansion(_ source: some Sequence<Unicode.Scalar>) {
        plain = false
        isLiteral = false
        scalars.append(contentsOf: source)
        lastPlain = nil
    }

    mutating func markQuoted() { plain = false }

    mutating func markNotLiteral() { isLiteral = false }

    /// `name=` (an array literal follows) or an extended-glob operator (`@`, `!`, `+`, `*`, `?`).
    var endsAssignmentOrExtglob: Bool {
        guard plain, let last = lastPlain else { return false }
        if "@!+*?".unicodeScalars.contains(last) { return true }
        return last == "="
            && ShellWord(text: String(scalars), isLiteral: true, plainPrefix: plainPrefix, isPlain: true)
                .isAssignment
    }

    func finish() -> ShellWord {
        ShellWord(
            text: String(scalars), isLiteral: isLiteral && !globCharacter && !braceExpansion,
            plainPrefix: plainPrefix, isPlain: plain)
    }
}
