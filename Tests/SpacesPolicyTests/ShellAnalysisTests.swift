import SpacesPolicy
import Testing

/// The tokenizer and the analysis: which programs a command line runs.
@Suite struct ShellAnalysisTests {
    static let programs: [(String, [[String]])] = [
        ("echo a; ls -l", [["echo", "a"], ["ls", "-l"]]),
        ("a && b || c | d & e\nf", [["a"], ["b"], ["c"], ["d"], ["e"], ["f"]]),
        (#"echo 'a;b' "c;d""#, [["echo", "a;b", "c;d"]]),
        (#"echo a\ b a\;b"#, [["echo", "a b", "a;b"]]),
        (#"FOO=1 BAR="x y" /usr/bin/env -i ./tool --x"#, [["env", "-i", "./tool", "--x"], ["tool", "--x"]]),
        ("echo $(date) `whoami`", [["date"], ["whoami"], ["echo", "$(date)", "`whoami`"]]),
        ("ls > out 2>&1 < in >> log &> all", [["ls"]]),
        ("cat <<EOF\nhello; rm -rf x\nEOF\necho done", [["cat"], ["echo", "done"]]),
        ("cat <<-EOF && b\n\tx; y\n\tEOF\nc", [["cat"], ["b"], ["c"]]),
        ("cat <<< 'a; b'", [["cat"]]),
        ("echo x # comment; rm", [["echo", "x"]]),
        ("echo a#b; c", [["echo", "a#b"], ["c"]]),
        ("sh -c 'a; b'", [["sh", "-c", "a; b"], ["a"], ["b"]]),
        ("timeout 5 make test", [["timeout", "5", "make", "test"], ["make", "test"]]),
        ("xargs", [["xargs"], ["echo"]]),
        ("sudo -u bob -- ls", [["sudo", "-u", "bob", "--", "ls"], ["ls"]]),
        ("if a; then b; elif c; then d; else e; fi", [["a"], ["b"], ["c"], ["d"], ["e"]]),
        ("while a; do b; done < in", [["a"], ["b"]]),
        ("for i in 1 2; do echo $i; done", [["echo", "$i"]]),
        ("for ((i = 0; i < 3; i++)); do a; done", [["a"]]),
        ("case x in a|b) one;; (c) two;& *) three;; esac; after", [["one"], ["two"], ["three"], ["after"]]),
        ("f() { a; }; function g { b; }", [["a"], ["b"]]),
        ("[[ -n $x && $y < z ]] && b", [["b"]]),
        ("x=1 y=2", []),
        ("a=(1 2 3); b", [["b"]]),
        ("echo $((2 * (3 + 1)))", [["echo", "$((2 * (3 + 1)))"]]),
        ("exec 3>&1", []),
        ("echo a |& b", [["echo", "a"], ["b"]]),
        ("(a; (b))", [["a"], ["b"]]),
        ("{ a; b; }", [["a"], ["b"]]),
        ("echo } {", [["echo", "}", "{"]]),
        ("env -S 'a b' c", [["env", "-S", "a b", "c"], ["a", "b", "c"]]),
        ("command -v git", [["command", "-v", "git"]]),
        ("diff <(a) <(b)", [["a"], ["b"], ["diff", "<(a)", "<(b)"]]),
        (#"echo "$HOME"/x"#, [["echo", "$HOME/x"]]),
        (#"echo $'a\tb\x41'"#, [["echo", "a\tbA"]]),
        ("! a | b", [["a"], ["b"]]),
        ("time -p a", [["a"]]),
        ("a \\\n  b", [["a", "b"]]),
        (
            "nice -n 5 ionice -c 3 a",
            [["nice", "-n", "5", "ionice", "-c", "3", "a"], ["ionice", "-c", "3", "a"], ["a"]]
        ),
        (
            "find . -name '*.o' -exec rm {} +",
            [["find", ".", "-name", "*.o", "-exec", "rm", "{}", "+"], ["rm", "{}"]]
        ),
        ("echo \\`a\\`", [["echo", "`a`"]]),
    ]

    @Test(arguments: programs)
    func findsEveryProgram(line: String, expected: [[String]]) {
        let analysis = ShellAnalysis(shell: line)
        #expect(analysis.commands.map(\.argv) == expected, "\(line)")
        #expect(analysis.syntaxProblems.isEmpty, "\(line): \(analysis.syntaxProblems)")
        #expect(analysis.commands.allSatisfy { $0.opaqueReason == nil }, "\(line)")
    }

    @Test(arguments: [
        "$cmd x", "$(echo curl) x", "\"$CURL\" x", "/usr/bin/c?rl x", "{curl,wget} x", "c[u]rl x", "${CMD} x",
        "sh -c \"$CMD\"", "eval \"$CMD\"", "x=curl; $x",
    ])
    func programsTheShellComputesAreOpaque(line: String) {
        let analysis = ShellAnalysis(shell: line)
        #expect(analysis.commands.contains { $0.opaqueReason != nil }, "\(line): \(analysis.commands)")
    }

    @Test(arguments: [
        ("echo 'a", "a single quote is never closed"), ("echo \"a", "a double quote is never closed"),
        ("echo $(a", "a $( is never closed"), ("echo `a", "a backquote is never closed"),
        ("(a", "a ( is never closed"), ("echo ${a", "a ${ is never closed"),
        ("case x in a) b;;", "a case has no esac"), ("echo $'a", "a $' is never closed"),
        ("[[ -f a", "a [[ has no ]]"),
    ])
    func unterminatedSyntaxIsReported(line: String, problem: String) {
        #expect(ShellAnalysis(shell: line).syntaxProblems == [problem], "\(line)")
    }

    @Test func nestingBeyondTheBoundIsReportedNotRecursedInto() {
        let evals = ShellAnalysis(shell: String(repeating: "eval ", count: 40) + "echo deep")
        #expect(!evals.unexamined.isEmpty)
        let substitutions = String(repeating: "echo $(", count: 40) + "x" + String(repeating: ")", count: 40)
        #expect(!ShellAnalysis(shell: substitutions).unexamined.isEmpty)
        let subshells = String(repeating: "( ", count: 100_000) + "a" + String(repeating: " )", count: 100_000)
        #expect(!ShellAnalysis(shell: subshells).unexamined.isEmpty)
        // `((…))` that closes as `))` is arithmetic, as bash reads it: no command, nothing left unexamined.
        let arithmetic = String(repeating: "(", count: 100_000) + "a" + String(repeating: ")", count: 100_000)
        #expect(ShellAnalysis(shell: arithmetic).commands.isEmpty)
        #expect(!ShellAnalysis(shell: String(repeating: "$(", count: 50_000)).unexamined.isEmpty)
        #expect(ShellAnalysis(shell: String(repeating: "eval ", count: 10) + "echo ok").unexamined.isEmpty)
    }

    @Test func argvIsLiteralButLookedThrough() {
        #expect(ShellAnalysis(argv: ["echo", "a; curl x"]).commands.map(\.argv) == [["echo", "a; curl x"]])
        #expect(
            ShellAnalysis(argv: ["/bin/sh", "-c", "curl x"]).commands.map(\.argv) == [
                ["sh", "-c", "curl x"], ["curl", "x"],
            ])
    }
}

/// Hostile and random input: the analysis always finishes, never crashes, and stays within its bounds.
@Suite struct ShellRobustnessTests {
    /// SplitMix64: the same strings on every run.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var value = state
            value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
            value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
            return value ^ (value >> 31)
        }
    }

    static let pieces = [
        " ", "\n", ";", ";;", "&", "&&", "|", "||", "(", ")", "{", "}", "$(", "`", "'", "\"", "\\", "$", "${", "$((",
        "<", ">", "<<", "<<-", "EOF", "2>&1", "#", "=", "x=", "curl", "sh -c ", "eval ", "case ", " in ", "esac",
        "for ", "do ", "done", "if ", "then ", "fi", "[[", "]]", "*", "?", "[", "]", ",", "e\u{301}", "$'\\x", "<(",
        "@(", "env ", "sudo -u ", "xargs ", "\t", "!",
    ]

    @Test func randomLinesAlwaysFinish() {
        var generator = Generator(state: 42)
        let policy = HiddenCommandTests.policy
        for _ in 0..<3_000 {
            let count = Int.random(in: 1...40, using: &generator)
            let line = (0..<count).map { _ in Self.pieces.randomElement(using: &generator) ?? "" }.joined()
            let decision = PolicyEvaluator.decideShellCommand(line, under: policy)
            #expect((decision.verdict == .allow) == decision.suggestion.isEmpty, "\(line)")
            let analysis = ShellAnalysis(shell: line)
            if !analysis.unexamined.isEmpty || analysis.commands.contains(where: { $0.opaqueReason != nil }) {
                #expect(decision.verdict != .allow, "\(line)")
            }
            if analysis.commands.contains(where: { $0.argv.first == "curl" }) {
                #expect(decision.verdict == .deny, "\(line)")
            }
        }
    }

    @Test(arguments: [
        String(repeating: "a; ", count: 100_000), String(repeating: "nice ", count: 100_000) + "curl x",
        String(repeating: "case x in a) ", count: 50_000), String(repeating: "echo \"$(", count: 20_000),
        String(repeating: "`", count: 100_001), String(repeating: "$((", count: 30_000),
        String(repeating: "a=(", count: 30_000), String(repeating: "${", count: 30_000),
        String(repeating: "cat <<E\n", count: 20_000), String(repeating: "x", count: 1_000_000),
        String(repeating: "sh -c ", count: 20_000) + "curl",
    ])
    func hugeLinesFinish(line: String) {
        let decision = PolicyEvaluator.decideShellCommand(line, under: HiddenCommandTests.policy)
        #expect(decision.suggestion.count < 2_000)
        if !ShellAnalysis(shell: line).unexamined.isEmpty { #expect(decision.verdict != .allow) }
    }

    @Test func manyProgramsGiveOneBoundedSuggestion() {
        let line = (0..<1_000).map { "tool\($0)" }.joined(separator: "; ")
        let decision = PolicyEvaluator.decideShellCommand(line, under: .strict)
        #expect(decision.verdict == .ask)
        #expect(decision.suggestion.hasSuffix("and 992 more changes"))
    }

    @Test func aLongWrapperChainIsNotFollowedForever() {
        let line = String(repeating: "nice ", count: 100) + "curl x"
        let decision = PolicyEvaluator.decideShellCommand(line, under: HiddenCommandTests.policy)
        #expect(decision.verdict == .ask)
        #expect(decision.rule == "commands.unexamined")
    }
}
