/// The programs a command line would run, as far as its text shows them. Pure: nothing is run or read.
///
/// **Syntax.** The line is read as POSIX shell with the bash extensions agents write: quotes (`'…'`, `"…"`,
/// `$'…'` with its escapes decoded), backslash escapes and line continuations, comments, the control operators
/// `;` `&` `&&` `||` `|` `|&` and newlines, subshells `( … )`, groups `{ …; }`, `if`/`while`/`until`/`for`/`case`
/// and functions (their bodies are decided as if called), `$( … )`, backquotes and `<( … )` at any nesting, `${…}`
/// and `$((…))` (only the substitutions inside run), `[[ … ]]`, arrays, redirections (`> f`, `2>&1`, `< in`,
/// `&>`, here-strings) whose targets are not arguments, and here-documents (data; an unquoted delimiter's body
/// has its substitutions parsed). Quoted text is never split: `echo 'a; curl x'` runs only `echo`.
///
/// **Programs.** Each simple command loses its `VAR=x` prefixes and its program is reduced to its basename
/// (`/usr/bin/curl`, `./curl` → `curl`). Wrappers are looked through: `exec`, `command`, `builtin` and `eval`
/// are shell builtins and only what they run is listed; `env` (and `env -S '…'`), `nohup`, `nice`, `timeout`,
/// `xargs` (whose default program is `echo`), `sudo`, `doas`, `pkexec`, `stdbuf`, `setsid`, `ionice`, `time`,
/// `busybox`, `watch`, `su -c` and `find -exec` are programs themselves, so both they and what they run are
/// listed. An option a wrapper does not document is read both as a flag and as taking a value, and both readings
/// are listed. `sh`/`bash`/`dash`/`zsh`/`ksh`/`fish` with `-c` (also `-lc`, `-ec`, …), `eval`, `trap`, `alias`
/// and `su -c` have their string parsed as a command line; so does what a shell reads as its script from
/// standard input (`bash <<EOF`, `sh <<< '…'`, `sh -s`, `bash /dev/stdin`, `source /dev/stdin`) when it is a
/// here-document, a here-string or the `stdin` given to the analysis. All of this nests up to
/// ``maxNestingDepth`` levels deep.
///
/// **What the text cannot show.** A program name the shell computes (`$cmd x`, `$(echo curl) x`, `c?rl`,
/// `{curl,x}`), a string for `sh -c`/`eval` (or a here-document for a shell) that holds expansions, and a shell
/// that runs what another command prints (`… | sh`, `bash <(…)`, `source <(…)`) are listed with an
/// ``Command/opaqueReason``. A shell given a script file, and interpreters (`python -c`, `node -e`), and
/// programs that run commands from their own options or configuration (`git -c core.pager=…`, `make`), are
/// listed as themselves: what they run later is the space's wall's business.
public struct ShellAnalysis: Sendable, Equatable {
    /// One program the line runs.
    public struct Command: Sendable, Hashable {
        /// The argv after quote removal, `VAR=x` prefixes dropped and the program reduced to its basename.
        /// Expansions stay as written (`curl $URL`).
        public var argv: [String]
        /// Why the program (or the command string it is given) is known only when the shell runs; nil when the
        /// text shows it.
        public var opaqueReason: String?

        public init(argv: [String], opaqueReason: String? = nil) {
            self.argv = argv
            self.opaqueReason = opaqueReason
        }
    }

    /// How deeply substitutions, subshells, `case` bodies, wrappers and command strings may nest before the rest
    /// is left unexamined (and the decision no more permissive than a hidden program's).
    public static let maxNestingDepth = ShellParser.maxDepth

    /// Every program found, in the order found, without duplicates.
    public var commands: [Command]
    /// Syntax the shell would refuse: an unterminated quote, `$(`, backquote, `(`, `${`, `case` or `[[`.
    public var syntaxProblems: [String]
    /// Why part of the line was not examined (nesting deeper than the bound, or too much work); empty when all of
    /// it was.
    public var unexamined: [String]

    /// Analyses a shell command line (the `command` of `command.run`); `stdin` is the input it is given, read
    /// as commands by a shell in it that reads its standard input (`sh`, `bash -s`).
    public init(shell line: String, stdin: String? = nil) {
        var analyzer = ShellAnalyzer(budget: ShellBudget(for: line), stdin: stdin)
        analyzer.analyseLine(line, depth: 0, origin: nil)
        self = analyzer.finish()
    }

