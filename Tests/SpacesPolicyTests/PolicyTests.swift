import SpacesPolicy
import SpacesProtocol
import Testing

@Suite struct PolicyTests {
    static func operation(_ json: String) throws -> Operation {
        try Operation.parse(try JSONValue.parse(json), index: 0)
    }

    static func decide(_ json: String, _ policy: JSONValue? = nil) throws -> Decision {
        PolicyEvaluator.decide(try operation(json), under: try Policy.resolve(policy))
    }

    @Test(arguments: [
        (#"{"kind":"file.read","path":"../etc/passwd"}"#, "deny", "workspace.boundary"),
        (#"{"kind":"file.read","path":"/etc/passwd"}"#, "deny", "workspace.boundary"),
        (#"{"kind":"file.write","path":"a/../../x","content":""}"#, "deny", "workspace.boundary"),
        (#"{"kind":"file.move","from":"a","to":"/tmp/a"}"#, "deny", "workspace.boundary"),
        (#"{"kind":"command.run","argv":["ls"],"cwd":"/"}"#, "deny", "workspace.boundary"),
        (#"{"kind":"file.read","path":"/workspace/a/../b"}"#, "allow", "filesystem.read: **"),
        (#"{"kind":"file.write","path":"a.txt","content":""}"#, "allow", "filesystem.write: **"),
        (#"{"kind":"command.run","argv":["ls"]}"#, "allow", "commands.default"),
    ])
    func defaultPolicy(operation: String, verdict: String, rule: String) throws {
        let decision = try Self.decide(operation)
        #expect(decision.verdict.rawValue == verdict)
        #expect(decision.rule == rule)
    }

    static let rules: JSONValue = [
        "filesystem": ["deny": ["**/.env"], "ask": ["secrets/**"]],
        "commands": ["deny": ["curl *", "rm -rf *"], "ask": ["git push *"], "allow": ["git *"]],
    ]

    @Test(arguments: [
        (#"{"kind":"file.read","path":".env"}"#, "deny"),
        (#"{"kind":"file.write","path":"app/.env","content":"x"}"#, "deny"),
        (#"{"kind":"file.read","path":"secrets/key"}"#, "ask"),
        (#"{"kind":"file.read","path":"src/a.ts"}"#, "allow"),
        (#"{"kind":"command.run","argv":["curl","https://x"]}"#, "deny"),
        (#"{"kind":"command.run","argv":["/usr/bin/curl","https://x"]}"#, "deny"),
        (#"{"kind":"command.run","command":"echo hi; curl https://x"}"#, "deny"),
        (#"{"kind":"command.run","command":"echo hi && curl x"}"#, "deny"),
        (#"{"kind":"command.run","command":"echo $(curl x)"}"#, "deny"),
        (#"{"kind":"command.run","command":"FOO=1 curl x"}"#, "deny"),
        (#"{"kind":"command.run","command":"env curl x"}"#, "deny"),
        (#"{"kind":"command.run","command":"ls | curl x"}"#, "deny"),
        (#"{"kind":"command.run","command":"git push origin main"}"#, "ask"),
        (#"{"kind":"command.run","command":"git status"}"#, "allow"),
        (#"{"kind":"command.run","command":"rm -rf /workspace/x"}"#, "deny"),
        (#"{"kind":"command.run","argv":["echo","curl"]}"#, "allow"),
        (#"{"kind":"command.run","argv":["ls"],"stdoutTo":".env"}"#, "deny"),
        (#"{"kind":"file.move","from":"a","to":"secrets/a"}"#, "ask"),
    ])
    func rulesAndPrecedence(operation: String, verdict: String) throws {
        let decision = try Self.decide(operation, Self.rules)
        #expect(decision.verdict.rawValue == verdict, "\(operation): \(decision.rule) — \(decision.reason)")
        if verdict != "allow" { #expect(!decision.suggestion.isEmpty) }
    }

    @Test func strictPresetReadsButDoesNotWriteAndAsksForCommands() throws {
        #expect(try Self.decide(#"{"kind":"file.read","path":"a"}"#, "strict").verdict == .allow)
        #expect(try Self.decide(#"{"kind":"file.write","path":"a","content":""}"#, "strict").verdict == .deny)
        #expect(try Self.decide(#"{"kind":"command.run","argv":["ls"]}"#, "strict").verdict == .ask)
        #expect(try Self.decide(#"{"kind":"code.run","language":"typescript","source":"1"}"#, "strict").verdict == .ask)
    }

    static let invalidPolicies: [(String, String)] = [
        (#""nope""#, "params.policy"),
        (#"{"filesystem":{"reed":["**"]}}"#, "params.policy.filesystem.reed"),
        (#"{"commands":{"default":"maybe"}}"#, "params.policy.commands.default"),
        (#"{"commands":{"allow":[""]}}"#, "params.policy.commands.allow[0]"),
        (#"{"filesystem":{"read":["/etc/**"]}}"#, "params.policy.filesystem.read[0]"),
        (#"{"filesystem":{"read":["[ab"]}}"#, "params.policy.filesystem.read[0]"),
        (#"{"limits":{"timeoutMs":0}}"#, "params.policy.limits.timeoutMs"),
        (#"{"limits":{"cpus":2}}"#, "params.policy.limits.cpus"),
        ("5", "params.policy"),
        (#"{"commands":{"allow":["a","b",""]}}"#, "params.policy.commands.allow[2]"),
        (#"{"commands":{"allow":["curl *"],"deny":["curl *"]}}"#, "params.policy.commands.deny[0]"),
        (#"{"commands":{"ask":["git push *"],"deny":["x","git  push *"]}}"#, "params.policy.commands.deny[1]"),
        (#"{"filesystem":{"ask":["secrets/**"],"deny":["./secrets/**"]}}"#, "params.policy.filesystem.deny[0]"),
        (#"{"filesystem":{"deny":["**"]}}"#, "params.policy.filesystem.deny[0]"),
        (#"{"network":{"allow":["GitHub.com"],"ask":["github.com"]}}"#, "params.policy.network.ask[0]"),
        (#"{"capabilities":{"allow":["crm"],"deny":["crm.*"]}}"#, "params.policy.capabilities.deny[0]"),
        (#"{"filesystem":{"write":["src/{a,b"]}}"#, "params.policy.filesystem.write[0]"),
        (#"{"filesystem":{"deny":["ok","a]"]}}"#, "params.policy.filesystem.deny[1]"),
        (#"{"filesystem":{"read":["/workspacex/**"]}}"#, "params.policy.filesystem.read[0]"),
        (#"{"network":{"allow":["https://x.com"]}}"#, "params.policy.network.allow[0]"),
        (#"{"capabilities":{"deny":["crm search"]}}"#, "params.policy.capabilities.deny[0]"),
        (#"{"network":{"deny":["x"]}}"#, "params.policy.network.deny"),
    ]

    @Test(arguments: invalidPolicies)
    func invalidPoliciesNameTheField(policy: String, field: String) throws {
        let value = try JSONValue.parse(policy)
        var thrown: RPCError?
        do {
            _ = try Policy.resolve(value)
        } catch {
            thrown = error
        }
        #expect(thrown?.field == field)
        #expect(thrown?.code == .invalidParams)
    }

    @Test func contradictionsNameBothLists() throws {
        var thrown: RPCError?
        do {
            _ = try Policy.resolve(["commands": ["allow": ["x", "curl *"], "deny": ["curl  *"]]])
        } catch {
            thrown = error
        }
        #expect(thrown?.field == "params.policy.commands.deny[0]")
        #expect(thrown?.message.contains("also in commands.allow[1]") == true, "\(thrown?.message ?? "")")
        #expect(thrown?.hint.contains("remove it from commands.allow or from commands.deny") == true)
        do {
            _ = try Policy.resolve(["filesystem": ["deny": ["**"]]])
        } catch {
            thrown = error
        }
        #expect(thrown?.message.contains("filesystem.read (from the \"default\" preset)") == true)
        let both = try Policy.resolve(["filesystem": ["read": ["src/**"], "write": ["src/**"]]])
        #expect(both.filesystem.write == ["src/**"])
    }

    @Test func partialPolicyKeepsDefaultsForWhatItOmits() throws {
        let policy = try Policy.resolve(["commands": ["deny": ["curl *"]], "limits": ["timeoutMs": 5000]])
        #expect(policy.commands.deny == ["curl *"])
        #expect(policy.commands.defaultVerdict == .allow)
        #expect(policy.filesystem == Policy.default.filesystem)
        #expect(policy.limits.timeoutMs == 5000)
        #expect(policy.limits.outputBytes == 1_048_576)
    }

    @Test(arguments: [
        ("a/b", "a/b"), ("./a//b/", "a/b"), ("/workspace", "."), ("/workspace/", "."), ("a/..", "."),
        ("/workspace/a/../b", "b"),
    ])
    func boundaryNormalises(path: String, relative: String) {
        #expect(WorkspaceBoundary.relativePath(path) == relative)
    }

    @Test(arguments: ["..", "../a", "a/../..", "/", "/etc", "/workspacex/a", "/workspace/../etc"])
    func boundaryRefusesEscapes(path: String) {
        #expect(WorkspaceBoundary.relativePath(path) == nil)
    }
}

@Suite struct OperationParsingTests {
    @Test(arguments: [
        (#"{"kind":"file.wrte","path":"a"}"#, "params.operations[0].kind"),
        (#"{"path":"a"}"#, "params.operations[0].kind"),
        (#"{"kind":"file.write","content":"x"}"#, "params.operations[0].path"),
        (#"{"kind":"file.write","path":"a","content":5}"#, "params.operations[0].content"),
        (#"{"kind":"file.write","path":"a","content":"x","encoding":"latin1"}"#, "params.operations[0].encoding"),
        (#"{"kind":"file.write","path":"a","content":"x","colour":"red"}"#, "params.operations[0].colour"),
        (#"{"kind":"file.write","path":"a","content":"x","expectSha256":"abc"}"#, "params.operations[0].expectSha256"),
        (#"{"kind":"file.edit","path":"a","edits":[]}"#, "params.operations[0].edits"),
        (
            #"{"kind":"file.edit","path":"a","edits":[{"oldText":"","newText":"x"}]}"#,
            "params.operations[0].edits[0].oldText"
        ),
        (#"{"kind":"command.run"}"#, "params.operations[0].argv"),
        (#"{"kind":"command.run","argv":["a"],"command":"b"}"#, "params.operations[0].command"),
        (#"{"kind":"command.run","argv":[]}"#, "params.operations[0].argv"),
        (#"{"kind":"command.run","argv":["a",1]}"#, "params.operations[0].argv[1]"),
        (#"{"kind":"command.run","argv":["a"],"timeoutMs":0}"#, "params.operations[0].timeoutMs"),
        (#"{"kind":"command.run","argv":["a"],"env":{"A":1}}"#, "params.operations[0].env.A"),
        (#"{"kind":"code.run","source":"1"}"#, "params.operations[0].language"),
        (#"{"kind":"code.run","language":"python","source":"1"}"#, "params.operations[0].language"),
        (#"{"kind":"code.run","language":"typescript"}"#, "params.operations[0].source"),
        (#"{"kind":"code.run","language":"typescript","source":"1","path":"a.ts"}"#, "params.operations[0].path"),
        (#"{"kind":"file.list","maxEntries":0}"#, "params.operations[0].maxEntries"),
        (#"{"kind":"file.read","path":"a","offset":-1}"#, "params.operations[0].offset"),
        (#"[1]"#, "params.operations[0]"),
    ])
    func invalidOperationsNameTheField(json: String, field: String) throws {
        let value = try JSONValue.parse(json)
        var thrown: RPCError?
        do {
            _ = try Operation.parse(value, index: 0)
        } catch {
            thrown = error
        }
        #expect(thrown?.field == field)
        #expect(thrown?.code == .invalidParams)
        #expect(!(thrown?.hint.isEmpty ?? true))
    }

    @Test func opIdsDefaultToTheirPosition() throws {
        let operation = try Operation.parse(["kind": "file.list"], index: 4)
        #expect(operation.opId == "op_5")
        #expect(try Operation.parse(["kind": "file.list", "id": "mine"], index: 0).opId == "mine")
    }
}
