import SpacesConformance
import SpacesProtocol
import Testing

@Suite struct MatcherTests {
    @Test(arguments: [
        (#"{"a":1}"#, #"{"a":1}"#, true),
        (#"{"a":1}"#, #"{"a":2}"#, false),
        (#"{"a":1}"#, #"{"a":1,"b":2}"#, false),
        (#"{"a":1,"b":2}"#, #"{"a":1}"#, false),
        (#"[1,2]"#, #"[1,2,3]"#, false),
        (#"{"t":"<time>"}"#, #"{"t":"2026-11-26T00:17:12.123Z"}"#, true),
        (#"{"t":"<time>"}"#, #"{"t":"2026-11-26 00:17:12"}"#, false),
        (#"{"n":"<int>"}"#, #"{"n":3}"#, true),
        (#"{"n":"<int>"}"#, #"{"n":3.5}"#, false),
        (#"{"n":"<number>"}"#, #"{"n":"3"}"#, false),
        (#"{"s":"<string>"}"#, #"{"s":""}"#, true),
        (#"{"b":"<bool>"}"#, #"{"b":null}"#, false),
        (#"{"x":"<any>"}"#, #"{"x":{"deep":[1]}}"#, true),
        (#"{"h":"<sha256>"}"#, #"{"h":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"}"#, true),
        (#"{"h":"<sha256>"}"#, #"{"h":"5891"}"#, false),
        (#"{"i":"<id:sp_>"}"#, #"{"i":"sp_0123456789abcdef"}"#, true),
        (#"{"i":"<id:sp_>"}"#, #"{"i":"b_0123456789abcdef"}"#, false),
    ])
    func placeholders(expected: String, actual: String, matches: Bool) throws {
        var matcher = Matcher()
        let difference = matcher.mismatch(expected: try JSONValue.parse(expected), actual: try JSONValue.parse(actual))
        #expect((difference == nil) == matches, "\(difference ?? "matched")")
    }

    @Test func capturesBindOnceAndAreSubstitutedIntoSends() throws {
        var matcher = Matcher()
        #expect(matcher.mismatch(expected: ["id": "$space"], actual: ["id": "sp_1"]) == nil)
        #expect(matcher.mismatch(expected: ["id": "$space"], actual: ["id": "sp_2"]) != nil)
        #expect(matcher.mismatch(expected: ["id": "$space"], actual: ["id": "sp_1"]) == nil)
        #expect(matcher.substitute(#"{"spaceId":"$space"}"#) == #"{"spaceId":"sp_1"}"#)
    }

    @Test func aFailedMatchKeepsNoCaptures() throws {
        var matcher = Matcher()
        #expect(matcher.mismatch(expected: ["a": "$x", "b": 1], actual: ["a": "v", "b": 2]) != nil)
        #expect(matcher.captures["x"] == nil)
    }

    @Test func fixtureSyntaxErrorsNameTheLine() {
        #expect(throws: Fixture.ParseError.self) { try Fixture(name: "bad", text: "# d\n> {}\nnonsense\n") }
        #expect(throws: Fixture.ParseError.self) { try Fixture(name: "bad", text: "# d\n< {not json}\n") }
        let fixture = try? Fixture(name: "ok", text: "# d\n> {}\n<~ {\"a\":1}\n<~ {\"b\":2}\n! exit 0\n")
        #expect(fixture?.steps.count == 3)
    }
}
