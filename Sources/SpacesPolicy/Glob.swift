/// Glob patterns over workspace-relative paths.
///
/// `*` matches within one path component, `**` across components (`**/` also matches nothing, so `**/.env`
/// matches `.env`), `?` one character, `[abc]`/`[a-z]`/`[!a]` one character of a set; `\` escapes. A leading
/// `/workspace/` is dropped, and a trailing `/` matches the directory and everything below it. Matching is
/// case-sensitive and dotfiles are not special.
public struct Glob: Sendable, Hashable {
    public let pattern: String
    private let characters: [Character]

    public init(_ pattern: String) {
        var text = pattern
        if text.hasPrefix(WorkspaceBoundary.root + "/") {
            text = String(text.dropFirst(WorkspaceBoundary.root.count + 1))
        }
        if text.hasSuffix("/") { text += "**" }
        self.pattern = pattern
        self.characters = Array(text)
    }

    public func matches(_ path: String) -> Bool {
        Self.match(characters[...], Array(path)[...])
    }

    private static func match(_ pattern: ArraySlice<Character>, _ text: ArraySlice<Character>) -> Bool {
        var pattern = pattern
        var text = text
        while let head = pattern.first {
            switch head {
            case "*":
                if pattern.dropFirst().first == "*" {
                    var rest = pattern.dropFirst(2)
                    // `**/` may match zero components.
                    if rest.first == "/" {
                        if match(rest.dropFirst(), text) { return true }
                        rest = rest.dropFirst()
                        var remaining = text
                        while let slash = remaining.firstIndex(of: "/") {
                            remaining = remaining[remaining.index(after: slash)...]
                            if match(rest, remaining) { return true }
                        }
                        return false
                    }
                    var candidate = text
                    while true {
                        if match(rest, candidate) { return true }
                        guard !candidate.isEmpty else { return false }
                        candidate = candidate.dropFirst()
                    }
                }
                let rest = pattern.dropFirst()
                var candidate = text
                while true {
                    if match(rest, candidate) { return true }
                    guard let first = candidate.first, first != "/" else { return false }
                    candidate = candidate.dropFirst()
                }
            case "?":
                guard let first = text.first, first != "/" else { return false }
                pattern = pattern.dropFirst()
                text = text.dropFirst()
            case "[":
                guard let first = text.first, first != "/",
                    let (matched, rest) = matchSet(pattern.dropFirst(), first)
                else { return false }
                guard matched else { return false }
                pattern = rest
                text = text.dropFirst()
            case "\\" where pattern.count > 1:
                let literal = pattern[pattern.index(after: pattern.startIndex)]
                guard text.first == literal else { return false }
                pattern = pattern.dropFirst(2)
                text = text.dropFirst()
            default:
                guard text.first == head else { return false }
                pattern = pattern.dropFirst()
                text = text.dropFirst()
            }
        }
        return text.isEmpty
    }

    /// Matches one character against `[...]` (the slice starts after `[`); nil when the set is unterminated.
    private static func matchSet(_ set: ArraySlice<Character>, _ character: Character) -> (Bool, ArraySlice<Character>)?
    {
        var rest = set
        var negated = false
        if rest.first == "!" || rest.first == "^" {
            negated = true
            rest = rest.dropFirst()
        }
        var matched = false
        var first = true
        while let head = rest.first {
            if head == "]" && !first { return (matched != negated, rest.dropFirst()) }
            first = false
            rest = rest.dropFirst()
            if rest.first == "-", rest.count > 1, let upper = rest.dropFirst().first, upper != "]" {
                if head <= character && character <= upper { matched = true }
                rest = rest.dropFirst(2)
            } else if head == character {
                matched = true
            }
        }
        return nil
    }
}
