import SpacesProtocol
import Testing

@Suite("JSON parsing and encoding")
struct JSONCodingTests {
    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONValue.parse(#" {"a": [1, -2.5, true, false, null, "s", {}, []]} "#)
        #expect(value == ["a": [1, -2.5, true, false, nil, "s", [:], []]])
    }

    @Test func stringEscapes() throws {
        let value = try JSONValue.parse(#""q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9""#)
        #expect(value == .string("q\" b\\ s/ \u{08}\u{0C}\n\r\t Aé"))
        // `/` needs no escape; \b and \f come out as \u escapes; newline, CR and tab keep their short forms.
        #expect(value.encoded() == #""q\" b\\ s/ \u0008\u000c\n\r\t Aé""#)
    }

    @Test func surrogatePairs() throws {
        #expect(try JSONValue.parse(#""\ud83d\ude00""#) == "😀")
        #expect(try JSONValue.parse(#""\uD83D\uDE00x""#) == "😀x")
        #expect(JSONValue.string("😀").encoded() == "\"😀\"")
    }

    @Test(arguments: [
        #""\ud83d""#,  // high surrogate at the end
        #""\ud83dx""#,  // high surrogate followed by a character
        #""\ud83d\u0041""#,  // high surrogate followed by a non-surrogate escape
        #""\ude00""#,  // lone low surrogate
    ])
    func rejectsUnpairedSurrogates(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func unicodePassesThroughUnescaped() throws {
        let text = "\"héllo wörld — 日本語 😀 \u{2028}\""
        let value = try JSONValue.parse(text)
        #expect(value == .string("héllo wörld — 日本語 😀 \u{2028}"))
        #expect(value.encoded() == text)
    }

    @Test func controlCharactersAreEscapedOnOutput() {
        let value = JSONValue.string("a\u{00}b\u{1F}c\u{7F}d\ne")
        #expect(value.encoded() == #""a\u0000b\u001fc\u007fd\ne""#)
        #expect(!value.encoded().contains("\n"))
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0xFF, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0xC3, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0x5C, 0x6E, 0xED, 0xA0, 0x80, 0x22]) }
    }

    @Test(arguments: [
        ("0", 0.0), ("-0", 0.0), ("42", 42.0), ("-17", -17.0), ("1.5", 1.5), ("1e3", 1000.0), ("1E+3", 1000.0),
        ("-1.25e-3", -0.00125), ("9007199254740992", 9_007_199_254_740_992.0), ("0.1", 0.1),
    ])
    func parsesNumbers(_ text: String, _ expected: Double) throws {
        #expect(try JSONValue.parse(text) == .number(expected))
    }

    @Test(arguments: ["01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "1e400", "-1e400", "NaN", "Infinity", "--1"])
    func rejectsInvalidNumbers(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func encodesNumbers() throws {
        #expect(JSONValue(42).encoded() == "42")
        #expect(JSONValue.number(-0.0).encoded() == "0")
        #expect(JSONValue.number(2.0).encoded() == "2")
        #expect(JSONValue.number(1.5).encoded() == "1.5")
        #expect(JSONValue.number(-0.00125).encoded() == "-0.00125")
        #expect(JSONValue.number(1e20).encoded() == "1e+20")
        #expect(JSONValue.number(.infinity).encoded() == "null")
        #expect(JSONValue.number(.nan).encoded() == "null")
        // Whatever the encoder writes for a finite number, the parser reads back as the same number.
        for number in [0.1, 1e-7, 123456.789, 1e300, -2.5e-300, 9.0e15, 12345678901234.0] {
            #expect(try JSONValue.parse(JSONValue.number(number).encoded()) == .number(number))
        }
    }

    @Test func depthLimit() throws {
        let limit = 512
        let fits = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
        let tooDeep = String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)
        #expect(throws: Never.self) { try JSONValue.parse(fits) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(tooDeep) }
        let objects = String(repeating: #"{"a":"#, count: 4) + "1" + String(repeating: "}", count: 4)
        #expect(throws: Never.self) { try JSONValue.parse(objects, maxDepth: 4) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(objects, maxDepth: 3) }
        // A deep input fails quickly with an error, not a crash.
        let hostile = String(repeating: "[", count: 1_000_000)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(hostile) }
    }

    @Test(arguments: [
        "", "   ", "{", "[1,]", "[,1]", #"{"a" 1}"#, #"{"a":1,}"#, #"{a:1}"#, "{1:2}", "tru", "nul", "falsey", "[1] 2",
        "'a'", #""abc"#, "\"a\u{01}b\"", "\"a\nb\"", #""\x41""#, #""\u12""#, #""\u12G4""#, "\u{FEFF}{}", "[1 2]",
        "}", "undefined",
    ])
    func rejectsInvalidInput(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func errorsSayWhere() {
        let error = #expect(throws: JSONParseError.self) { try JSONValue.parse("[1,x]") }
        #expect(error?.offset == 3)
        #expect(error?.description.hasPrefix("invalid JSON at byte 3:") == true)
    }

    @Test func whitespaceAroundTheValue() throws {
        #expect(try JSONValue.parse(" \t\r\n{ \"a\" :\n[ 1 , 2 ] }\r\n") == ["a": [1, 2]])
    }

    @Test func laterDuplicateKeysWin() throws {
        #expect(try JSONValue.parse(#"{"a": 1, "a": 2}"#) == ["a": 2])
    }

    @Test func sortedKeysAreCanonical() throws {
        let value: JSONValue = ["b": 1, "a": [true, nil, ["d": "x", "c": 1.5]], "": "empty"]
        #expect(value.encoded(sortedKeys: true) == #"{"":"empty","a":[true,null,{"c":1.5,"d":"x"}],"b":1}"#)
        #expect(value.description == value.encoded(sortedKeys: true))
        #expect(try JSONValue.parse(value.encoded()) == value)
    }

    @Test func roundTrips() throws {
        let samples: [JSONValue] = [
            nil, true, "", "line\nbreak\t\"quoted\" \\ 😀 \u{0}", 0, -1, 3.25, [], [:],
            [
                "jsonrpc": "2.0", "id": 7, "method": "operations/submit",
                "params": ["operations": [["kind": "file.read"]]],
            ],
        ]
        for sample in samples {
            let text = sample.encoded()
            #expect(!text.contains("\n"))
            #expect(try JSONValue.parse(text) == sample)
            #expect(try JSONValue.parse(sample.encodedBytes()) == sample)
        }
    }

    @Test func accessors() throws {
        let value = try JSONValue.parse(#"{"n": 3, "f": 1.5, "s": "x", "b": true, "a": [1], "o": {}, "z": null}"#)
        #expect(value["n"]?.intValue == 3)
        #expect(value["f"]?.intValue == nil)
        #expect(value["f"]?.doubleValue == 1.5)
        #expect(value["s"]?.stringValue == "x")
        #expect(value["b"]?.boolValue == true)
        #expect(value["a"]?.arrayValue == [1])
        #expect(value["o"]?.objectValue == [:])
        #expect(value["z"]?.isNull == true)
        #expect(value["missing"] == nil)
        #expect(value["s"]?["x"] == nil)
        #expect(value.typeName == "object")
    }
}
