import SpacesPolicy
import SpacesProtocol
import Testing

@Suite struct GlobTests {
    static let nfc = "caf\u{E9}"
    static let nfd = "cafe\u{301}"

    static let cases: [(String, String, Bool)] = [
        // `**` at the start, in the middle, at the end.
        ("**", "a.txt", true), ("**", "deep/down/a.txt", true), ("**", ".", true), ("**/b", "b", true),
        ("**/b", "a/b", true), ("**/b", "a/xb", false), ("**/*.txt", "a.txt", true),
        ("**/*.txt", "dir/sub/a.txt", true),
        ("src/**/test", "src/test", true), ("src/**/test", "src/a/b/test", true), ("src/**/test", "src/atest", false),
        ("src/**", "src/a/b.ts", true), ("src/**", "src", false), ("src/**", "srcx/a", false),
        ("src/**.ts", "src/a/b.ts", true),
        ("***/x", "a/b/x", true),
        // Dotfiles are not special.
        ("*", ".hidden", true), ("*.env", ".env", true), (".*", ".bashrc", true), ("**/.env", ".env", true),
        ("**/.env", "app/.env", true), ("**/.env", "app/.envrc", false), ("**/.git/**", "sub/.git/HEAD", true),
        ("*", "a/.env", false),
        // Trailing slashes, `./`, `/workspace/` and `//`.
        ("src/", "src", true), ("src/", "src/a/b.ts", true), ("src/", "srcx/a", false), ("src//", "src/a", true),
        ("src", "src/", true), ("./", "any/thing", true), ("./src/*.ts", "src/a.ts", true),
        ("././src/*", "src/a", true),
        ("/workspace/src/**", "src/main.ts", true), ("/workspace", ".", true), ("src//a", "src/a", true),
        ("src/*", "./src/a", true), ("src/*", "/workspace/src/a", true), ("src/*", "src//a", true),
        // Unicode: by scalar, no normalization.
        ("\(nfc)/*", "\(nfc)/x", true), ("\(nfc)/*", "\(nfd)/x", false), ("\(nfd)/*", "\(nfd)/x", true),
        ("caf?", nfc, true), ("caf?", nfd, false), ("caf*", nfd, true), ("données/*", "données/é.txt", true),
        ("?", "🙂", true), ("日本/*.md", "日本/読む.md", true), ("caf[é]", nfc, true), ("caf[é]", nfd, false),
        // Case sensitivity.
        ("Secret", "secret", false), ("*.TXT", "a.txt", false), ("[A-Z]*", "Readme", true), ("[A-Z]*", "readme", false),
        // Classes.
        ("[ab]x", "bx", true), ("[!ab]x", "bx", false), ("[^ab]x", "cx", true), ("[a-c]x", "cx", true),
        ("[]]x", "]x", true), ("[!]]x", "ax", true), ("a[/]b", "a/b", false), ("[!a]", "/", false), ("[a-]", "-", true),
        // Escapes.
        ("\\*", "*", true), ("\\*", "a", false), ("\\[a\\]", "[a]", true), ("a\\?", "a?", true), ("a\\?", "ab", false),
        // `*` and `?` stay within a component; braces.
        ("*.txt", "dir/a.txt", false), ("*/a", "x/a", true), ("*/a", "x/y/a", false), ("a?c", "abc", true),
        ("a?c", "a/c", false),
        ("*.{js,ts}", "a.ts", true), ("*.{js,ts}", "a.py", false), ("{src,lib}/**", "lib/a", true),
        ("{a}", "{a}", true),
        ("{a,{b,c}}x", "cx", true), ("{src,lib}/", "lib", true),
    ]

    @Test(arguments: cases)
    func matching(pattern: String, path: String, expected: Bool) {
        #expect(Glob(pattern).matches(path) == expected, "\(pattern) ~ \(path)")
    }

    @Test(arguments: [
        ("secrets/**", "secrets", true), ("secrets/**", "src", false), ("**/.env", "app", true),
        ("*.env", "app", false),
        ("src/*.ts", ".", true), ("a/b/**", "a", true), ("a/b/c", "a/x", false), (".env", ".env", true),
    ])
    func matchingWithin(pattern: String, directory: String, expected: Bool) {
        #expect(Glob(pattern).matchesWithin(directory) == expected, "\(pattern) within \(directory)")
    }

    @Test(arguments: [
        ("src/[a", "unbalanced bracket"), ("a]", "unbalanced bracket"), ("{a,b", "unbalanced brace"),
        ("a}", "unbalanced brace"), ("a\\", "lone backslash"), ("", "empty pattern"), ("  ", "empty pattern"),
        ("/etc/**", "outside the workspace"), ("/workspacex/**", "outside the workspace"), ("../x", "climbs out"),
        ("{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}{o,p}{q,r}", "alternatives"),
    ])
    func invalidGlobsAreRejected(pattern: String, message: String) {
        #expect(throws: PatternError.self) { try Glob.validate(pattern) }
        do {
            try Glob.validate(pattern)
        } catch {
            #expect(error.message.contains(message), "\(pattern): \(error.message)")
            #expect(!error.hint.isEmpty)
        }
    }

    @Test(arguments: ["**", "src/[a-z]*.ts", "\\[literal\\]", "{a,b}/**", "/workspace/src/", "[]]", "a/**/b"])
    func validGlobsPass(pattern: String) throws {
        try Glob.validate(pattern)
    }

    @Test func aHostileGlobStaysFast() {
        let pattern = String(repeating: "*a", count: 40) + "b"
        let path = String(repeating: "a", count: 2_000)
        #expect(!Glob(pattern).matches(path))
        #expect(!Glob(String(repeating: "**/", count: 30) + "x").matches(String(repeating: "a/", count: 500)))
    }
}

@Suite struct CommandPatternTests {
    @Test(arguments: [
        ("git push *", "git push", true), ("git push *", "git push origin main", true),
        ("git push *", "git pushx", false),
        ("git push *", "git", false), ("curl", "curl", true), ("curl", "curl x", false), ("curl *", "curl", true),
        ("*", "anything at all", true), ("git * main", "git push origin main", true), ("git * main", "git main", false),
        ("/usr/bin/curl *", "curl x", true), ("git  push   *", "git push x", true), ("rm -rf *", "rm -r -f x", false),
        ("Curl *", "curl x", false), ("npm run *", "npm run test --watch", true),
        ("* --force", "git push --force", true),
        ("curl *", "curlx y", false), ("echo a*b", "echo a/x/b", true),
    ])
    func matching(pattern: String, command: String, expected: Bool) {
        #expect(CommandPattern(pattern).matches(commandText: command) == expected, "\(pattern) ~ \(command)")
    }
}