    /// Analyses an argv run without a shell (the `argv` of `command.run`): its words are literal, but a shell,
    /// wrapper or `eval`-like program in it is looked through as in a command line.
    public init(argv: [String], stdin: String? = nil) {
        var analyzer = ShellAnalyzer(budget: ShellBudget(for: argv.joined(separator: " ")), stdin: stdin)
        analyzer.analyseCommand(argv.map(ShellWord.init(argument:))[...], depth: 0)
        self = analyzer.finish()
    }

    init(commands: [Command], syntaxProblems: [String], unexamined: [String]) {
        self.commands = commands
        self.syntaxProblems = syntaxProblems
        self.unexamined = unexamined
    }
}

/// How a wrapper program takes its options before the command it runs.
struct WrapperSpec {
    /// A program of its own (decided as itself too), rather than a shell builtin.
    var isProgram: Bool
    /// Options whose value is the next word (or attached: `-uroot`, `--user=root`).
    var valueOptions: Set<String> = []
    /// Options without a value. An option in neither set is read both ways.
    var flagOptions: Set<String> = []
    /// Options after which no command runs (`command -v`, `sudo -l`).
    var noCommandOptions: Set<String> = []
    /// Words after the options that are not the command (`timeout`'s duration).
    var operands = 0
    /// `NAME=value` words after the options are assignments (`env`).
    var takesAssignments = false
    /// What runs when no command is given (`xargs` runs `echo`).
    var defaultCommand: [String] = []

    static let all: [String: WrapperSpec] = [
        "exec": WrapperSpec(isProgram: false, valueOptions: ["-a"], flagOptions: ["-c", "-l"]),
        "command": WrapperSpec(isProgram: false, flagOptions: ["-p"], noCommandOptions: ["-v", "-V"]),
        "builtin": WrapperSpec(isProgram: false),
        "nohup": WrapperSpec(isProgram: true),
        "env": WrapperSpec(
            isProgram: true, valueOptions: ["-u", "--unset", "-C", "--chdir"],
            flagOptions: ["-i", "--ignore-environment", "-0", "--null", "-v", "--debug", "-"],
            noCommandOptions: ["--help", "--version"], takesAssignments: true),
        "nice": WrapperSpec(isProgram: true, valueOptions: ["-n", "--adjustment"]),
        "timeout": WrapperSpec(
            isProgram: true, valueOptions: ["-s", "--signal", "-k", "--kill-after"],
            flagOptions: ["--preserve-status", "--foreground", "-v", "--verbose"], operands: 1),
        "xargs": WrapperSpec(
            isProgram: true,
            valueOptions: [
                "-a", "--arg-file", "-d", "--delimiter", "-E", "-I", "-L", "--max-lines", "-n", "--max-args", "-P",
                "--max-procs", "-s", "--max-chars", "--process-slot-var",
            ],
            flagOptions: [
                "-0", "--null", "-o", "--open-tty", "-p", "--interactive", "-r", "--no-run-if-empty", "-t",
                "--verbose", "-x", "--exit", "-e", "-i", "-l",
            ],
            defaultCommand: ["echo"]),
        "sudo": WrapperSpec(
            isProgram: true,
            valueOptions: [
                "-u", "--user", "-g", "--group", "-C", "--close-from", "-D", "--chdir", "-h", "--host", "-p",
                "--prompt", "-R", "--chroot", "-r", "--role", "-t", "--type", "-T", "--command-timeout", "-U",
                "--other-user",
            ],
            flagOptions: [
                "-A", "--askpass", "-b", "--background", "-E", "--preserve-env", "-H", "--set-home", "-i", "--login",
                "-k", "--reset-timestamp", "-n", "--non-interactive", "-P", "--preserve-groups", "-S", "--stdin",
                "-s", "--shell",
            ],
            noCommandOptions: [
                "-e", "--edit", "-l", "--list", "-v", "--validate", "-V", "--version", "-K", "--remove-timestamp",
            ]),
        "doas": WrapperSpec(isProgram: true, valueOptions: ["-u", "-C"], flagOptions: ["-n", "-s", "-L"]),
        "pkexec": WrapperSpec(isProgram: true, valueOptions: ["--user"], flagOptions: ["--keep-cwd"]),
        "stdbuf": WrapperSpec(isProgram: true, valueOptions: ["-i", "--input", "-o", "--output", "-e", "--error"]),
        "setsid": WrapperSpec(isProgram: true, flagOptions: ["-c", "--ctty", "-f", "--fork", "-w", "--wait"]),
        "ionice": WrapperSpec(
            isProgram: true, valueOptions: ["-c", "--class", "-n", "--classdata"], flagOptions: ["-t", "--ignore"]),
        "time": WrapperSpec(
            isProgram: true, valueOptions: ["-o", "--output", "-f", "--format"],
            flagOptions: ["-p", "--portability", "-a", "--append", "-v", "--verbose", "-q", "--quiet"]),
        "busybox": WrapperSpec(isProgram: true),
    ]

