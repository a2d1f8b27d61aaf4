/// Why a policy pattern is malformed, and how to write it.
public struct PatternError: Error, Sendable, Equatable {
    public var message: String
    /// A sentence telling the policy's author what to write instead.
    public var hint: String

    public init(_ message: String, hint: String) {
        self.message = message
        self.hint = hint
    }
}

/// A `commands` rule, matched against a command's normalized argv (see ``ShellAnalysis``) joined by single spaces.
///
/// `*` matches any run of characters, spaces and `/` included; every other character is literal and matching is
/// case-sensitive. A pattern ending in ` *` also matches the command with nothing after it: `git push *` matches
/// `git push` and `git push origin main`, not `git pushx`. A pattern without `*` matches exactly that command
/// (`curl` is `curl` with no arguments: write `curl *` for every use). The pattern's first word is reduced to its
/// basename as the program is (`/usr/bin/curl *` is `curl *`), and runs of spaces count as one.
///
/// Patterns see text, not option syntax: `rm -rf *` does not match `rm -r -f x`, so deny the program (`rm *`)
/// when every use of it is dangerous. An argument holding spaces reads as several (`curl\ x` reads `curl x`),
/// which errs toward the rule.
public struct CommandPattern: Sendable, Hashable {
    /// The pattern as the policy wrote it.
    public let pattern: String
    /// The pattern as it is matched: single spaces, first word reduced to its basename.
    public let normalized: String
    private let scalars: [Unicode.Scalar]
    private let withoutTrailingStar: [Unicode.Scalar]?

    public init(_ pattern: String) {
        self.pattern = pattern
        var words = pattern.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        if let program = words.first { words[0] = ShellAnalyzer.basename(program) }
        normalized = words.joined(separator: " ")
        scalars = Array(normalized.unicodeScalars)
        withoutTrailingStar = normalized.hasSuffix(" *") ? Array(normalized.dropLast(2).unicodeScalars) : nil
    }

    /// Whether the pattern matches a command given as its normalized argv.
    public func matches(_ argv: [String]) -> Bool {
        matches(commandText: argv.joined(separator: " "))
    }

    /// Whether the pattern matches a command given as its normalized argv joined by single spaces.
    public func matches(commandText text: String) -> Bool {
        let text = Array(text.unicodeScalars)
        return Self.wildcardMatch(scalars, text) || withoutTrailingStar.map { Self.wildcardMatch($0, text) } == true
    }

    /// `*` matches any run of scalars; linear backtracking to the last star, so no pattern can blow up.
    static func wildcardMatch(_ pattern: [Unicode.Scalar], _ text: [Unicode.Scalar]) -> Bool {
        var patternIndex = 0
        var textIndex = 0
        var star: (pattern: Int, text: Int)?
        while textIndex < text.count {
            if patternIndex < pattern.count && pattern[patternIndex] == "*" {
                star = (patternIndex, textIndex)
                patternIndex += 1
            } else if patternIndex < pattern.count && pattern[patternIndex] == text[textIndex] {
                patternIndex += 1
                textIndex += 1
            } else if let last = star {
                star = (last.pattern, last.text + 1)
                patternIndex = last.pattern + 1
                textIndex = last.text + 1
            } else {
                return false
            }
        }
        while patternIndex < pattern.count && pattern[patternIndex] == "*" { patternIndex += 1 }
        return patternIndex == pattern.count
    }
}

/// A `network` rule: a host name, `*.` and a domain, or `*`, with an optional `:port`.
///
/// `*.github.com` matches every name below `github.com` at any depth (`api.github.com`, `a.b.github.com`) but
/// not `github.com` itself: list both to cover both. `*` matches every host. Host names compare after ASCII
/// lowercasing and dropping a final `.`; internationalized names are compared as written (no punycode
/// conversion). IPv6 addresses are written in brackets (`[::1]:8080`). A pattern without a port matches every
/// port; one with a port matches only that port, and a request whose port is unknown only when the rule would
/// make it stricter (an `ask` rule), never to allow it.
public struct HostPattern: Sendable, Hashable {
    enum Host: Sendable, Hashable {
        case any
        /// The domain below which names match, with its leading dot (`.github.com`).
        case below(String)
        case exact(String)
    }

    /// The pattern as the policy wrote it.
    public let pattern: String
    let host: Host
    public let port: Int?

