import SpacesProtocol
import Testing

/// One validation: a schema, an instance (both as JSON text) and the exact violations expected, each as
/// `path: message` (or just the message for the instance itself).
struct SchemaCase: Sendable, CustomTestStringConvertible {
    var name: String
    var schema: String
    var instance: String
    var expected: [String]

    init(_ name: String, _ schema: String, _ instance: String, _ expected: [String] = []) {
        self.name = name
        self.schema = schema
        self.instance = instance
        self.expected = expected
    }

    var testDescription: String { name }
}

private let discriminated = """
    {"$defs": {
       "A": {"type": "object", "required": ["kind", "x"], "additionalProperties": false,
             "properties": {"kind": {"const": "a"}, "x": {"type": "string"}}},
       "B": {"type": "object", "required": ["kind", "x"], "additionalProperties": false,
             "properties": {"kind": {"const": "b"}, "x": {"type": "integer"}}}},
     "oneOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}
    """

/// A tagged union whose tag is optional: a value without `kind` may match the first branch.
private let optionalTag = """
    {"oneOf": [{"properties": {"kind": {"const": "a"}}},
               {"properties": {"kind": {"const": "b"}}, "required": ["kind", "x"]}]}
    """

private let exclusive = """
    {"oneOf": [{"title": "argv", "required": ["argv"]}, {"title": "command", "required": ["command"]}]}
    """

private let tree = """
    {"$defs": {"T": {"type": "object", "additionalProperties": false,
                     "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/T"}}}}},
     "$ref": "#/$defs/T"}
    """

