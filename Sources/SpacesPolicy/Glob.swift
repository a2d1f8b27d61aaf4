/// A glob over workspace-relative paths: the `filesystem` rules of a policy.
///
/// - `*` matches any run of characters within one path component; `?` one character other than `/`.
/// - `**` matches across components. As a whole component it also matches none: `**/.env` matches `.env` and
///   `a/b/.env`, `src/**/test` matches `src/test`; `src/**` matches everything below `src`, not `src` itself.
/// - `[abc]`, `[a-z]`, `[!a]` (or `[^a]`) match one character of a set (never `/`); a `]` right after `[` or
///   `[!` is a member. POSIX classes (`[[:alpha:]]`) are not supported.
/// - `{a,b}` matches either alternative (nested braces allowed, at most 256 alternatives); `{a}` is literal.
/// - `\` makes the next character literal.
/// - A leading `/workspace/` or `./` is dropped and `//` is one `/`; a trailing `/` matches the directory and
///   everything below it (`src/` is `src` and `src/**`).
/// - Dotfiles are not special: `*` matches `.env` and `**` matches `.git/config`.
/// - Matching is by Unicode scalar, case-sensitive, with no normalization: `é` written precomposed (NFC) and
///   `e` + combining accent (NFD) are different names, as they are different files on Linux. List both forms,
///   or use a wildcard, to cover both.
///
/// Paths are normalised before matching as ``WorkspaceBoundary/relativePath(_:)`` does (`./a//b/` is `a/b`).
/// A match takes time proportional to pattern length × path length, whatever the pattern.
public struct Glob: Sendable, Hashable {
    /// The pattern as the policy wrote it.
    public let pattern: String
    private let alternatives: [[Unicode.Scalar]]

    static let maxAlternatives = 256

    public init(_ pattern: String) {
        self.pattern = pattern
        var text = Substring(pattern)
        if text == WorkspaceBoundary.root {
            text = "."
        } else if text.hasPrefix(WorkspaceBoundary.root + "/") {
            text = text.dropFirst(WorkspaceBoundary.root.count + 1)
        }
        var alternatives: [[Unicode.Scalar]] = []
        for alternative in Self.expandBraces(Array(text.unicodeScalars)) {
            alternatives += Self.normalized(alternative)
        }
        self.alternatives = alternatives
    }

    /// Whether `path` (workspace-relative, or absolute under `/workspace`) matches.
    public func matches(_ path: String) -> Bool {
        let text = Array((WorkspaceBoundary.relativePath(path) ?? path).unicodeScalars)
        return alternatives.contains { Self.match($0, text, orBelow: false) }
    }

    /// Whether the pattern matches `directory` or some path that could exist below it: moving or deleting the
    /// directory moves or deletes those paths too.
    public func matchesWithin(_ directory: String) -> Bool {
        if matches(directory) { return true }
        let relative = WorkspaceBoundary.relativePath(directory) ?? directory
        let text = relative == "." ? [] : Array((relative + "/").unicodeScalars)
        return alternatives.contains { Self.match($0, text, orBelow: true) }
    }

    /// `path` with every glob metacharacter escaped, so that as a pattern it matches exactly `path`.
    public static func escape(_ path: String) -> String {
        var escaped = ""
        for scalar in path.unicodeScalars {
            if "*?[]{}\\".unicodeScalars.contains(scalar) { escaped.unicodeScalars.append("\\") }
            escaped.unicodeScalars.append(scalar)
        }
        return escaped
    }