    /// Parses a host pattern; throws naming what is wrong with it.
    public init(validating pattern: String) throws(PatternError) {
        self.pattern = pattern
        let hint = "write a host name such as \"api.github.com\", \"*.github.com\" or \"*.github.com:443\""
        guard !pattern.isEmpty else { throw PatternError("empty host pattern", hint: hint) }
        if pattern.contains("/") || pattern.contains("@") {
            throw PatternError("'\(pattern)' is a URL, not a host name", hint: hint)
        }
        if pattern.unicodeScalars.contains(where: { $0.properties.isWhitespace }) {
            throw PatternError("'\(pattern)' holds whitespace", hint: hint)
        }
        var hostText = Substring(pattern)
        var portText: Substring?
        if pattern.hasPrefix("[") {
            guard let close = pattern.firstIndex(of: "]") else {
                throw PatternError("'\(pattern)' opens [ without closing it", hint: "write IPv6 hosts as [::1]:443")
            }
            hostText = pattern[pattern.index(after: pattern.startIndex)..<close]
            let rest = pattern[pattern.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else {
                    throw PatternError("'\(pattern)' has text after ]", hint: "write IPv6 hosts as [::1]:443")
                }
                portText = rest.dropFirst()
            }
        } else if let colon = pattern.lastIndex(of: ":") {
            hostText = pattern[..<colon]
            portText = pattern[pattern.index(after: colon)...]
            if hostText.contains(":") {
                throw PatternError("'\(pattern)' looks like an IPv6 address", hint: "write IPv6 hosts as [::1]:443")
            }
        }
        if let portText {
            guard let port = Int(portText), portText.allSatisfy(\.isASCII), (1...65_535).contains(port) else {
                throw PatternError(
                    "'\(portText)' is not a port (1-65535)", hint: "omit the port to match every port, or write :443")
            }
            self.port = port
        } else {
            self.port = nil
        }
        let name = Self.normalizedHost(String(hostText))
        if name == "*" {
            host = .any
            return
        }
        var domain = Substring(name)
        let below = domain.hasPrefix("*.")
        if below { domain = domain.dropFirst(2) }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        let badScalar = domain.unicodeScalars.first { scalar in
            !(scalar.isASCII
                ? scalar.properties.isAlphabetic || scalar.isDigit || "-_.:".unicodeScalars.contains(scalar)
                : !scalar.properties.isWhitespace)
        }
        if let badScalar {
            throw PatternError(
                "'\(pattern)' holds '\(badScalar)'; only a leading *. is a wildcard", hint: hint)
        }
        guard !domain.isEmpty, labels.allSatisfy({ !$0.isEmpty }) else {
            throw PatternError("'\(pattern)' has an empty label", hint: hint)
        }
        host = below ? .below("." + domain) : .exact(String(domain))
    }

    /// Lowercases ASCII letters, drops a final `.` and IPv6 brackets.
    static func normalizedHost(_ host: String) -> String {
        var text = Substring(host)
        if text.hasPrefix("[") && text.hasSuffix("]") { text = text.dropFirst().dropLast() }
        if text.hasSuffix(".") && text.count > 1 && text != "*." { text = text.dropLast() }
        return String(
            String.UnicodeScalarView(
                text.unicodeScalars.map { scalar in
                    ("A"..."Z").contains(scalar) ? Unicode.Scalar(scalar.value + 32) ?? scalar : scalar
                }))
    }

    /// Whether a request for `host` on `port` matches; an unknown port matches only port-less patterns.
    public func matches(host: String, port: Int?) -> Bool {
        matches(host: host, port: port, unknownPortMatches: false)
    }

    func matches(host requested: String, port requestedPort: Int?, unknownPortMatches: Bool) -> Bool {
        if let port {
            guard let requestedPort else { return unknownPortMatches && matchesHost(requested) }
            guard port == requestedPort else { return false }
        }
        return matchesHost(requested)
    }

    private func matchesHost(_ requested: String) -> Bool {
        let name = Self.normalizedHost(requested)
        switch host {
        case .any: return true
        case .below(let domain): return name.hasSuffix(domain) && name.count > domain.count
        case .exact(let exact): return name == exact
        }
    }
}

/// A `capabilities` rule: `<capability>.<method>` with `*` matching any run of characters (`crm.*`, `*.delete`).
/// A pattern without a `.` names every method of one capability (`crm` is `crm.*`). Case-sensitive.
struct CapabilityPattern {
    let pattern: String
    private let scalars: [Unicode.Scalar]

    init(_ pattern: String) {
        self.pattern = pattern
        scalars = Array((pattern.contains(".") ? pattern : pattern + ".*").unicodeScalars)
    }

    static func validate(_ pattern: String) throws(PatternError) {
        let hint = "write <capability>.<method>, e.g. \"crm.search\", \"crm.*\" or \"*.delete\""
        if pattern.unicodeScalars.contains(where: { $0.properties.isWhitespace }) {
            throw PatternError("'\(pattern)' holds whitespace", hint: hint)
        }
        if let dot = pattern.firstIndex(of: "."),
            pattern[..<dot].isEmpty || pattern[pattern.index(after: dot)...].isEmpty
        {
            throw PatternError("'\(pattern)' has an empty capability or method name", hint: hint)
        }
    }

    func matches(_ name: String, method: String) -> Bool {
        CommandPattern.wildcardMatch(scalars, Array("\(name).\(method)".unicodeScalars))
    }
}
