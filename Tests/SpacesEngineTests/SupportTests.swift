import SpacesProtocol
import Testing

@testable import SpacesEngine

@Suite struct LineSplitterTests {
    func split(_ chunks: [String], max: Int = 16) -> [String] {
        var splitter = LineSplitter(maxLineBytes: max)
        var lines: [LineSplitter.Line] = []
        for chunk in chunks {
            Array(chunk.utf8).withUnsafeBytes { splitter.feed($0, into: &lines) }
        }
        splitter.finish(into: &lines)
        return lines.map { line in
            switch line {
            case .complete(let bytes): String(decoding: bytes, as: UTF8.self)
            case .oversized(let count): "<oversized \(count)>"
            }
        }
    }

    @Test func splitsAcrossChunkBoundaries() {
        #expect(split(["ab", "c\nd", "e\n\nf"]) == ["abc", "de", "", "f"])
    }

    @Test func stripsCarriageReturns() {
        #expect(split(["a\r\n", "b\r", "\n"]) == ["a", "b"])
    }

    @Test func reportsAnOversizedLineOnceAndKeepsReading() {
        #expect(split(["0123456789", "0123456789", "012\nok\n"]) == ["<oversized 23>", "ok"])
        #expect(split([String(repeating: "x", count: 40) + "\nnext\n"]) == ["<oversized 40>", "next"])
    }

    @Test func aLineOfExactlyTheMaximumIsAccepted() {
        #expect(split([String(repeating: "x", count: 16) + "\n"]) == [String(repeating: "x", count: 16)])
    }
}

@Suite struct ClockTests {
    @Test func timestampsAreRFC3339WithMilliseconds() {
        let stamp = Clock.timestamp()
        #expect(stamp.utf8.count == 24)
        #expect(stamp.hasSuffix("Z"))
        #expect(Array(stamp)[10] == "T")
        #expect(Array(stamp)[19] == ".")
    }

    @Test func identifiersHaveAPrefixAndSixteenHexDigits() {
        let id = Identifier.make("sp_")
        #expect(id.hasPrefix("sp_"))
        #expect(id.count == 19)
        #expect(id.dropFirst(3).allSatisfy { $0.isHexDigit })
        #expect(Identifier.make("sp_") != id)
    }
}

@Suite struct AuditHashTests {
    @Test func theChainIsSHA256OfThePreviousHashThenTheCanonicalEntry() {
        // SHA-256("abc") and SHA-256("hello\n"), split between the two parts at any point.
        #expect(
            AuditLog.hash(prev: "", canonical: Array("abc".utf8))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            AuditLog.hash(prev: "hel", canonical: Array("lo\n".utf8))
                == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
    }
}