    /// Where the wrapped command may start: one index per reading of the options, or nil for "no command".
    func commandStarts(_ words: ArraySlice<ShellWord>) -> [Int?] {
        var starts: [Int?] = []
        var frontier = [words.startIndex + 1]
        var readings = 0
        while let index = frontier.popLast() {
            readings += 1
            guard readings <= 16 else { break }
            guard index < words.endIndex else {
                starts.append(index)
                continue
            }
            let word = words[index]
            let text = word.text
            if text == "--" {
                starts.append(index + 1)
            } else if takesAssignments && word.isAssignment {
                frontier.append(index + 1)
            } else if text.hasPrefix("-") && text != "-" || text == "-" && flagOptions.contains("-") {
                switch classify(text) {
                case .flag: frontier.append(index + 1)
                case .value: frontier.append(index + 2)
                case .noCommand: starts.append(nil)
                case .unknown: frontier += [index + 2, index + 1]
                }
            } else {
                starts.append(index)
            }
        }
        return starts.map { $0.map { $0 + operands } }
    }

    private enum OptionKind {
        case flag, value, noCommand, unknown
    }

    private func classify(_ option: String) -> OptionKind {
        if noCommandOptions.contains(option) { return .noCommand }
        if flagOptions.contains(option) { return .flag }
        if valueOptions.contains(option) { return .value }
        if option.hasPrefix("--") {
            guard let equals = option.firstIndex(of: "=") else { return .unknown }
            let name = String(option[..<equals])
            return valueOptions.contains(name) || flagOptions.contains(name) ? .flag : .unknown
        }
        if option.dropFirst().allSatisfy(\.isNumber) { return .flag }  // nice -10
        // A cluster of short options: `-iu NAME`, `-n10`, `-0r`.
        for (offset, letter) in option.dropFirst().enumerated() {
            let name = "-\(letter)"
            if noCommandOptions.contains(name) { return .noCommand }
            if valueOptions.contains(name) {
                return offset == option.count - 2 ? .value : .flag
            }
            if !flagOptions.contains(name) { return .unknown }
        }
        return .flag
    }
}

/// Turns parsed simple commands into the programs they run, looking through wrappers, shells and `eval`.
struct ShellAnalyzer {
    private(set) var result = ShellAnalysis(commands: [], syntaxProblems: [], unexamined: [])
    let budget: ShellBudget
    /// The standard input of the command line, when known.
    let stdin: String?

    static let shells: Set<String> = [
        "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "rbash", "lksh", "oksh", "fish",
    ]

    init(budget: ShellBudget, stdin: String?) {
        self.budget = budget
        self.stdin = stdin
    }

    /// Parses `line` as a command line run at `depth`; `origin` names what handed it over (`sh -c`) when that
    /// is not the line itself.
    mutating func analyseLine(_ line: String, depth: Int, origin: (argv: [String], isLiteral: Bool)?) {
        if let origin, !origin.isLiteral {
            emit(
                origin.argv,
                opaque: "the command string it runs holds expansions, so what it runs is known only when it runs")
        }
        let parsed = ShellParser.parse(line, depth: depth, budget: budget)
        for problem in parsed.syntaxProblems where !result.syntaxProblems.contains(problem) {
            result.syntaxProblems.append(problem)
        }
        for reason in parsed.unexamined { unexamined(reason) }
        for command in parsed.commands {
            analyseCommand(command.words[...], depth: command.depth, stdin: command.stdin)
        }
    }

    private var emitted: Set<ShellAnalysis.Command> = []

    private mutating func emit(_ argv: [String], opaque: String? = nil) {
        let command = ShellAnalysis.Command(argv: argv, opaqueReason: opaque)
        if emitted.insert(command).inserted { result.commands.append(command) }
    }