let schemaCases: [SchemaCase] = [
    // type
    SchemaCase("string accepted", #"{"type": "string"}"#, #""a""#),
    SchemaCase("integer rejects a string", #"{"type": "integer"}"#, #""5""#, ["expected integer, got string"]),
    SchemaCase("integer rejects a fraction", #"{"type": "integer"}"#, "1.5", ["expected integer, got number 1.5"]),
    SchemaCase("integer accepts 2.0", #"{"type": "integer"}"#, "2.0"),
    SchemaCase("number accepts an integer", #"{"type": "number"}"#, "3"),
    SchemaCase("type list", #"{"type": ["string", "null"]}"#, "3", ["expected string or null, got number"]),
    SchemaCase("type list accepts null", #"{"type": ["string", "null"]}"#, "null"),
    SchemaCase("boolean is not an integer", #"{"type": "integer"}"#, "true", ["expected integer, got boolean"]),
    SchemaCase("array is not an object", #"{"type": "object"}"#, "[]", ["expected object, got array"]),
    SchemaCase("schema false", "false", "1", ["no value is allowed here"]),
    SchemaCase("schema true", "true", #"{"anything": [1]}"#),
    SchemaCase("empty schema", "{}", "null"),
    SchemaCase(
        "a type mismatch is reported once", #"{"type": "string", "enum": ["a"], "minLength": 3}"#, "1",
        ["expected string, got number"]),

    // objects
    SchemaCase(
        "missing required property", #"{"type": "object", "required": ["path", "content"]}"#, #"{"content": ""}"#,
        ["path: missing required property 'path'"]),
    SchemaCase(
        "unknown property", #"{"properties": {"b": {}, "a": {}}, "additionalProperties": false}"#,
        #"{"a": 1, "foo": 2}"#, ["foo: unknown property 'foo' (allowed: a, b)"]),
    SchemaCase(
        "no property allowed", #"{"additionalProperties": false}"#, #"{"x": 1}"#,
        ["x: unknown property 'x' (no properties are allowed here)"]),
    SchemaCase(
        "additionalProperties schema", #"{"additionalProperties": {"type": "string"}}"#, #"{"x": 1, "y": "s"}"#,
        ["x: expected string, got number"]),
    SchemaCase(
        "patternProperties spare a key from additionalProperties",
        #"{"patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": false}"#,
        #"{"x-a": 1, "y": 2}"#, ["y: unknown property 'y' (allowed: names matching ^x-)"]),
    SchemaCase(
        "patternProperties check their values", #"{"patternProperties": {"^x-": {"type": "integer"}}}"#,
        #"{"x-a": "s"}"#, [#"["x-a"]: expected integer, got string"#]),
    SchemaCase(
        "propertyNames", #"{"propertyNames": {"pattern": "^[a-z]+$"}}"#, #"{"ok": 1, "Bad": 2}"#,
        [#"Bad: property name 'Bad': expected a string matching ^[a-z]+$, got "Bad""#]),
    SchemaCase(
        "nested path",
        """
        {"properties": {"params": {"properties": {"operations": {"items": {"properties": {"path": {"type": "string"}}}}}}}}
        """,
        #"{"params": {"operations": [{"path": "a"}, {"path": 1}]}}"#,
        ["params.operations[1].path: expected string, got number"]),
    SchemaCase(
        "keys that are not identifiers are quoted", #"{"additionalProperties": {"type": "string"}}"#,
        #"{"a b": 1, "1x": 2, "ok_$1": 3}"#,
        [
            #"["1x"]: expected string, got number"#, #"["a b"]: expected string, got number"#,
            "ok_$1: expected string, got number",
        ]),
    SchemaCase("minProperties", #"{"minProperties": 1}"#, "{}", ["expected at least 1 property, got 0"]),
    SchemaCase("maxProperties", #"{"maxProperties": 1}"#, #"{"a": 1, "b": 2}"#, ["expected at most 1 property, got 2"]),
    SchemaCase(
        "dependentRequired", #"{"dependentRequired": {"offset": ["length"]}}"#, #"{"offset": 1}"#,
        ["length: missing property 'length', required when 'offset' is present"]),
    SchemaCase(
        "violations come in a stable order",
        #"{"required": ["z"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": false}"#,
        #"{"c": 1, "b": 1, "a": 1}"#,
        [
            "z: missing required property 'z'", "a: expected string, got number", "b: expected string, got number",
            "c: unknown property 'c' (allowed: a, b)",
        ]),

    // arrays
    SchemaCase("items", #"{"items": {"type": "integer"}}"#, #"[1, "x"]"#, ["[1]: expected integer, got string"]),
    SchemaCase(
        "prefixItems with items false", #"{"prefixItems": [{"type": "string"}], "items": false}"#, #"["a", 1]"#,
        ["[1]: expected at most 1 item, got 2"]),
    SchemaCase(
        "prefixItems check their positions", #"{"prefixItems": [{"type": "string"}, {"type": "integer"}]}"#,
        #"[1, 2, "more is fine"]"#, ["[0]: expected string, got number"]),
    SchemaCase(
        "items after prefixItems", #"{"prefixItems": [{"minLength": 1}], "items": {"type": "string"}}"#,
        #"["", "b", 3]"#, ["[0]: expected at least 1 character, got 0", "[2]: expected string, got number"]),
    SchemaCase("minItems", #"{"minItems": 1}"#, "[]", ["expected at least 1 item, got 0"]),
    SchemaCase("maxItems", #"{"maxItems": 2}"#, "[1, 2, 3]", ["expected at most 2 items, got 3"]),
    SchemaCase(
        "uniqueItems uses JSON equality", #"{"uniqueItems": true}"#,
        #"[1, {"a": 1, "b": 2}, 1.0, {"b": 2, "a": 1}, "1"]"#,
        ["[2]: duplicate of item 0; expected unique items", "[3]: duplicate of item 1; expected unique items"]),
    SchemaCase(
        "contains", #"{"contains": {"type": "string"}, "minContains": 2}"#, #"[1, "a"]"#,
        ["expected at least 2 items matching 'contains', got 1"]),

    // enum, const
    SchemaCase(
        "enum", #"{"enum": ["utf8", "base64"]}"#, #""latin1""#, [#"expected one of "utf8", "base64", got "latin1""#]),
    SchemaCase("enum of mixed values", #"{"enum": [1, null, [true]]}"#, "[true]"),
    SchemaCase("const", #"{"const": "2.0"}"#, #""1.0""#, [#"expected "2.0", got "1.0""#]),
    SchemaCase("const object ignores key order", #"{"const": {"a": 1, "b": [true]}}"#, #"{"b": [true], "a": 1.0}"#),
    SchemaCase(
        "long values are shortened in messages", #"{"const": 1}"#, "\"\(String(repeating: "x", count: 100))\"",
        ["expected 1, got \"\(String(repeating: "x", count: 56))…"]),

    // numbers
    SchemaCase("minimum", #"{"minimum": 1}"#, "0", ["expected a number >= 1, got 0"]),
    SchemaCase("maximum", #"{"maximum": 4095}"#, "4096", ["expected a number <= 4095, got 4096"]),
    SchemaCase("minimum is inclusive", #"{"minimum": 1, "maximum": 1}"#, "1"),
    SchemaCase("exclusiveMinimum", #"{"exclusiveMinimum": 0}"#, "0", ["expected a number > 0, got 0"]),
    SchemaCase("exclusiveMaximum", #"{"exclusiveMaximum": 1.5}"#, "1.5", ["expected a number < 1.5, got 1.5"]),
    SchemaCase("multipleOf with a fraction", #"{"multipleOf": 0.1}"#, "0.3"),
    SchemaCase("multipleOf", #"{"multipleOf": 5}"#, "12", ["expected a multiple of 5, got 12"]),

    // strings
    SchemaCase(
        "minLength counts scalars", #"{"minLength": 2}"#, #""\u00e9""#, ["expected at least 2 characters, got 1"]),
    SchemaCase("a combining sequence is two scalars", #"{"minLength": 2, "maxLength": 2}"#, #""e\u0301""#),
    SchemaCase("an emoji is one scalar", #"{"maxLength": 1}"#, #""😀""#),
    SchemaCase("maxLength", #"{"maxLength": 3}"#, #""abcd""#, ["expected at most 3 characters, got 4"]),
    SchemaCase("pattern searches", #"{"pattern": "b"}"#, #""abc""#),
    SchemaCase(
        "$ does not match before a final newline", #"{"pattern": "^[a-z]+$"}"#, #""abc\n""#,
        [#"expected a string matching ^[a-z]+$, got "abc\n""#]),
    SchemaCase(
        "\\d is ASCII only", #"{"pattern": "^\\d+$"}"#, #""\u0661\u0662""#,
        [#"expected a string matching ^\d+$, got "١٢""#]),
    SchemaCase("pattern with a repetition", #"{"pattern": "^sp_[0-9a-f]{16}$"}"#, #""sp_0123456789abcdef""#),
    SchemaCase("pattern with Unicode properties", #"{"pattern": "^\\p{L}+$"}"#, #""héllo""#),
    SchemaCase("format is an annotation only", #"{"format": "date-time"}"#, #""not a time""#),

    // applicators
    SchemaCase("allOf", #"{"allOf": [{"minimum": 1}, {"maximum": 2}]}"#, "3", ["expected a number <= 2, got 3"]),
    SchemaCase(
        "anyOf of types", #"{"anyOf": [{"type": "string"}, {"type": "integer"}]}"#, "true",
        ["expected string or integer, got boolean"]),
    SchemaCase(
        "anyOf picks the branch of the value's type",
        #"{"anyOf": [{"type": "string", "minLength": 2}, {"type": "integer"}]}"#,
        #""a""#, ["expected at least 2 characters, got 1"]),
    SchemaCase("anyOf passes on any branch", #"{"anyOf": [{"minimum": 5}, {"maximum": 0}]}"#, "-1"),
    SchemaCase(
        "oneOf that matches twice", #"{"oneOf": [{"type": "integer"}, {"minimum": 0}]}"#, "1",
        ["matches alternative 1 and alternative 2; expected exactly one of the 2 alternatives"]),
    SchemaCase(
        "oneOf reports the discriminated branch", discriminated, #"{"kind": "b", "x": "s"}"#,
        ["x: expected integer, got string"]),
    SchemaCase(
        "oneOf discriminated branch with an unknown property", discriminated, #"{"kind": "a", "x": "s", "y": 1}"#,
        ["y: unknown property 'y' (allowed: kind, x)"]),
    SchemaCase(
        "oneOf names the allowed discriminator values", discriminated, #"{"kind": "c", "x": 1}"#,
        [#"kind: unknown kind "c" (expected one of "a", "b")"#]),
    SchemaCase(
        "oneOf with the discriminator missing", discriminated, #"{"x": 1}"#,
        [#"kind: missing required property 'kind' (one of "a", "b")"#]),
    SchemaCase("oneOf discriminated on a non-object", discriminated, "[]", ["expected object, got array"]),
    SchemaCase("oneOf discriminated, valid", discriminated, #"{"kind": "a", "x": "s"}"#),
    SchemaCase("oneOf with an optional tag, tag absent", optionalTag, "{}"),
    SchemaCase("oneOf with an optional tag, tag a", optionalTag, #"{"kind": "a", "x": 1}"#),
    SchemaCase(
        "oneOf with an optional tag, tag b", optionalTag, #"{"kind": "b"}"#, ["x: missing required property 'x'"]),
    SchemaCase(
        "oneOf without discriminators lists the alternatives", exclusive, "{}",
        [
            "matches none of the 2 alternatives: (argv) missing required property 'argv'; "
                + "(command) missing required property 'command'"
        ]),
    SchemaCase(
        "oneOf names the alternatives that both match", exclusive, #"{"argv": [], "command": ""}"#,
        ["matches argv and command; expected exactly one of the 2 alternatives"]),
    SchemaCase("not", #"{"not": {"type": "null"}}"#, "null", ["must not match the schema under 'not'"]),
    SchemaCase(
        "not with a title", #"{"not": {"title": "both argv and command", "required": ["argv", "command"]}}"#,
        #"{"argv": [], "command": ""}"#, ["must not be: both argv and command"]),
    SchemaCase(
        "if then",
        #"{"if": {"properties": {"t": {"const": "a"}}}, "then": {"required": ["x"]}, "else": {"required": ["y"]}}"#,
        #"{"t": "a"}"#, ["x: missing required property 'x'"]),
    SchemaCase(
        "if else",
        #"{"if": {"properties": {"t": {"const": "a"}}}, "then": {"required": ["x"]}, "else": {"required": ["y"]}}"#,
        #"{"t": "b"}"#, ["y: missing required property 'y'"]),

    // $ref
    SchemaCase(
        "$ref into $defs", ##"{"$defs": {"N": {"type": "integer"}}, "$ref": "#/$defs/N"}"##, #""x""#,
        ["expected integer, got string"]),
    SchemaCase(
        "$ref unescapes ~1 and ~0",
        ##"{"$defs": {"a/b": {"type": "integer"}, "c~d": {"type": "string"}}, "properties": {"x": {"$ref": "#/$defs/a~1b"}, "y": {"$ref": "#/$defs/c~0d"}}}"##,
        #"{"x": "s", "y": 1}"#, ["x: expected integer, got string", "y: expected string, got number"]),
    SchemaCase(
        "$ref is percent-decoded", ##"{"$defs": {"a b": {"type": "null"}}, "$ref": "#/$defs/a%20b"}"##, "0",
        ["expected null, got number"]),
    SchemaCase(
        "$ref into an array",
        ##"{"$defs": {"list": [{"type": "string"}, {"type": "null"}]}, "$ref": "#/$defs/list/1"}"##,
        "0", ["expected null, got number"]),
    SchemaCase(
        "$ref siblings apply too", ##"{"$defs": {"N": {"type": "integer"}}, "$ref": "#/$defs/N", "minimum": 3}"##, "2",
        ["expected a number >= 3, got 2"]),
    SchemaCase(
        "$ref to an $anchor", ##"{"$defs": {"N": {"$anchor": "num", "type": "number"}}, "$ref": "#num"}"##, #""s""#,
        ["expected number, got string"]),
    SchemaCase(
        "$ref with the document's $id",
        ##"{"$id": "urn:x", "$defs": {"N": {"type": "null"}}, "$ref": "urn:x#/$defs/N"}"##,
        "1", ["expected null, got number"]),
    SchemaCase(
        "unresolvable $ref fails closed", ##"{"$ref": "#/$defs/Missing"}"##, "1",
        ["schema error: cannot resolve $ref #/$defs/Missing"]),
    SchemaCase(
        "remote $ref fails closed", #"{"$ref": "https://example.com/s.json"}"#, "1",
        ["schema error: cannot resolve $ref https://example.com/s.json"]),
    SchemaCase(
        "$ref cycle", ##"{"$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"}"##,
        "1",
        ["schema error: $ref cycle through #/$defs/A that never reaches a value"]),
    SchemaCase("recursive schema, valid", tree, #"{"children": [{"children": []}, {}]}"#),
    SchemaCase(
        "recursive schema names the deep path", tree, #"{"children": [{"children": [{"x": 1}]}]}"#,
        ["children[0].children[0].x: unknown property 'x' (allowed: children)"]),

    // malformed schemas fail closed; unknown keywords are ignored
    SchemaCase("unknown keywords are ignored", #"{"x-foo": 1, "description": "d", "examples": [2]}"#, "1"),
    SchemaCase(
        "required must be an array", #"{"required": "path"}"#, "{}",
        ["schema error: 'required' must be an array of strings"]),
    SchemaCase(
        "invalid pattern", #"{"pattern": "a("}"#, #""a""#,
        ["schema error: 'pattern' a( is not a valid regular expression"]),
    SchemaCase("unknown type name", #"{"type": "text"}"#, #""a""#, ["schema error: unknown type 'text'"]),
    SchemaCase(
        "a schema must be an object", #"{"properties": {"a": 3}}"#, #"{"a": 1}"#,
        ["a: schema error: a schema must be an object or a boolean, got number"]),
]

@Suite("JSON Schema validator")
struct JSONSchemaTests {
    @Test(arguments: schemaCases)
    func validates(_ testCase: SchemaCase) throws {
        let validator = JSONSchemaValidator(document: try JSONValue.parse(testCase.schema))
        let violations = validator.validate(try JSONValue.parse(testCase.instance))
        #expect(violations.map(\.description) == testCase.expected)
        #expect(validator.isValid(try JSONValue.parse(testCase.instance)) == testCase.expected.isEmpty)
    }

    @Test func tableIsLargeEnough() {
        #expect(schemaCases.count >= 40)
    }

    @Test func schemaAtPointer() throws {
        let validator = JSONSchemaValidator(
            document: try JSONValue.parse(#"{"$defs": {"Space": {"type": "object", "required": ["spaceId"]}}}"#))
        #expect(
            validator.validate([:], schemaAt: "#/$defs/Space").map(\.description)
                == ["spaceId: missing required property 'spaceId'"])
        #expect(validator.validate([:], schemaAt: "/$defs/Space").count == 1)
        #expect(validator.validate([:], schemaAt: "#").isEmpty)
        #expect(
            validator.validate(1, schemaAt: "#/$defs/Nope").map(\.description)
                == ["schema error: cannot resolve #/$defs/Nope"])
        #expect(
            validator.validate([:], schemaAt: "#/$defs/Space", instancePath: "params").map(\.description)
                == ["params.spaceId: missing required property 'spaceId'"])
    }

    @Test func resolvesPointers() throws {
        let validator = JSONSchemaValidator(
            document: try JSONValue.parse(#"{"$defs": {"a/b": {"x": 1}, "list": [true, false]}}"#))
        #expect(validator.resolve("#/$defs/a~1b") == ["x": 1])
        #expect(validator.resolve("#/$defs/list/1") == false)
        #expect(validator.resolve("#/$defs/list/01") == nil)
        #expect(validator.resolve("#/$defs/list/2") == nil)
        #expect(validator.resolve("#/$defs/a%2") == nil)
        #expect(validator.resolve("#") == validator.document)
        #expect(validator.resolve("other.json#/$defs") == nil)
    }

    /// A self-referencing schema on a value nested far deeper than any protocol message ends in one
    /// violation, not a stack overflow.
    @Test func depthGuard() throws {
        let validator = JSONSchemaValidator(document: try JSONValue.parse(##"{"items": {"$ref": "#"}}"##))
        var deep: JSONValue = []
        for _ in 0..<2000 { deep = [deep] }
        let violations = validator.validate(deep)
        #expect(violations.count == 1)
        #expect(violations.first?.message.contains("nested deeper than") == true)

        var shallow: JSONValue = []
        for _ in 0..<100 { shallow = [shallow] }
        #expect(validator.validate(shallow).isEmpty)
    }

    /// One validator, with precompiled patterns, used from many tasks at once.
    @Test func concurrentUse() async throws {
        let validator = JSONSchemaValidator(
            document: try JSONValue.parse(
                #"{"properties": {"id": {"pattern": "^sp_[0-9a-f]{16}$"}}, "patternProperties": {"^x-": {"type": "integer"}}}"#
            ))
        let failures = await withTaskGroup(of: Int.self) { group in
            for index in 0..<64 {
                group.addTask {
                    let good: JSONValue = ["id": "sp_0123456789abcdef", "x-n": JSONValue(index)]
                    let bad: JSONValue = ["id": "sp_XYZ", "x-n": "s"]
                    var failures = 0
                    for _ in 0..<50 {
                        if !validator.validate(good).isEmpty { failures += 1 }
                        if validator.validate(bad).count != 2 { failures += 1 }
                    }
                    return failures
                }
            }
            return await group.reduce(0, +)
        }
        #expect(failures == 0)
    }

    @Test func violationDescription() {
        #expect(SchemaViolation(instancePath: "", message: "m").description == "m")
        #expect(SchemaViolation(instancePath: "params.a", message: "m").description == "params.a: m")
    }
}