    /// Checks a pattern as `Policy.resolve` does: not empty, inside the workspace, every `[` and `{` closed,
    /// no stray `]` or `}`, no lone trailing `\`, at most ``maxAlternatives`` brace alternatives.
    public static func validate(_ pattern: String) throws(PatternError) {
        let escapeHint = "close every [ with ] and { with }, or escape them with a backslash (\\[)"
        if pattern.trimmingSpaces.isEmpty {
            throw PatternError("empty pattern", hint: "remove the empty string, or write a glob such as \"src/**\"")
        }
        if pattern.hasPrefix("/") && pattern != WorkspaceBoundary.root
            && !pattern.hasPrefix(WorkspaceBoundary.root + "/")
        {
            throw PatternError(
                "'\(pattern)' is outside the workspace",
                hint: "write globs relative to the workspace, e.g. \"src/**\" or \"**/.env\"")
        }
        if pattern.split(separator: "/").contains("..") {
            throw PatternError(
                "'\(pattern)' climbs out of the workspace with ..",
                hint: "write globs relative to the workspace root, without .. components")
        }
        let scalars = Array(pattern.unicodeScalars)
        var index = 0
        var braces = 0
        while index < scalars.count {
            switch scalars[index] {
            case "\\":
                guard index + 1 < scalars.count else {
                    throw PatternError("'\(pattern)' ends with a lone backslash", hint: "remove it, or write \\\\")
                }
                index += 2
                continue
            case "[":
                guard let (_, end) = characterClass(scalars, at: index) else {
                    throw PatternError("'\(pattern)' has an unbalanced bracket: [ is never closed", hint: escapeHint)
                }
                index = end
                continue
            case "]":
                throw PatternError("'\(pattern)' has an unbalanced bracket: ] without [", hint: escapeHint)
            case "{":
                braces += 1
            case "}":
                braces -= 1
                if braces < 0 {
                    throw PatternError("'\(pattern)' has an unbalanced brace: } without {", hint: escapeHint)
                }
            default:
                break
            }
            index += 1
        }
        if braces > 0 {
            throw PatternError("'\(pattern)' has an unbalanced brace: { is never closed", hint: escapeHint)
        }
        if expandBraces(scalars).count > maxAlternatives {
            throw PatternError(
                "'\(pattern)' expands to more than \(maxAlternatives) alternatives",
                hint: "split it into several patterns, or use * and ** instead of long {…} lists")
        }
    }

    /// The form the pattern is matched in, as alternatives: `./` and `//` dropped, a trailing `/` doubled into the
    /// directory itself and everything below it.
    private static func normalized(_ scalars: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var text = String(String.UnicodeScalarView(scalars))
        let isDirectory = text.hasSuffix("/")
        while text.hasSuffix("/") { text.removeLast() }
        while text.hasPrefix("./") { text.removeFirst(2) }
        while text.contains("//") { text = text.replacing("//", with: "/") }
        while text.contains("/./") { text = text.replacing("/./", with: "/") }
        guard isDirectory else { return [Array(text.unicodeScalars)] }
        if text.isEmpty || text == "." { return [Array("**".unicodeScalars)] }
        return [Array(text.unicodeScalars), Array((text + "/**").unicodeScalars)]
    }

    /// `{a,b}` alternatives, expanded outermost first; stops adding past ``maxAlternatives`` + 1.
    static func expandBraces(_ pattern: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var index = 0
        while index < pattern.count {
            switch pattern[index] {
            case "\\":
                index += 2
                continue
            case "[":
                if let (_, end) = characterClass(pattern, at: index) {
                    index = end
                    continue
                }
            case "{":
                if let (parts, close) = braceAlternatives(pattern, at: index), parts.count > 1 {
                    var results: [[Unicode.Scalar]] = []
                    for part in parts {
                        let expanded = Array(pattern[..<index]) + part + Array(pattern[(close + 1)...])
                        results += expandBraces(expanded)
                        if results.count > maxAlternatives { break }
                    }
                    return results
                }
            default:
                break
            }
            index += 1
        }
        return [pattern]
    }

    /// The comma-separated parts of the braces opening at `open`, and the index of the closing brace.
    private static func braceAlternatives(_ pattern: [Unicode.Scalar], at open: Int) -> ([[Unicode.Scalar]], Int)? {
        var parts: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        var depth = 0
        var index = open + 1
        while index < pattern.count {
            let scalar = pattern[index]
            switch scalar {
            case "\\":
                current.append(scalar)
                if index + 1 < pattern.count { current.append(pattern[index + 1]) }
                index += 2
                continue
            case "{":
                depth += 1
            case "}":
                if depth == 0 {
                    parts.append(current)
                    return (parts, index)
                }
                depth -= 1
            case "," where depth == 0:
                parts.append(current)
                current = []
                index += 1
                continue
            default:
                break
            }
            current.append(scalar)
            index += 1
        }
        return nil
    }