    /// The result; whenever the work bound stopped anything, it says so.
    mutating func finish() -> ShellAnalysis {
        if budget.aborted && result.unexamined.isEmpty { unexamined("it is too long or too complex to examine") }
        return result
    }

    private mutating func unexamined(_ reason: String) {
        if !result.unexamined.contains(reason) { result.unexamined.append(reason) }
    }

    private func normalized(_ words: ArraySlice<ShellWord>) -> [String] {
        guard let program = words.first else { return [] }
        return [Self.basename(program.text)] + words.dropFirst().map(\.text)
    }

    /// The last non-empty path component: `/usr/bin/curl`, `./curl` and `bin/curl/` are all `curl`.
    static func basename(_ program: String) -> String {
        program.split(separator: "/").last.map(String.init) ?? program
    }

    mutating func analyseCommand(_ words: ArraySlice<ShellWord>, depth: Int, stdin: ShellStdin = .inherited) {
        guard depth <= ShellParser.maxDepth else {
            unexamined("it nests more than \(ShellParser.maxDepth) levels deep")
            return
        }
        guard budget.spend() else {
            unexamined("it is too long or too complex to examine")
            return
        }
        let command = words.drop(while: \.isAssignment)
        guard let program = command.first else { return }
        let argv = normalized(command)
        guard program.isLiteral else {
            emit(argv, opaque: "the program name `\(program.text)` is computed when the shell runs")
            return
        }
        let name = argv[0]
        let arguments = command.dropFirst()
        if let spec = WrapperSpec.all[name] {
            analyseWrapper(spec, command, argv: argv, depth: depth, stdin: stdin)
        } else if Self.shells.contains(name) {
            emit(argv)
            analyseShell(command, argv: argv, depth: depth, stdin: stdin)
        } else {
            switch name {
            case "eval":
                guard !arguments.isEmpty else { return }
                analyseString(
                    arguments.map(\.text).joined(separator: " "), literal: arguments.allSatisfy(\.isLiteral),
                    argv: argv, depth: depth)
            case "trap":
                // `trap HANDLER SIGNAL…`; `trap - SIGNAL`, `trap -p` and `trap SIGNAL` run nothing.
                let operands = arguments.drop { $0.text == "--" }
                if operands.count >= 2, let handler = operands.first, !handler.text.hasPrefix("-") {
                    analyseString(handler.text, literal: handler.isLiteral, argv: argv, depth: depth)
                }
            case "alias":
                // The body of an alias runs where its name is used later; decide it now.
                for argument in arguments {
                    guard let equals = argument.text.firstIndex(of: "=") else { continue }
                    let body = String(argument.text[argument.text.index(after: equals)...])
                    analyseString(body, literal: argument.isLiteral, argv: argv, depth: depth)
                }
            case "source", ".":
                emit(argv)
                if let file = arguments.first { analyseScript(file, argv: argv, depth: depth, stdin: stdin) }
            case "su":
                emit(argv)
                if let index = arguments.firstIndex(where: { $0.text == "-c" || $0.text == "--command" }),
                    index + 1 < arguments.endIndex
                {
                    let string = arguments[index + 1]
                    analyseString(string.text, literal: string.isLiteral, argv: argv, depth: depth)
                } else if let inline = arguments.first(where: { $0.text.hasPrefix("--command=") }) {
                    analyseString(
                        String(inline.text.dropFirst("--command=".count)), literal: inline.isLiteral, argv: argv,
                        depth: depth)
                }
            case "watch":
                emit(argv)
                var index = arguments.startIndex
                while index < arguments.endIndex, arguments[index].text.hasPrefix("-") {
                    let option = arguments[index].text
                    index += ["-n", "--interval", "-q", "--equexit"].contains(option) ? 2 : 1
                }
                let rest = arguments[min(index, arguments.endIndex)...]
                if !rest.isEmpty {
                    analyseString(
                        rest.map(\.text).joined(separator: " "), literal: rest.allSatisfy(\.isLiteral), argv: argv,
                        depth: depth)
                }
            case "find":
                emit(argv)
                var index = arguments.startIndex
                while index < arguments.endIndex {
                    defer { index += 1 }
                    guard ["-exec", "-execdir", "-ok", "-okdir"].contains(arguments[index].text) else { continue }
                    let start = index + 1
                    var end = start
                    while end < arguments.endIndex && arguments[end].text != ";" && arguments[end].text != "+" {
                        end += 1
                    }
                    if start < end { analyseCommand(arguments[start..<end], depth: depth + 1) }
                    index = end
                }
            default:
                emit(argv)
            }
        }
    }

