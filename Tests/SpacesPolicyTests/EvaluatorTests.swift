import SpacesPolicy
import SpacesProtocol
import Testing

/// Shell strings that try to hide a denied command, under `commands.deny: curl *, wget *` and
/// `commands.ask: git push *` with the default `allow`.
@Suite struct HiddenCommandTests {
    static let policy: Policy = {
        do {
            return try Policy.resolve(["commands": ["deny": ["curl *", "wget *"], "ask": ["git push *"]]])
        } catch {
            fatalError("\(error)")
        }
    }()

    static let cases: [(String, Policy.Verdict)] = [
        // The brief's list.
        ("sh -c 'curl x'", .deny), (#"bash -c "echo; curl x""#, .deny), ("echo ok && curl x", .deny),
        ("echo $(curl x)", .deny), ("echo `curl x`", .deny), ("FOO=1 curl x", .deny), ("env -i curl x", .deny),
        ("/usr/bin/curl x", .deny), ("x=1; curl", .deny), ("(curl x)", .deny), ("{ curl x; }", .deny),
        ("nohup curl x &", .deny), ("timeout 5 curl x", .deny), ("xargs curl < list", .deny),
        (#"eval "curl x""#, .deny),
        ("echo 'curl x'", .allow), (#"echo "a;curl""#, .allow), (#"curl\ x"#, .deny),
        (#"sh -c "sh -c 'curl x'""#, .deny),
        // Separators and paths.
        ("./curl x", .deny), ("../bin/curl x", .deny), ("echo ok || curl x", .deny), ("echo ok | curl x", .deny),
        ("echo ok |& curl x", .deny), ("echo ok\ncurl x", .deny), ("echo ok & curl x", .deny),
        ("echo ok;curl x", .deny),
        ("curl x 2>&1 | tee log", .deny), ("> out curl x", .deny), ("echo hi > $(curl x)", .deny),
        // Shells and wrappers.
        ("bash -lc 'curl x'", .deny), ("bash -eo pipefail -c 'curl x'", .deny), ("zsh -c 'curl x'", .deny),
        ("exec curl x", .deny), ("command curl x", .deny), ("builtin exec curl", .deny), ("nice -n 10 curl x", .deny),
        ("sudo -u root curl x", .deny), ("sudo --user=root curl x", .deny), ("sudo -E -H curl x", .deny),
        ("sudo -Q curl x", .deny), ("doas curl x", .deny), ("timeout -s KILL 5 curl x", .deny),
        ("xargs -n1 -I{} curl {}", .deny), ("env FOO=1 BAR=2 curl x", .deny), ("env -u HOME curl x", .deny),
        ("env -S 'curl x'", .deny), ("busybox wget x", .deny), ("stdbuf -oL curl x", .deny), ("setsid curl x", .deny),
        ("exec -a name curl x", .deny), ("coproc curl x", .deny), ("time -p curl x", .deny), ("! curl x", .deny),
        (#"find . -name '*.txt' -exec curl -T {} x \;"#, .deny), ("trap 'curl x' EXIT", .deny),
        ("watch -n 5 curl x", .deny), ("su -c 'curl x' root", .deny), ("alias c=curl", .deny),
        (#"bash -c 'eval "curl x"'"#, .deny), ("command -v curl", .allow), ("trap - EXIT", .allow),
        // Quoting that still names curl.
        ("c''url x", .deny), (#""curl" x"#, .deny), (#"\curl x"#, .deny), (#"$'\x63url' x"#, .deny),
        (#"$'\143url' x"#, .deny), ("c\\\nurl x", .deny),
        // Programs the shell computes.
        ("c=curl; $c x", .ask), ("$(echo curl) x", .ask), ("/usr/bin/c?rl x", .ask), ("{curl,x}", .ask),
        (#"sh -c "$CMD""#, .ask), (#"eval "$CMD""#, .ask),
        // Substitutions everywhere a word may be.
        ("cat <(curl x)", .deny), ("x=$(curl x)", .deny), ("echo ${x:-$(curl x)}", .deny),
        (#"echo "$(curl x)""#, .deny),
        (#"echo "\$(curl x)""#, .allow), ("echo '$(curl x)'", .allow), ("echo $(echo $(echo $(curl x)))", .deny),
        ("echo `echo \\`curl x\\``", .deny), ("echo \\`curl x\\`", .allow), ("$(curl x)", .deny),
        ("echo $(( $(curl x) + 1 ))", .deny), ("echo $((1 + 2))", .allow), ("((curl x) )", .deny),
        // Here-documents, comments, compound commands.
        ("cat <<EOF\n$(curl x)\nEOF", .deny), ("cat <<'EOF'\n$(curl x)\nEOF", .allow),
        ("cat <<EOF\ncurl x\nEOF", .allow),
        ("echo x # ; curl x", .allow), ("echo x#; curl x", .deny), ("if true; then curl x; fi", .deny),
        ("for f in a b; do curl $f; done", .deny), (#"while read l; do curl "$l"; done < urls"#, .deny),
        ("case $1 in a) curl x;; esac", .deny), ("case $1 in curl) echo x;; esac", .allow),
        ("f() { curl x; }; f", .deny), ("function f { curl x; }", .deny), ("[[ -f a && -f b ]] && echo ok", .allow),
        ("a=(curl x)", .allow), ("echo a\\;curl x", .allow), (#"echo "a" ";" curl"#, .allow),
        // Substitutions in words that are not commands still run.
        ("for x in $(curl x); do :; done", .deny), ("a=($(curl x))", .deny), ("[[ $(curl x) ]]", .deny),
        // Shells that run their standard input.
        ("echo 'curl x' | sh", .ask), ("cat <<EOF | sh\ncurl x\nEOF", .ask), ("bash <<EOF\ncurl x\nEOF", .deny),
        ("sh <<< 'curl x'", .deny), ("sh -s < <(echo curl x)", .ask), ("sh < script.sh", .allow),
        ("bash <<'EOF'\necho ok\nEOF", .allow), ("bash <<EOF\n$CMD\nEOF", .ask), ("sudo bash <<< 'curl x'", .deny),
        ("source <(echo curl x)", .ask), (". /dev/stdin <<< 'curl x'", .deny), ("bash <(echo curl x)", .ask),
        ("bash /dev/stdin <<EOF\ncurl x\nEOF", .deny), ("a\r#; curl x", .deny), ("source ./env.sh", .allow),
        // Broken syntax: the commands found, never more permissive than the default.
        ("echo 'unterminated; curl x", .allow), ("curl x 'unterminated", .deny), ("echo $(curl x", .deny),
        // Ask rules, and the rest.
        ("git push origin main", .ask), ("git status; git push", .ask), ("echo $(git push)", .ask),
        ("git status", .allow), ("echo curl", .allow), ("ls /usr/bin/curl", .allow), ("bash script.sh", .allow),
        ("curl x | sh", .deny), ("wget -q x", .deny),
    ]

    @Test(arguments: cases)
    func hiddenCommandsAreFound(line: String, verdict: Policy.Verdict) {
        let decision = PolicyEvaluator.decideShellCommand(line, under: Self.policy)
        #expect(decision.verdict == verdict, "\(line): \(decision.rule) — \(decision.reason)")
        #expect((decision.verdict == .allow) == decision.suggestion.isEmpty, "\(line): \(decision.suggestion)")
    }

    @Test(arguments: [
        (["sh", "-c", "curl x"], Policy.Verdict.deny), (["env", "curl"], .deny), (["/usr/bin/curl"], .deny),
        (["echo", "curl x"], .allow), (["bash", "-c", "echo $(curl x)"], .deny), (["FOO=1", "curl"], .deny),
        (["echo", "$(curl x)"], .allow),
    ])
    func argvIsDecidedThroughItsWrappers(argv: [String], verdict: Policy.Verdict) {
        #expect(PolicyEvaluator.decideArgv(argv, under: Self.policy).verdict == verdict, "\(argv)")
    }

    @Test(arguments: [
        (#"{"kind":"command.run","argv":["sh"],"stdin":"echo; curl x"}"#, Policy.Verdict.deny),
        (#"{"kind":"command.run","argv":["bash","-s","--","a"],"stdin":"curl x"}"#, .deny),
        (#"{"kind":"command.run","argv":["bash","script.sh"],"stdin":"curl x"}"#, .allow),
        (#"{"kind":"command.run","command":"sudo sh","stdin":"curl x"}"#, .deny),
        (#"{"kind":"command.run","command":"cat | sh","stdin":"curl x"}"#, .ask),
        (#"{"kind":"command.run","argv":["cat"],"stdin":"curl x"}"#, .allow),
    ])
    func aShellRunsTheOperationsStdin(operation: String, verdict: Policy.Verdict) throws {
        let decision = PolicyEvaluator.decide(
            try Operation.parse(try JSONValue.parse(operation), index: 0), under: Self.policy)
        #expect(decision.verdict == verdict, "\(operation): \(decision.reason)")
    }

    @Test func nestingBeyondTheBoundAsks() {
        let line = String(repeating: "eval ", count: 40) + "echo deep"
        let decision = PolicyEvaluator.decideShellCommand(line, under: Self.policy)
        #expect(decision.verdict == .ask)
        #expect(decision.rule == "commands.unexamined")
        #expect(PolicyEvaluator.decideShellCommand(line, under: .default).verdict == .allow)
        #expect(PolicyEvaluator.decideShellCommand(line, under: .strict).verdict == .ask)
    }
}

/// An allow-list policy: `commands.default: deny`, `allow: git *, ls *, echo *`.
@Suite struct AllowListTests {
    static let policy: Policy = {
        do {
            return try Policy.resolve(["commands": ["default": "deny", "allow": ["git *", "ls *", "echo *"]]])
        } catch {
            fatalError("\(error)")
        }
    }()

    @Test(arguments: [
        ("git status", Policy.Verdict.allow, "commands.allow: git *"),
        ("ls && git log", .allow, "commands.allow: ls *"),
        ("sudo git status", .deny, "commands.default"), ("nohup git fetch", .deny, "commands.default"),
        ("echo $(date)", .deny, "commands.default"), ("$x", .deny, "commands.dynamic"),
        ("x=1", .deny, "commands.default"),
        ("echo 'a", .deny, "commands.unparsed"), ("/usr/bin/git log", .allow, "commands.allow: git *"),
    ])
    func onlyListedProgramsRun(line: String, verdict: Policy.Verdict, rule: String) {
        let decision = PolicyEvaluator.decideShellCommand(line, under: Self.policy)
        #expect(decision.verdict == verdict, "\(line): \(decision.reason)")
        #expect(decision.rule == rule, "\(line)")
    }
}

/// Every non-allow decision names the smallest change (or approval) that would allow it.
@Suite struct SuggestionTests {
    static func policy(_ json: JSONValue) -> Policy {
        do { return try Policy.resolve(json) } catch { fatalError("\(error)") }
    }

    static let denyCurl = policy(["commands": ["deny": ["curl *"], "ask": ["git push *"]]])
    static let allowList = policy(["commands": ["default": "deny", "allow": ["echo *"], "deny": ["curl *"]]])

    @Test(arguments: [
        ("curl x", denyCurl, #"remove "curl *" from commands.deny"#),
        ("git push", denyCurl, #"approve it, or remove "git push *" from commands.ask"#),
        ("wget x", allowList, #"add "wget *" to commands.allow"#),
        ("ls", Policy.strict, #"approve it, or add "ls *" to commands.allow"#),
        (
            "echo hi; curl x; wget y", allowList,
            #"remove "curl *" from commands.deny, and add "curl *" to commands.allow, and add "wget *" to commands.allow"#
        ),
        (
            "c=curl; $c x", denyCurl,
            "approve it, or write the program and its command string literally so that the commands rules can decide them"
        ),
        (
            "git push; curl x", denyCurl,
            #"remove "curl *" from commands.deny, and remove "git push *" from commands.ask"#
        ),
    ])
    func commandSuggestions(line: String, policy: Policy, suggestion: String) {
        #expect(PolicyEvaluator.decideShellCommand(line, under: policy).suggestion == suggestion, "\(line)")
    }

    static let files = policy(["filesystem": ["deny": ["**/.env", "secrets/**"], "ask": ["config/**"]]])

    @Test(arguments: [
        (#"{"kind":"file.read","path":".env"}"#, files, #"remove "**/.env" from filesystem.deny"#),
        (#"{"kind":"file.read","path":"config/a"}"#, files, #"approve it, or remove "config/**" from filesystem.ask"#),
        (#"{"kind":"file.write","path":"a.txt","content":""}"#, Policy.strict, #"add "a.txt" to filesystem.write"#),
        (
            #"{"kind":"file.write","path":"a[1].txt","content":""}"#, Policy.strict,
            #"add "a\[1\].txt" to filesystem.write"#
        ),
        (
            #"{"kind":"file.delete","path":"secrets","recursive":true}"#, files,
            #"remove "**/.env" from filesystem.deny, and remove "secrets/**" from filesystem.deny"#
        ),
        (
            #"{"kind":"file.move","from":"secrets","to":"public"}"#, files, #"remove "secrets/**" from filesystem.deny"#
        ),
        (
            #"{"kind":"file.move","from":"notes","to":"config/notes"}"#, files,
            #"approve it, or remove "config/**" from filesystem.ask"#
        ),
    ])
    func fileSuggestions(operation: String, policy: Policy, suggestion: String) throws {
        let decision = PolicyEvaluator.decide(
            try Operation.parse(try JSONValue.parse(operation), index: 0), under: policy)
        #expect(decision.suggestion == suggestion, "\(operation): \(decision.reason)")
    }

    @Test func networkAndCapabilitySuggestions() {
        #expect(
            PolicyEvaluator.decideHost("api.github.com", port: 443, under: .default).suggestion
                == #"add "api.github.com:443" to network.allow"#)
        #expect(
            PolicyEvaluator.decideCapability("crm", method: "search", under: .strict).suggestion
                == #"approve it, or add "crm.search" to capabilities.allow"#)
    }
}

@Suite struct NetworkTests {
    static let policy = SuggestionTests.policy([
        "network": [
            "allow": ["github.com", "*.github.com:443", "[::1]:8080", "registry.npmjs.org"],
            "ask": ["*.evil.com", "uploads.github.com"],
        ]
    ])
    static let openWithAsk = SuggestionTests.policy(["preset": "open", "network": ["ask": ["*.evil.com:443"]]])

    static let hosts: [(String, Int?, Policy.Verdict, String)] = [
        ("github.com", 443, .allow, "network.allow: github.com"),
        ("GitHub.com.", nil, .allow, "network.allow: github.com"),
        ("api.github.com", 443, .allow, "network.allow: *.github.com:443"),
        ("a.b.github.com", 443, .allow, "network.allow: *.github.com:443"),
        ("api.github.com", 80, .deny, "network.default"), ("api.github.com", nil, .deny, "network.default"),
        ("evilgithub.com", 443, .deny, "network.default"),
        ("github.com.evil.com", 443, .ask, "network.ask: *.evil.com"),
        ("uploads.github.com", 443, .ask, "network.ask: uploads.github.com"),
        ("evil.com", 443, .deny, "network.default"),
        ("x.evil.com", nil, .ask, "network.ask: *.evil.com"), ("::1", 8080, .allow, "network.allow: [::1]:8080"),
        ("[::1]", 8080, .allow, "network.allow: [::1]:8080"), ("::1", 80, .deny, "network.default"),
        ("registry.npmjs.org", 443, .allow, "network.allow: registry.npmjs.org"), ("", 443, .deny, "network.invalid"),
        ("github.com", 0, .deny, "network.invalid"), ("example.org", nil, .deny, "network.default"),
    ]

    @Test(arguments: hosts)
    func hostsAndPorts(host: String, port: Int?, verdict: Policy.Verdict, rule: String) {
        let decision = PolicyEvaluator.decideHost(host, port: port, under: Self.policy)
        #expect(decision.verdict == verdict, "\(host):\(port ?? -1) — \(decision.reason)")
        #expect(decision.rule == rule)
    }

    @Test func openPresetAllowsAndUnknownPortsStillAsk() {
        #expect(PolicyEvaluator.decideHost("anything.com", port: 443, under: .open).verdict == .allow)
        #expect(PolicyEvaluator.decideHost("x.evil.com", port: nil, under: Self.openWithAsk).verdict == .ask)
        #expect(PolicyEvaluator.decideHost("x.evil.com", port: 80, under: Self.openWithAsk).verdict == .allow)
        #expect(PolicyEvaluator.decideHost("github.com", port: 443, under: .default).verdict == .deny)
    }

    @Test(arguments: [
        "https://github.com", "github.com/x", "*github.com", "git*hub.com", "github.com:0", "github.com:99999",
        "github.com:abc", "::1", "[::1", "a..b", "", "gh .com", "user@host", "*.",
    ])
    func invalidHostPatterns(pattern: String) {
        #expect(throws: PatternError.self) { try HostPattern(validating: pattern) }
    }
}

@Suite struct CapabilityTests {
    static let policy = SuggestionTests.policy([
        "capabilities": ["deny": ["crm.delete*", "*.drop"], "ask": ["crm"], "allow": ["crm.search", "db.*"]]
    ])

    @Test(arguments: [
        ("crm", "search", Policy.Verdict.ask, "capabilities.ask: crm"),
        ("crm", "deleteAll", .deny, "capabilities.deny: crm.delete*"),
        ("db", "drop", .deny, "capabilities.deny: *.drop"),
        ("db", "query", .allow, "capabilities.allow: db.*"), ("crm", "export", .ask, "capabilities.ask: crm"),
        ("Crm", "search", .allow, "capabilities.default"), ("mail", "send", .allow, "capabilities.default"),
    ])
    func capabilityMethods(name: String, method: String, verdict: Policy.Verdict, rule: String) {
        let decision = PolicyEvaluator.decideCapability(name, method: method, under: Self.policy)
        #expect(decision.verdict == verdict, "\(name).\(method): \(decision.reason)")
        #expect(decision.rule == rule)
    }

    @Test func strictAsksForEveryCapability() {
        #expect(PolicyEvaluator.decideCapability("crm", method: "search", under: .strict).verdict == .ask)
        #expect(PolicyEvaluator.decideCapability("crm", method: "search", under: .default).verdict == .allow)
    }
}

@Suite struct PrecedenceTests {
    static let policy = SuggestionTests.policy([
        "filesystem": [
            "read": ["**"], "write": ["src/**", "secrets/**"], "ask": ["src/generated/**"],
            "deny": ["secrets/**/*.key"],
        ],
        "commands": [
            "default": "deny", "allow": ["git *", "make *"], "ask": ["git push *"], "deny": ["git push --force *"],
        ],
    ])

    @Test(arguments: [
        (#"{"kind":"file.write","path":"src/a.ts","content":""}"#, Policy.Verdict.allow, "filesystem.write: src/**"),
        (#"{"kind":"file.write","path":"src/generated/a.ts","content":""}"#, .ask, "filesystem.ask: src/generated/**"),
        (#"{"kind":"file.write","path":"secrets/a/b.key","content":""}"#, .deny, "filesystem.deny: secrets/**/*.key"),
        (#"{"kind":"file.read","path":"secrets/b.key"}"#, .deny, "filesystem.deny: secrets/**/*.key"),
        (#"{"kind":"file.write","path":"docs/a.md","content":""}"#, .deny, "filesystem.write"),
        (#"{"kind":"file.delete","path":"secrets","recursive":true}"#, .deny, "filesystem.deny: secrets/**/*.key"),
        (#"{"kind":"file.delete","path":"src"}"#, .deny, "filesystem.write"),
        (#"{"kind":"file.move","from":"src/generated","to":"src/old"}"#, .ask, "filesystem.ask: src/generated/**"),
        (#"{"kind":"file.list","path":"secrets"}"#, .allow, "filesystem.read: **"),
        (#"{"kind":"file.move","from":"src/a.ts","to":"src/b.ts"}"#, .allow, "filesystem.write: src/**"),
        (#"{"kind":"file.move","from":"src/generated/x","to":"src/x"}"#, .ask, "filesystem.ask: src/generated/**"),
        (#"{"kind":"file.move","from":"src/x","to":"src/generated/x"}"#, .ask, "filesystem.ask: src/generated/**"),
        (#"{"kind":"file.delete","path":"secrets/a"}"#, .allow, "filesystem.write: secrets/**"),
        (#"{"kind":"file.delete","path":"secrets/a","recursive":true}"#, .deny, "filesystem.deny: secrets/**/*.key"),
        (#"{"kind":"command.run","argv":["git","status"]}"#, .allow, "commands.allow: git *"),
        (#"{"kind":"command.run","argv":["git","push","origin"]}"#, .ask, "commands.ask: git push *"),
        (
            #"{"kind":"command.run","argv":["git","push","--force","origin"]}"#, .deny,
            "commands.deny: git push --force *"
        ),
        (#"{"kind":"command.run","argv":["npm","test"]}"#, .deny, "commands.default"),
        (#"{"kind":"command.run","command":"make && git push"}"#, .ask, "commands.ask: git push *"),
        (
            #"{"kind":"command.run","argv":["make"],"stdoutTo":"secrets/x.key"}"#, .deny,
            "filesystem.deny: secrets/**/*.key"
        ),
        (#"{"kind":"command.run","argv":["git","log"],"cwd":"/tmp"}"#, .deny, "workspace.boundary"),
        (#"{"kind":"code.run","language":"typescript","path":"src/a.ts"}"#, .deny, "commands.default"),
    ])
    func denyThenAskThenAllowThenDefault(operation: String, verdict: Policy.Verdict, rule: String) throws {
        let decision = PolicyEvaluator.decide(
            try Operation.parse(try JSONValue.parse(operation), index: 0), under: Self.policy)
        #expect(decision.verdict == verdict, "\(operation): \(decision.reason)")
        #expect(decision.rule == rule, "\(operation)")
    }
}
