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

@Suite struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
        ("hello\n", "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"),
        (String(repeating: "a", count: 1_000), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"),
    ])
    func knownDigests(input: String, digest: String) {
        #expect(SHA256.hex(Array(input.utf8)) == digest)
    }

    @Test func everyLengthAroundABlockBoundaryMatchesFeedingInPieces() {
        for length in 50..<140 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            var pieces = SHA256()
            pieces.update(bytes[..<(length / 3)])
            pieces.update(bytes[(length / 3)...])
            var whole = SHA256()
            whole.update(bytes)
            #expect(pieces.finalize() == whole.finalize())
        }
    }
}