    /// A string another program runs as a command line (`sh -c`, `eval`, `trap`, `alias`, `su -c`).
    private mutating func analyseString(_ string: String, literal: Bool, argv: [String], depth: Int) {
        analyseLine(string, depth: depth + 1, origin: (argv, literal))
    }

    private mutating func analyseWrapper(
        _ spec: WrapperSpec, _ command: ArraySlice<ShellWord>, argv: [String], depth: Int, stdin: ShellStdin
    ) {
        if spec.isProgram { emit(argv) }
        // `env -S 'curl x'` / `--split-string=…`: the string is split into the command and its first arguments.
        if argv[0] == "env",
            let index = command.firstIndex(where: { $0.text == "-S" || $0.text.hasPrefix("--split-string") })
        {
            let option = command[index]
            let inline = option.text.hasPrefix("--split-string=")
            let stringIndex = inline ? index : index + 1
            guard stringIndex < command.endIndex else { return }
            let string = inline ? String(option.text.dropFirst("--split-string=".count)) : command[stringIndex].text
            let rest = command[(stringIndex + 1)...]
            analyseString(
                ([string] + rest.map(\.text)).joined(separator: " "),
                literal: command[stringIndex].isLiteral && rest.allSatisfy(\.isLiteral), argv: argv, depth: depth)
            return
        }
        for start in spec.commandStarts(command) {
            guard let start else {
                if !spec.isProgram { emit(argv) }
                continue
            }
            if start < command.endIndex {
                analyseCommand(command[start...], depth: depth + 1, stdin: stdin)
            } else if !spec.defaultCommand.isEmpty {
                emit(spec.defaultCommand)
            }
        }
    }

    /// `sh -c STRING`, `bash -lc STRING`, `bash -eo pipefail -c STRING`: the string is a command line. A shell
    /// without `-c` and without a script operand (or with `-s`) runs its standard input: a here-document or
    /// here-string is a command line, so is the command line's own input, and a pipe hides what it runs. A
    /// script file is the wall's business.
    private mutating func analyseShell(
        _ command: ArraySlice<ShellWord>, argv: [String], depth: Int, stdin: ShellStdin
    ) {
        var index = command.startIndex + 1
        var runsString = false
        var readsStdin = false
        while index < command.endIndex {
            let text = command[index].text
            if text == "--" || text == "-" {
                index += 1
                break
            }
            guard let first = text.first, first == "-" || first == "+", text.count > 1 else { break }
            index += 1
            if text.hasPrefix("--") {
                if ["--rcfile", "--init-file"].contains(text) { index += 1 }
                continue
            }
            for letter in text.dropFirst() {
                if letter == "c" { runsString = true }
                if letter == "s" { readsStdin = true }
                if letter == "o" || letter == "O" { index += 1 }
            }
        }
        if runsString {
            guard index < command.endIndex else { return }
            let string = command[index]
            analyseString(string.text, literal: string.isLiteral, argv: argv, depth: depth)
            return
        }
        if !readsStdin && index < command.endIndex {
            analyseScript(command[index], argv: argv, depth: depth, stdin: stdin)
            return
        }
        analyseStdin(stdin, argv: argv, depth: depth)
    }

    /// A script a shell (or `source`) runs: a file is the wall's business, but `/dev/stdin` is the standard
    /// input and `<(…)` another command's output.
    private mutating func analyseScript(_ script: ShellWord, argv: [String], depth: Int, stdin: ShellStdin) {
        if ["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "-"].contains(script.text) {
            analyseStdin(stdin, argv: argv, depth: depth)
        } else if !script.isLiteral && script.text.hasPrefix("<(") {
            emit(argv, opaque: "it runs the commands another command prints, which the command line does not show")
        }
    }

    private mutating func analyseStdin(_ stdin: ShellStdin, argv: [String], depth: Int) {
        switch stdin {
        case .text(let text, let isLiteral):
            analyseString(text, literal: isLiteral, argv: argv, depth: depth)
        case .pipe:
            emit(argv, opaque: "it runs the commands it reads from a pipe, which the command line does not show")
        case .inherited:
            if let input = self.stdin { analyseString(input, literal: true, argv: argv, depth: depth) }
        case .file:
            break
        }
    }
}
