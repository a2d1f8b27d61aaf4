import Foundation
import SpacesProtocol
import Testing

@testable import SpacesEngine

// MARK: Fixtures

private func method(
    _ name: String = "get", description: String? = nil, params: String? = nil, result: String? = nil
) throws -> CapabilityDeclaration.Method {
    CapabilityDeclaration.Method(
        name: name, description: description, params: try params.map { try JSONValue.parse($0) },
        result: try result.map { try JSONValue.parse($0) }, effect: .read)
}

private func capability(
    _ name: String = "t", description: String? = nil, methods: [CapabilityDeclaration.Method]
) -> CapabilityDeclaration {
    CapabilityDeclaration(name: name, description: description, methods: methods, handler: .client(timeoutMs: 1000))
}

/// The realistic capability of the integration tests: customer search, and a method whose name is no identifier.
private func crm() throws -> CapabilityDeclaration {
    capability(
        "crm", description: "Customer records",
        methods: [
            try method(
                "search", description: "Find customers by name.",
                params: """
                    {"type": "object", "additionalProperties": false, "required": ["q"],
                     "properties": {"q": {"type": "string", "description": "Part of the customer's name."},
                                    "limit": {"type": "integer", "minimum": 1}}}
                    """,
                result: """
                    {"type": "array", "items": {"$ref": "#/$defs/Customer"},
                     "$defs": {"Customer": {
                       "type": "object", "additionalProperties": false, "required": ["id", "name", "tier"],
                       "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                      "tier": {"enum": ["gold", "silver", "bronze"]},
                                      "annual-revenue": {"type": "number"}}}}}
                    """),
            try method(
                "delete-customer", description: "Delete a customer for good.",
                params: #"{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}"#),
        ])
}

/// The declarations inside namespace `T` of capability `t`, without the namespace's indentation.
private func namespaceBody(_ capability: CapabilityDeclaration) -> String {
    let file = CapabilityTypeScript.declarationFile(for: [capability])
    let lines = file.split(separator: "\n", omittingEmptySubsequences: false)
    guard let start = lines.firstIndex(of: "  export namespace T {"), let end = lines[start...].firstIndex(of: "  }")
    else { return "" }
    return lines[(start + 1)..<end].map { $0.dropFirst(4) }.joined(separator: "\n")
}

/// The declarations of namespace `T` for one method `get` taking `params`.
private func types(params: String) throws -> String {
    namespaceBody(capability(methods: [try method(params: params)]))
}

/// The `export const t: {…};` declaration of capability `t`, with its doc comment when it has one.
private func constDeclaration(_ capability: CapabilityDeclaration) -> String {
    let file = CapabilityTypeScript.declarationFile(for: [capability])
    let lines = file.split(separator: "\n", omittingEmptySubsequences: false)
    guard var start = lines.firstIndex(of: "  export const t: {"),
        let end = lines[start...].firstIndex(of: "  };")
    else { return "" }
    while start > 0, lines[start - 1].hasPrefix("  /**") || lines[start - 1].hasPrefix("   *") { start -= 1 }
    return lines[start...end].map { $0.dropFirst(2) }.joined(separator: "\n")
}

/// Every schema of the unit tests, for the test that compiles them all.
private enum Schemas {
    static let primitives = """
        {"type": "object", "required": ["a", "b", "c", "d", "e", "f", "g"],
         "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "number"},
                        "d": {"type": "boolean"}, "e": {"type": "null"}, "f": {"type": ["string", "null"]},
                        "g": {"type": ["integer", "string", "boolean"]}}}
        """
    static let propertyNames = """
        {"type": "object", "required": ["id", "first-name", "extra"],
         "properties": {"id": {"type": "integer"}, "first-name": {"type": "string"}, "2fa": {"type": "string"},
                        "_ok": {"type": "string"}, "$x": {"type": "string"}, "with space": {"type": "string"},
                        "ünïcode": {"type": "string"}}}
        """
    static let indexSignatures = """
        {"type": "object", "required": ["closed", "open", "map", "mixed", "named", "patterned"],
         "properties": {
           "closed": {"type": "object", "additionalProperties": false},
           "open": {"type": "object"},
           "map": {"type": "object", "additionalProperties": {"type": "integer"}},
           "mixed": {"type": "object", "properties": {"a": {"type": "string"}},
                     "additionalProperties": {"type": "integer"}},
           "named": {"type": "object", "properties": {"a": {"type": "string"}}},
           "patterned": {"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {"^x-": {}}}}}
        """
    static let arrays = """
        {"type": "object", "required": ["anything", "grid", "mixed", "names", "objects"],
         "properties": {
           "names": {"type": "array", "items": {"type": "string"}},
           "mixed": {"type": "array", "items": {"type": ["string", "number"]}},
           "anything": {"type": "array"},
           "grid": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
           "objects": {"type": "array",
                       "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}}}}
        """
    static let tuples = """
        {"type": "object", "required": ["closed", "legacy", "optional", "pair", "rest"],
         "properties": {
           "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
           "closed": {"type": "array", "prefixItems": [{"type": "string"}], "items": false},
           "rest": {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "boolean"}},
           "optional": {"type": "array", "prefixItems": [{"type": "string"}, {"type": ["number", "null"]}],
                        "minItems": 1},
           "legacy": {"type": "array", "items": [{"type": "string"}], "additionalItems": {"type": "number"}}}}
        """
    static let literals = """
        {"type": "object", "required": ["kind", "mixed", "negatives", "none", "object", "tier"],
         "properties": {
           "tier": {"type": "string", "enum": ["gold", "silver"]},
           "mixed": {"enum": [1, -2.5, true, null, "a\\"b"]},
           "object": {"enum": ["a", {"x": 1}]},
           "none": {"enum": []},
           "kind": {"const": "customer"},
           "negatives": {"type": "array", "items": {"const": -1}}}}
        """
    static let combinations = """
        {"type": "object",
         "required": ["absorbed", "all", "either", "list", "listOfUnion", "nested", "one", "withBase"],
         "properties": {
           "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
           "one": {"oneOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]},
           "all": {"allOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]},
           "nested": {"allOf": [{"anyOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}, {"$ref": "#/$defs/C"}]},
           "list": {"type": "array", "items": {"allOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}},
           "listOfUnion": {"type": "array",
                           "items": {"anyOf": [{"allOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]},
                                               {"$ref": "#/$defs/C"}]}},
           "withBase": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string"}},
                        "anyOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]},
           "absorbed": {"anyOf": [{"type": "string"}, {}]}},
         "$defs": {"A": {"type": "object", "properties": {"a": {"type": "string"}}},
                   "B": {"type": "object", "properties": {"b": {"type": "string"}}},
                   "C": {"type": "object", "properties": {"c": {"type": "string"}}}}}
        """
    static let nullable = """
        {"type": "object", "required": ["openAPI", "union"],
         "properties": {"union": {"type": ["string", "null"]}, "openAPI": {"type": "integer", "nullable": true}}}
        """
    static let definitions = """
        {"type": "object", "required": ["customer"],
         "properties": {"customer": {"$ref": "#/$defs/Customer"}, "legacy": {"$ref": "#/definitions/old-address"},
                        "tag": {"$ref": "#/$defs/tag%20name"}, "escaped": {"$ref": "#/$defs/a~1b"}},
         "$defs": {"Customer": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}},
                   "tag name": {"type": "string"}, "a/b": {"type": "boolean"}},
         "definitions": {"old-address": {"type": "string"}}}
        """
    static let recursive = """
        {"$ref": "#/$defs/Node",
         "$defs": {"Node": {"type": "object", "required": ["name"],
                            "properties": {"name": {"type": "string"},
                                           "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}}
        """
    static let root = """
        {"type": "object", "properties": {"name": {"type": "string"}, "parent": {"$ref": "#"}}}
        """
    static let circularAliases = """
        {"$ref": "#/$defs/A",
         "$defs": {"A": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/B"}]}, "B": {"allOf": [{"$ref": "#/$defs/A"}]},
                   "List": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/$defs/List"}}]}}}
        """
    static let cycle = """
        {"type": "object",
         "properties": {"a": {"type": "object", "properties": {"next": {"$ref": "#/properties/a"}}},
                        "b": {"$ref": "#/properties/a"}}}
        """
    static let unresolvable = """
        {"type": "object", "required": ["anchor", "missing", "nowhere", "remote", "withType"],
         "properties": {"missing": {"$ref": "#/$defs/Missing"}, "remote": {"$ref": "https://example.com/s.json"},
                        "anchor": {"$ref": "#anchor"}, "nowhere": {"$ref": "#/properties/nope"},
                        "withType": {"$ref": "#/$defs/Missing", "type": "string"}}}
        """
    static let booleans = """
        {"type": "object", "required": ["anything", "nothing"], "properties": {"anything": true, "nothing": false}}
        """
    static let all = [
        primitives, propertyNames, indexSignatures, arrays, tuples, literals, combinations, nullable, definitions,
        recursive, root, circularAliases, cycle, unresolvable, booleans, ##"{"$ref": "#"}"##,
    ]
}

// MARK: Conversion

@Suite struct CapabilityTypeScriptTests {
    @Test func primitiveTypesAndTypeArrays() throws {
        #expect(
            try types(params: Schemas.primitives) == """
                export interface GetParams {
                  a: string;
                  b: number;
                  c: number;
                  d: boolean;
                  e: null;
                  f: string | null;
                  g: number | string | boolean;
                }
                """)
    }

    @Test func requiredAndOptionalPropertiesWithNamesThatAreNoIdentifiersQuoted() throws {
        #expect(
            try types(params: Schemas.propertyNames) == """
                export interface GetParams {
                  $x?: string;
                  "2fa"?: string;
                  _ok?: string;
                  extra: unknown;
                  "first-name": string;
                  id: number;
                  "with space"?: string;
                  "ünïcode"?: string;
                }
                """)
    }

    @Test func additionalPropertiesDecideTheIndexSignature() throws {
        #expect(
            try types(params: Schemas.indexSignatures) == """
                export interface GetParams {
                  closed: { [key: string]: never };
                  map: { [key: string]: number };
                  mixed: {
                    a?: string;
                    [key: string]: unknown;
                  };
                  named: {
                    a?: string;
                  };
                  open: { [key: string]: unknown };
                  patterned: {
                    a?: string;
                    [key: string]: unknown;
                  };
                }
                """)
        #expect(
            try types(params: #"{"type": "object"}"#) == """
                export interface GetParams {
                  [key: string]: unknown;
                }
                """)
    }

    @Test func arraysOfItemsWithUnionsParenthesized() throws {
        #expect(
            try types(params: Schemas.arrays) == """
                export interface GetParams {
                  anything: unknown[];
                  grid: number[][];
                  mixed: (string | number)[];
                  names: string[];
                  objects: {
                    id: number;
                  }[];
                }
                """)
    }

    @Test func prefixItemsAreTuples() throws {
        #expect(
            try types(params: Schemas.tuples) == """
                export interface GetParams {
                  closed: [string];
                  legacy: [string, ...number[]];
                  optional: [string, (number | null)?];
                  pair: [string, number];
                  rest: [string, ...boolean[]];
                }
                """)
    }

    @Test func enumAndConstAreLiteralTypes() throws {
        #expect(
            try types(params: Schemas.literals) == """
                export interface GetParams {
                  kind: "customer";
                  mixed: 1 | -2.5 | true | null | "a\\"b";
                  negatives: (-1)[];
                  none: never;
                  object: unknown;
                  tier: "gold" | "silver";
                }
                """)
    }

    @Test func anyOfOneOfAndAllOfNestParenthesized() throws {
        #expect(
            try types(params: Schemas.combinations) == """
                export interface GetParams {
                  absorbed: unknown;
                  all: A & B;
                  either: string | number;
                  list: (A & B)[];
                  listOfUnion: (A & B | C)[];
                  nested: (A | B) & C;
                  one: A | null;
                  withBase: {
                    kind: string;
                  } & (A | B);
                }
                export interface A {
                  a?: string;
                }
                export interface B {
                  b?: string;
                }
                export interface C {
                  c?: string;
                }
                """)
    }

    @Test func nullableTypes() throws {
        #expect(
            try types(params: Schemas.nullable) == """
                export interface GetParams {
                  openAPI: number | null;
                  union: string | null;
                }
                """)
    }

    @Test func refsToDefsAndDefinitionsNameTypesOfTheNamespace() throws {
        #expect(
            try types(params: Schemas.definitions) == """
                export interface GetParams {
                  customer: Customer;
                  escaped?: AB;
                  legacy?: OldAddress;
                  tag?: TagName;
                }
                export interface Customer {
                  id: number;
                }
                export type AB = boolean;
                export type TagName = string;
                export type OldAddress = string;
                """)
    }

    @Test func definitionsOfSeveralMethodsAreSharedWhenTheSameAndSuffixedWhenNot() throws {
        let integerID =
            ##"{"$ref": "#/$defs/Customer", "$defs": {"Customer": {"properties": {"id": {"type": "integer"}}}}}"##
        let stringID =
            ##"{"$ref": "#/$defs/Customer", "$defs": {"Customer": {"properties": {"id": {"type": "string"}}}}}"##
        let clashing = ##"{"$ref": "#/$defs/GetParams", "$defs": {"GetParams": {"type": "string"}}}"##
        let declaration = capability(methods: [
            try method("get", params: integerID, result: integerID),
            try method("list", result: stringID),
            try method("find", params: clashing),
        ])
        #expect(
            namespaceBody(declaration) == """
                export type GetParams = Customer;
                export type GetResult = Customer;
                export interface Customer {
                  id?: number;
                }
                export type ListResult = Customer2;
                export interface Customer2 {
                  id?: string;
                }
                export type FindParams = GetParams2;
                export type GetParams2 = string;
                """)
    }

    @Test func recursiveDefinitionsReferToThemselves() throws {
        #expect(
            namespaceBody(capability(methods: [try method(result: Schemas.recursive)])) == """
                export type GetResult = Node;
                export interface Node {
                  children?: Node[];
                  name: string;
                }
                """)
        #expect(
            try types(params: Schemas.root) == """
                export interface GetParams {
                  name?: string;
                  parent?: GetParams;
                }
                """)
    }

    @Test func aliasesThatWouldBeCircularAreBrokenWithUnknown() throws {
        #expect(
            namespaceBody(capability(methods: [try method(result: Schemas.circularAliases)])) == """
                export type GetResult = A;
                export type A = unknown /* cycle */;
                export type B = A;
                export type List = string | List[];
                """)
        #expect(try types(params: ##"{"$ref": "#"}"##) == "export type GetParams = unknown /* cycle */;")
    }

    @Test func anInlinedPointerMetAgainWhileExpandedIsACycle() throws {
        #expect(
            try types(params: Schemas.cycle) == """
                export interface GetParams {
                  a?: {
                    next?: {
                      next?: unknown /* cycle */;
                    };
                  };
                  b?: {
                    next?: unknown /* cycle */;
                  };
                }
                """)
    }

    @Test func unresolvableRefsAreUnknown() throws {
        #expect(
            try types(params: Schemas.unresolvable) == """
                export interface GetParams {
                  anchor: unknown;
                  missing: unknown;
                  nowhere: unknown;
                  remote: unknown;
                  withType: string;
                }
                """)
    }

    @Test func booleanSchemas() throws {
        #expect(
            try types(params: Schemas.booleans) == """
                export interface GetParams {
                  anything: unknown;
                  nothing: never;
                }
                """)
        let declaration = capability(methods: [try method(params: "true", result: "false")])
        #expect(
            namespaceBody(declaration) == """
                export type GetParams = unknown;
                export type GetResult = never;
                """)
        #expect(constDeclaration(declaration).contains("get(params?: T.GetParams): Promise<T.GetResult>;"))
    }

    @Test func unsupportedSchemasAreUnknown() throws {
        #expect(
            try types(
                params:
                    """
                    {"type": "object",
                     "properties": {"a": {"type": "bigint"}, "b": {"type": []}, "c": 7, "d": {"not": {}}}}
                    """
            )
                == """
                export interface GetParams {
                  a?: unknown;
                  b?: unknown;
                  c?: unknown;
                  d?: unknown;
                }
                """)
    }

    @Test func descriptionsBecomeDocCommentsWithCommentEndsEscaped() throws {
        let declaration = capability(
            description: "Customer */ records",
            methods: [
                try method(
                    description: "Line one.\nLine two with */ end.\r\n\nLine four.\n",
                    params: """
                        {"description": "The query */", "type": "object",
                         "properties": {"q": {"type": "string", "description": "What to find."}}}
                        """)
            ])
        #expect(
            constDeclaration(declaration) == """
                /** Customer *\\/ records */
                export const t: {
                  /**
                   * Line one.
                   * Line two with *\\/ end.
                   *
                   * Line four.
                   */
                  get(params?: T.GetParams): Promise<unknown>;
                };
                """)
        #expect(
            namespaceBody(declaration) == """
                /** The query *\\/ */
                export interface GetParams {
                  /** What to find. */
                  q?: string;
                }
                """)
    }

    @Test func paramsAreOptionalWhenThereIsNoSchemaOrNothingIsRequired() throws {
        let declaration = capability(methods: [
            try method("none"),
            try method("optional", params: #"{"type": "object", "properties": {"a": {"type": "string"}}}"#),
            try method(
                "referenced",
                params:
                    """
                    {"$ref": "#/$defs/Options",
                     "$defs": {"Options": {"type": "object", "additionalProperties": false}}}
                    """
            ),
            try method("required", params: #"{"type": "object", "required": ["a"]}"#, result: #"{"type": "string"}"#),
            try method("scalar", params: #"{"type": "string"}"#),
        ])
        #expect(
            constDeclaration(declaration) == """
                export const t: {
                  none(params?: unknown): Promise<unknown>;
                  optional(params?: T.OptionalParams): Promise<unknown>;
                  referenced(params?: T.ReferencedParams): Promise<unknown>;
                  required(params: T.RequiredParams): Promise<T.RequiredResult>;
                  scalar(params: T.ScalarParams): Promise<unknown>;
                };
                """)
    }

    @Test func namesArePascalCasedAndKeptApart() throws {
        let first = capability(
            "my_api",
            methods: [
                try method("delete-customer", params: #"{"type": "string"}"#),
                try method("delete_customer", params: #"{"type": "string"}"#),
                try method("new", result: ##"{"$ref": "#/$defs/2fa code", "$defs": {"2fa code": {}, "日本": {}}}"##),
            ])
        let second = capability("myApi", methods: [try method("get", params: #"{"type": "string"}"#)])
        #expect(
            CapabilityTypeScript.declarationFile(for: [first, second]).hasSuffix(
                """
                  export const my_api: {
                    "delete-customer"(params: MyApi.DeleteCustomerParams): Promise<unknown>;
                    delete_customer(params: MyApi.DeleteCustomer2Params): Promise<unknown>;
                    "new"(params?: unknown): Promise<MyApi.NewResult>;
                  };
                  export namespace MyApi {
                    export type DeleteCustomerParams = string;
                    export type DeleteCustomer2Params = string;
                    export type NewResult = _2faCode;
                    export type _2faCode = unknown;
                    export type Type = unknown;
                  }
                  export const myApi: {
                    get(params: MyApi2.GetParams): Promise<unknown>;
                  };
                  export namespace MyApi2 {
                    export type GetParams = string;
                  }
                  /** Every capability of the space, by name. */
                  const capabilities: { my_api: typeof my_api; myApi: typeof myApi };
                  export default capabilities;
                }

                """))
    }

    @Test func theCrmCapability() throws {
        #expect(
            CapabilityTypeScript.declarationFile(for: [try crm()]) == """
                // Generated by Agent Spaces from the space's capability declarations. \
                Do not edit: it is rewritten when capabilities change.
                declare module "spaces:capabilities" {
                  export type CapabilityErrorCode = \
                "DENIED" | "APPROVAL_DENIED" | "INVALID_PARAMS" | "HANDLER_ERROR" | "TIMEOUT" | "RESULT_TOO_LARGE";
                  /** Thrown by a capability call that failed: `code` says why, `hint` how to fix it. */
                  export class CapabilityError extends Error {
                    readonly code: CapabilityErrorCode;
                    readonly capability: string;
                    readonly method: string;
                    readonly hint: string;
                  }
                  /** Customer records */
                  export const crm: {
                    /** Find customers by name. */
                    search(params: Crm.SearchParams): Promise<Crm.SearchResult>;
                    /** Delete a customer for good. */
                    "delete-customer"(params: Crm.DeleteCustomerParams): Promise<unknown>;
                  };
                  export namespace Crm {
                    export interface SearchParams {
                      limit?: number;
                      /** Part of the customer's name. */
                      q: string;
                    }
                    export type SearchResult = Customer[];
                    export interface Customer {
                      "annual-revenue"?: number;
                      id: number;
                      name: string;
                      tier: "gold" | "silver" | "bronze";
                    }
                    export interface DeleteCustomerParams {
                      id: number;
                    }
                  }
                  /** Every capability of the space, by name. */
                  const capabilities: { crm: typeof crm };
                  export default capabilities;
                }

                """)
    }

    @Test func noCapabilities() {
        #expect(
            CapabilityTypeScript.declarationFile(for: []).hasSuffix(
                """
                  }
                  /** Every capability of the space, by name. */
                  const capabilities: {};
                  export default capabilities;
                }

                """))
    }
}

// MARK: Compiling with tsc

/// Runs the real TypeScript compiler over the generated declarations and programs that use them.
@Suite struct CapabilityTypeScriptCompilerTests {
    /// `tsc` on PATH, or Debian's at /usr/bin/tsc.
    static func compilerPath() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates = path.split(separator: ":").map { "\($0)/tsc" } + ["/usr/bin/tsc"]
        let found = candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
        return try #require(
            found, "tsc not found on PATH or at /usr/bin/tsc: install TypeScript (`apt-get install node-typescript`)")
    }

    /// Writes `files` (name → text) to a new directory and runs `tsc --strict --noEmit` over them all.
    ///
    /// `--moduleResolution node`, not `bundler`: Debian's tsc (4.8) predates `bundler`, and an ambient
    /// `declare module` resolves the same under either.
    static func compile(_ files: [String: String]) async throws -> (status: Int32, output: String) {
        let compiler = try compilerPath()
        let directory = FileManager.default.temporaryDirectory.appending(path: "capability-ts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (name, text) in files {
            try text.write(to: directory.appending(path: name), atomically: true, encoding: .utf8)
        }
        let outputURL = directory.appending(path: "tsc-output.txt")
        try Data().write(to: outputURL)
        let output = try FileHandle(forWritingTo: outputURL)
        defer { try? output.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: compiler)
        process.currentDirectoryURL = directory
        process.arguments =
            [
                "--strict", "--noEmit", "--target", "es2022", "--module", "esnext", "--moduleResolution", "node",
                "--skipLibCheck", "false", "--pretty", "false",
            ] + files.keys.sorted()
        process.standardOutput = output
        process.standardError = output
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: error)
            }
        }
        return (status, try String(contentsOf: outputURL, encoding: .utf8))
    }

    @Test func aCorrectProgramCompiles() async throws {
        let program = """
            import capabilities, { crm, CapabilityError, type CapabilityErrorCode, type Crm }
              from "spaces:capabilities";

            const customers: Crm.SearchResult = await crm.search({ q: "acme", limit: 5 });
            const names: string[] = customers.map((customer) => customer.name);
            const ids: number[] = customers.map((customer) => customer.id);
            const revenue: number | undefined = customers[0]?.["annual-revenue"];
            const gold = customers.filter((customer) => customer.tier === "gold");
            await crm["delete-customer"]({ id: 7 });
            try {
              await capabilities.crm.search({ q: "x" });
            } catch (error) {
              if (error instanceof CapabilityError) {
                const code: CapabilityErrorCode = error.code;
                const retry: boolean = error.code === "TIMEOUT" && error.hint.length > 0;
              }
            }
            export { names, ids, revenue, gold };
            """
        let declarations = CapabilityTypeScript.declarationFile(for: [try crm()])
        let (status, output) = try await Self.compile(["capabilities.d.ts": declarations, "main.ts": program])
        #expect(status == 0, "tsc rejected a correct program:\n\(output)")
    }

    /// Each wrong program, and the errors tsc may report for it (an excess property is TS2345 before
    /// TypeScript 5, TS2353 since).
    static let wrongPrograms: [(file: String, body: String, errors: [String])] = [
        ("missing-param.ts", #"await crm.search({ limit: 5 });"#, ["TS2345"]),
        ("wrong-param-type.ts", #"await crm.search({ q: 42 });"#, ["TS2322"]),
        ("unknown-param.ts", #"await crm.search({ q: "x", page: 2 });"#, ["TS2345", "TS2353"]),
        ("misspelled-method.ts", #"await crm.serch({ q: "x" });"#, ["TS2551"]),
        ("missing-property.ts", #"const [first] = await crm.search({ q: "x" }); first?.email;"#, ["TS2339"]),
        (
            "optional-property.ts",
            #"const [c] = await crm.search({ q: "x" }); const n: number = c!["annual-revenue"];"#, ["TS2322"]
        ),
        ("wrong-tier.ts", #"const [c] = await crm.search({ q: "x" }); const t: "gold" = c!.tier;"#, ["TS2322"]),
        ("missing-argument.ts", #"await crm["delete-customer"]();"#, ["TS2554"]),
    ]

    @Test func wrongProgramsFailWithTheirErrors() async throws {
        var files = ["capabilities.d.ts": CapabilityTypeScript.declarationFile(for: [try crm()])]
        for program in Self.wrongPrograms {
            files[program.file] = "import { crm } from \"spaces:capabilities\";\n\(program.body)\nexport {};\n"
        }
        let (status, output) = try await Self.compile(files)
        #expect(status != 0)
        let lines = output.split(separator: "\n")
        #expect(!lines.contains { $0.hasPrefix("capabilities.d.ts") }, "errors in the declarations:\n\(output)")
        for program in Self.wrongPrograms {
            let errors = lines.filter { $0.hasPrefix(program.file + "(") }
            #expect(
                errors.contains { line in program.errors.contains { line.contains("error \($0):") } },
                "\(program.file) (\(program.body)) should fail with \(program.errors); tsc said:\n\(output)")
        }
    }

    @Test func everySchemaOfTheUnitTestsCompiles() async throws {
        let methods = try Schemas.all.enumerated().map { index, schema in
            try method("m\(index)", description: "Method */ \(index)", params: schema, result: schema)
        }
        let kitchen = capability("kitchen", description: "Every rule", methods: methods)
        let odd = capability(
            "my_api",
            methods: [
                try method("delete-customer", params: Schemas.recursive), try method("delete_customer"),
                try method("new", result: ##"{"$ref": "#/$defs/2fa code", "$defs": {"2fa code": {}, "日本": {}}}"##),
                try method("constructor", params: #"{"type": "object", "additionalProperties": false}"#),
            ])
        let declarations = CapabilityTypeScript.declarationFile(for: [kitchen, odd, capability("myApi", methods: [])])
        let program = """
            import capabilities, { kitchen, my_api, myApi } from "spaces:capabilities";
            await kitchen.m0({ a: "", b: 1, c: 2, d: true, e: null, f: null, g: false });
            await my_api.new();
            await my_api.constructor({});
            const all: { kitchen: typeof kitchen; my_api: typeof my_api; myApi: typeof myApi } = capabilities;
            export { all };
            """
        let (status, output) = try await Self.compile(["capabilities.d.ts": declarations, "main.ts": program])
        #expect(status == 0, "tsc rejected the declarations:\n\(output)\n\(declarations)")
    }
}