    /// The set of a `[…]` starting at `open`, and the index after its `]`; nil when it never closes.
    static func characterClass(_ pattern: [Unicode.Scalar], at open: Int) -> (CharacterClass, Int)? {
        var index = open + 1
        var negated = false
        if index < pattern.count && (pattern[index] == "!" || pattern[index] == "^") {
            negated = true
            index += 1
        }
        var ranges: [ClosedRange<UInt32>] = []
        var first = true
        while index < pattern.count {
            var lower = pattern[index]
            if lower == "]" && !first { return (CharacterClass(ranges: ranges, negated: negated), index + 1) }
            first = false
            if lower == "\\" && index + 1 < pattern.count {
                index += 1
                lower = pattern[index]
            }
            index += 1
            if index + 1 < pattern.count && pattern[index] == "-" && pattern[index + 1] != "]" {
                var upper = pattern[index + 1]
                index += 2
                if upper == "\\" && index < pattern.count {
                    upper = pattern[index]
                    index += 1
                }
                if lower.value <= upper.value { ranges.append(lower.value...upper.value) }
            } else {
                ranges.append(lower.value...lower.value)
            }
        }
        return nil
    }

    struct CharacterClass {
        var ranges: [ClosedRange<UInt32>]
        var negated: Bool

        func contains(_ scalar: Unicode.Scalar) -> Bool {
            ranges.contains { $0.contains(scalar.value) } != negated
        }
    }

    /// Matches `pattern` against all of `text`, or (`orBelow`) against `text` followed by anything.
    ///
    /// Dynamic programming over (pattern position, text position), filled from the ends: each cell is decided
    /// in constant time, so a match costs pattern length × text length steps and no recursion.
    private static func match(_ pattern: [Unicode.Scalar], _ text: [Unicode.Scalar], orBelow: Bool) -> Bool {
        let width = text.count + 1
        var table = [Bool](repeating: false, count: (pattern.count + 1) * width)
        func cell(_ patternIndex: Int, _ textIndex: Int) -> Bool { table[patternIndex * width + textIndex] }
        // After the last `/` at or after each position: where `**/` resumes when it takes one more component.
        var afterNextSlash = [Int?](repeating: nil, count: width)
        for index in stride(from: text.count - 1, through: 0, by: -1) {
            afterNextSlash[index] = text[index] == "/" ? index + 1 : afterNextSlash[index + 1]
        }
        table[pattern.count * width + text.count] = true
        for patternIndex in stride(from: pattern.count - 1, through: 0, by: -1) {
            let row = patternIndex * width
            if orBelow { table[row + text.count] = true }
            let scalar = pattern[patternIndex]
            var starRun = patternIndex
            while starRun < pattern.count && pattern[starRun] == "*" { starRun += 1 }
            let characterClass = scalar == "[" ? Self.characterClass(pattern, at: patternIndex) : nil
            for textIndex in stride(from: orBelow ? text.count - 1 : text.count, through: 0, by: -1) {
                let current = textIndex < text.count ? text[textIndex] : nil
                var matched: Bool
                switch scalar {
                case "*" where starRun - patternIndex >= 2 && starRun < pattern.count && pattern[starRun] == "/":
                    // `**/`: no component, or one more whole component and again.
                    matched = cell(starRun + 1, textIndex)
                    if !matched, let resume = afterNextSlash[textIndex] { matched = cell(patternIndex, resume) }
                case "*" where starRun - patternIndex >= 2:
                    matched = cell(starRun, textIndex) || (current != nil && cell(patternIndex, textIndex + 1))
                case "*":
                    matched =
                        cell(patternIndex + 1, textIndex)
                        || (current != nil && current != "/" && cell(patternIndex, textIndex + 1))
                case "?":
                    matched = current != nil && current != "/" && cell(patternIndex + 1, textIndex + 1)
                case "[" where characterClass != nil:
                    guard let current, current != "/", let (set, end) = characterClass else {
                        matched = false
                        break
                    }
                    matched = set.contains(current) && cell(end, textIndex + 1)
                case "\\" where patternIndex + 1 < pattern.count:
                    matched = current == pattern[patternIndex + 1] && cell(patternIndex + 2, textIndex + 1)
                default:
                    matched = current == scalar && cell(patternIndex + 1, textIndex + 1)
                }
                table[row + textIndex] = matched
            }
        }
        return cell(0, 0)
    }
}
