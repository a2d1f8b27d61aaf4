/// One way in which a JSON value fails a schema: where, and what was expected.
///
/// `instancePath` names the offending value the way `-32602` errors name a field: `params.operations[0].path`,
/// with `.key` for keys that are identifiers, `["key"]` (a JSON string) for any other key, `[n]` for array
/// elements, and `""` for the value itself. A missing or unknown property is reported at the path the
/// property has (or would have), so the path always names the field to fix.
public struct SchemaViolation: Sendable, Equatable, CustomStringConvertible {
    public var instancePath: String
    public var message: String

    public init(instancePath: String, message: String) {
        self.instancePath = instancePath
        self.message = message
    }

    public var description: String { instancePath.isEmpty ? message : "\(instancePath): \(message)" }
}

/// Validates JSON values against a JSON Schema (draft 2020-12) document.
///
/// Supported: `type` (including `integer` and arrays of types), `enum`, `const`, the numeric keywords
/// (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`), the string keywords
/// (`minLength` and `maxLength` in Unicode scalars, `pattern`), the array keywords (`items`, `prefixItems`,
/// `minItems`, `maxItems`, `uniqueItems`, `contains`, `minContains`, `maxContains`), the object keywords
/// (`properties`, `required`, `additionalProperties`, `patternProperties`, `propertyNames`, `minProperties`,
/// `maxProperties`, `dependentRequired`), `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`, and `$ref` to
/// a place in the same document (`#/$defs/Name` JSON pointers, with `~0`/`~1` and percent unescaping, or a
/// `$anchor`). `format` is an annotation only; unknown keywords are ignored.
///
/// A schema that is itself malformed where it is used (a `required` that is not an array of strings, a
/// `pattern` that does not compile, a `$ref` that resolves to nothing) fails closed: the instance gets a
/// violation whose message starts with `schema error:` rather than passing unchecked.
///
/// `pattern` and `patternProperties` use Swift `Regex` with Unicode-scalar semantics and ASCII-only `\d` and
/// `\w` (as in ECMA-262); they search, so anchor them with `^…$` to match a whole string. Matching `$ref`
/// cycles that consume no input, and evaluations nested deeper than ``maximumDepth``, end in a violation
/// instead of unbounded recursion.
public struct JSONSchemaValidator: Sendable {
    /// The schema document every pointer and `$ref` is resolved in.
    public let document: JSONValue

    /// How many schema evaluations may nest (each `$ref`, applicator and child value counts one).
    public static let maximumDepth = 384

    private let prepared: PreparedDocument
    /// What each `$ref` of the document resolves to, looked up once rather than at every use.
    private var targets: [String: JSONValue] = [:]
    /// The `const` discriminators (see ``constProperties(of:)``) of the schema each `$ref` of the document names.
    private var discriminators: [String: [String: JSONValue]] = [:]

    public init(document: JSONValue) {
        self.document = document
        self.prepared = PreparedDocument(document: document)
        for reference in prepared.references {
            targets[reference] = resolve(reference)
        }
        for reference in prepared.references {
            discriminators[reference] = constProperties(of: .object(["$ref": .string(reference)]))
        }
    }

    /// The violations of `instance` against the schema at `pointer` (`#`, `#/$defs/Space`, or a `$anchor` as
    /// `#name`); empty when the instance is valid.
    public func validate(_ instance: JSONValue, schemaAt pointer: String = "#") -> [SchemaViolation] {
        validate(instance, schemaAt: pointer, instancePath: "")
    }

    /// As ``validate(_:schemaAt:)``, with every reported path below `instancePath` (`params`, say).
    public func validate(_ instance: JSONValue, schemaAt pointer: String, instancePath: String) -> [SchemaViolation] {
        let reference = pointer.hasPrefix("#") ? pointer : "#" + pointer
        guard let schema = resolve(reference) else {
            return [SchemaViolation(instancePath: instancePath, message: "schema error: cannot resolve \(pointer)")]
        }
        return Evaluation(validator: self).evaluate(
            schema, instance, at: instancePath, references: [reference], depth: 0)
    }

    /// Whether `instance` satisfies the schema at `pointer`.
    public func isValid(_ instance: JSONValue, schemaAt pointer: String = "#") -> Bool {
        validate(instance, schemaAt: pointer).isEmpty
    }

    /// The schema a `$ref` value names in this document, or nil when it names nothing here.
    ///
    /// Accepts `#`, `#/json/pointer` (each token `~1` → `/`, `~0` → `~`, after percent-decoding), `#anchor`,
    /// and either of those prefixed by the document's `$id` (or the last component of its path).
    public func resolve(_ reference: String) -> JSONValue? {
        if let target = targets[reference] { return target }
        guard let hash = reference.firstIndex(of: "#") else {
            // Not a ternary: `nil` there would become `JSONValue.null`, a schema, rather than "no schema".
            guard refersToThisDocument(reference) else { return nil }
            return document
        }
        let base = String(reference[..<hash])
        if !base.isEmpty, !refersToThisDocument(base) { return nil }
        guard let fragment = percentDecoded(String(reference[reference.index(after: hash)...])) else { return nil }
        if fragment.isEmpty { return document }
        if fragment.hasPrefix("/") { return document.value(atPointer: jsonPointerTokens(fragment)) }
        return prepared.anchors[fragment].flatMap(document.value(atPointer:))
    }

    private func refersToThisDocument(_ base: String) -> Bool {
        guard let identifier = document["$id"]?.stringValue else { return false }
        if base == identifier { return true }
        let lastComponent = identifier.split(separator: "/").last.map(String.init) ?? identifier
        return base == lastComponent
    }

    fileprivate func regex(_ pattern: String) -> Regex<AnyRegexOutput>? {
        if let regex = prepared.regexes[pattern] { return regex }
        return PreparedDocument.compile(pattern)
    }

    /// The schema a branch stands for: itself, or what its `$ref` chain (with no other keywords) leads to.
    fileprivate func target(of schema: JSONValue) -> JSONValue {
        var current = schema
        var seen: Set<String> = []
        while let reference = current["$ref"]?.stringValue, current.objectValue?.count == 1,
            seen.insert(reference).inserted, let next = resolve(reference)
        {
            current = next
        }
        return current
    }

    /// The properties a schema pins to one value (`const`, or a one-value `enum`), looking through `$ref` and
    /// one level of `allOf`: the discriminators of a tagged union's branch (`kind`, `type`).
    fileprivate func constProperties(of schema: JSONValue) -> [String: JSONValue] {
        if case .object(let keywords) = schema, keywords.count == 1, let reference = keywords["$ref"]?.stringValue,
            let cached = discriminators[reference]
        {
            return cached
        }
        let resolved = target(of: schema)
        var parts = [resolved]
        parts += resolved["allOf"]?.arrayValue?.map { target(of: $0) } ?? []
        var table: [String: JSONValue] = [:]
        for part in parts {
            for (key, property) in part["properties"]?.objectValue ?? [:] {
                let property = target(of: property)
                if let value = property["const"] {
                    table[key] = value
                } else if let values = property["enum"]?.arrayValue, values.count == 1 {
                    table[key] = values[0]
                }
            }
        }
        return table
    }
}

// MARK: - Evaluation

/// One validation run: evaluates schemas recursively and collects violations.
private struct Evaluation {
    let validator: JSONSchemaValidator

    /// Evaluates `schema` against `instance` found at `path`.
    ///
    /// `references` holds the `$ref`s followed since the evaluation last moved to a child value: meeting one
    /// of them again means a cycle that would never end.
    func evaluate(
        _ schema: JSONValue, _ instance: JSONValue, at path: String, references: [String], depth: Int
    ) -> [SchemaViolation] {
        guard depth <= JSONSchemaValidator.maximumDepth else {
            return [
                SchemaViolation(
                    instancePath: path,
                    message: "value or schema nested deeper than \(JSONSchemaValidator.maximumDepth) evaluation levels"
                )
            ]
        }
        switch schema {
        case .bool(true): return []
        case .bool(false): return [SchemaViolation(instancePath: path, message: "no value is allowed here")]
        case .object(let keywords):
            return evaluate(keywords, instance, at: path, references: references, depth: depth)
        default:
            return [schemaError(at: path, "a schema must be an object or a boolean, got \(schema.typeName)")]
        }
    }

    private func evaluate(
        _ keywords: [String: JSONValue], _ instance: JSONValue, at path: String, references: [String], depth: Int
    ) -> [SchemaViolation] {
        var violations: [SchemaViolation] = []

        if let reference = keywords["$ref"] {
            violations += followReference(reference, instance, at: path, references: references, depth: depth)
        }

        if let type = keywords["type"] {
            let problems = checkType(type, instance, at: path)
            // A value of the wrong type fails every other keyword for the same reason; one message says it best.
            if !problems.isEmpty { return violations + problems }
        }
        if let expected = keywords["const"], expected != instance {
            violations.append(
                SchemaViolation(instancePath: path, message: "expected \(brief(expected)), got \(brief(instance))")
            )
        }
        if let allowed = keywords["enum"] {
            if let values = allowed.arrayValue {
                if !values.contains(instance) {
                    let list = values.map { brief($0) }.joined(separator: ", ")
                    violations.append(
                        SchemaViolation(instancePath: path, message: "expected one of \(list), got \(brief(instance))")
                    )
                }
            } else {
                violations.append(schemaError(at: path, "'enum' must be an array"))
            }
        }

        switch instance {
        case .number(let number): violations += checkNumber(keywords, number, at: path)
        case .string(let string): violations += checkString(keywords, string, at: path)
        case .array(let elements):
            violations += checkArray(keywords, elements, at: path, depth: depth)
        case .object(let members):
            violations += checkObject(keywords, members, at: path, depth: depth)
        default: break
        }

        violations += checkApplicators(keywords, instance, at: path, references: references, depth: depth)
        return violations
    }

    // MARK: $ref

    private func followReference(
        _ reference: JSONValue, _ instance: JSONValue, at path: String, references: [String], depth: Int
    ) -> [SchemaViolation] {
        guard let target = reference.stringValue else { return [schemaError(at: path, "'$ref' must be a string")] }
        if references.contains(target) {
            return [schemaError(at: path, "$ref cycle through \(target) that never reaches a value")]
        }
        guard let schema = validator.resolve(target) else {
            return [schemaError(at: path, "cannot resolve $ref \(target)")]
        }
        return evaluate(schema, instance, at: path, references: references + [target], depth: depth + 1)
    }

    // MARK: type

    private func checkType(_ type: JSONValue, _ instance: JSONValue, at path: String) -> [SchemaViolation] {
        let names: [String]
        switch type {
        case .string(let name): names = [name]
        case .array(let values):
            let strings = values.compactMap(\.stringValue)
            guard strings.count == values.count, !strings.isEmpty else {
                return [schemaError(at: path, "'type' must be a type name or a non-empty array of type names")]
            }
            names = strings
        default:
            return [schemaError(at: path, "'type' must be a type name or a non-empty array of type names")]
        }
        for name in names where !Self.knownTypes.contains(name) {
            return [schemaError(at: path, "unknown type '\(name)'")]
        }
        if names.contains(where: { Self.value(instance, hasType: $0) }) { return [] }
        var got = instance.typeName
        if case .number(let number) = instance, names.contains("integer") { got = "number \(brief(.number(number)))" }
        return [SchemaViolation(instancePath: path, message: "expected \(Self.listing(names, "or")), got \(got)")]
    }

    static let knownTypes: Set<String> = ["null", "boolean", "object", "array", "number", "integer", "string"]

    static func value(_ instance: JSONValue, hasType name: String) -> Bool {
        switch (name, instance) {
        case ("null", .null), ("boolean", .bool), ("object", .object), ("array", .array), ("string", .string),
            ("number", .number):
            return true
        case ("integer", .number(let number)): return number.isFinite && number.rounded(.towardZero) == number
        default: return false
        }
    }

    // MARK: numbers

    private func checkNumber(_ keywords: [String: JSONValue], _ number: Double, at path: String) -> [SchemaViolation] {
        var violations: [SchemaViolation] = []
        let shown = brief(.number(number))
        func bound(_ keyword: String, _ holds: (Double, Double) -> Bool, _ relation: String) {
            guard let value = keywords[keyword] else { return }
            guard let limit = value.doubleValue else {
                violations.append(schemaError(at: path, "'\(keyword)' must be a number"))
                return
            }
            if !holds(number, limit) {
                violations.append(
                    SchemaViolation(
                        instancePath: path,
                        message: "expected a number \(relation) \(brief(.number(limit))), got \(shown)"
                    )
                )
            }
        }
        bound("minimum", >=, ">=")
        bound("maximum", <=, "<=")
        bound("exclusiveMinimum", >, ">")
        bound("exclusiveMaximum", <, "<")
        if let value = keywords["multipleOf"] {
            if let divisor = value.doubleValue, divisor > 0 {
                let quotient = number / divisor
                if !quotient.isFinite || abs(quotient - quotient.rounded()) > 1e-9 * max(1, abs(quotient)) {
                    violations.append(
                        SchemaViolation(
                            instancePath: path,
                            message: "expected a multiple of \(brief(.number(divisor))), got \(shown)"
                        )
                    )
                }
            } else {
                violations.append(schemaError(at: path, "'multipleOf' must be a number greater than 0"))
            }
        }
        return violations
    }

    // MARK: strings

    private func checkString(_ keywords: [String: JSONValue], _ string: String, at path: String) -> [SchemaViolation] {
        var violations: [SchemaViolation] = []
        if keywords["minLength"] != nil || keywords["maxLength"] != nil {
            let length = string.unicodeScalars.count
            if let problem = countLimit(
                keywords, "minLength", at: path, unit: "character", count: length, atLeast: true)
            {
                violations.append(problem)
            }
            if let problem = countLimit(
                keywords, "maxLength", at: path, unit: "character", count: length, atLeast: false)
            {
                violations.append(problem)
            }
        }
        if let value = keywords["pattern"] {
            if let pattern = value.stringValue {
                if let regex = validator.regex(pattern) {
                    if !Self.search(regex, in: string) {
                        violations.append(
                            SchemaViolation(
                                instancePath: path,
                                message: "expected a string matching \(pattern), got \(brief(.string(string)))"
                            )
                        )
                    }
                } else {
                    violations.append(schemaError(at: path, "'pattern' \(pattern) is not a valid regular expression"))
                }
            } else {
                violations.append(schemaError(at: path, "'pattern' must be a string"))
            }
        }
        return violations
    }

    static func search(_ regex: Regex<AnyRegexOutput>, in string: String) -> Bool {
        (try? regex.firstMatch(in: string)) != nil
    }

    /// Checks a `min…`/`max…` count keyword; the message names `unit` in singular or plural as needed.
    private func countLimit(
        _ keywords: [String: JSONValue], _ keyword: String, at path: String, unit: String, count: Int, atLeast: Bool
    ) -> SchemaViolation? {
        guard let value = keywords[keyword] else { return nil }
        guard let limit = value.intValue, limit >= 0 else {
            return schemaError(at: path, "'\(keyword)' must be a non-negative integer")
        }
        if atLeast ? count >= limit : count <= limit { return nil }
        let quantity = atLeast ? "at least" : "at most"
        return SchemaViolation(
            instancePath: path,
            message: "expected \(quantity) \(limit) \(Self.plural(unit, limit)), got \(count)"
        )
    }

    // MARK: arrays

    private func checkArray(
        _ keywords: [String: JSONValue], _ elements: [JSONValue], at path: String, depth: Int
    ) -> [SchemaViolation] {
        var violations: [SchemaViolation] = []
        if let problem = countLimit(keywords, "minItems", at: path, unit: "item", count: elements.count, atLeast: true)
        {
            violations.append(problem)
        }
        if let problem = countLimit(keywords, "maxItems", at: path, unit: "item", count: elements.count, atLeast: false)
        {
            violations.append(problem)
        }
        if keywords["uniqueItems"]?.boolValue == true {
            var firstIndex: [JSONValue: Int] = [:]
            for (index, element) in elements.enumerated() {
                // `JSONValue` equality is JSON equality: `1` equals `1.0`, object keys have no order.
                if let first = firstIndex[element] {
                    violations.append(
                        SchemaViolation(
                            instancePath: Self.child(path, index),
                            message: "duplicate of item \(first); expected unique items"
                        )
                    )
                } else {
                    firstIndex[element] = index
                }
            }
        }

        var prefixCount = 0
        if let prefix = keywords["prefixItems"] {
            if let schemas = prefix.arrayValue {
                prefixCount = schemas.count
                for (index, element) in elements.enumerated() where index < schemas.count {
                    violations += evaluate(
                        schemas[index], element, at: Self.child(path, index), references: [], depth: depth + 1)
                }
            } else {
                violations.append(schemaError(at: path, "'prefixItems' must be an array of schemas"))
            }
        }
        if let items = keywords["items"] {
            if case .bool(false) = items, elements.count > prefixCount {
                violations.append(
                    SchemaViolation(
                        instancePath: Self.child(path, prefixCount),
                        message:
                            "expected at most \(prefixCount) \(Self.plural("item", prefixCount)), got \(elements.count)"
                    )
                )
            } else {
                for index in elements.indices where index >= prefixCount {
                    violations += evaluate(
                        items, elements[index], at: Self.child(path, index), references: [], depth: depth + 1)
                }
            }
        }

        if let contains = keywords["contains"] {
            var matches = 0
            for (index, element) in elements.enumerated() {
                if evaluate(contains, element, at: Self.child(path, index), references: [], depth: depth + 1).isEmpty {
                    matches += 1
                }
            }
            let minimum = keywords["minContains"]?.intValue ?? 1
            if matches < minimum {
                violations.append(
                    SchemaViolation(
                        instancePath: path,
                        message:
                            "expected at least \(minimum) \(Self.plural("item", minimum)) matching 'contains', got \(matches)"
                    )
                )
            }
            if let maximum = keywords["maxContains"]?.intValue, matches > maximum {
                violations.append(
                    SchemaViolation(
                        instancePath: path,
                        message:
                            "expected at most \(maximum) \(Self.plural("item", maximum)) matching 'contains', got \(matches)"
                    )
                )
            }
        }
        return violations
    }

    // MARK: objects

    private func checkObject(
        _ keywords: [String: JSONValue], _ members: [String: JSONValue], at path: String, depth: Int
    ) -> [SchemaViolation] {
        var violations: [SchemaViolation] = []

        if let required = keywords["required"] {
            if let names = Self.strings(required) {
                for name in names where members[name] == nil {
                    violations.append(
                        SchemaViolation(
                            instancePath: Self.child(path, name), message: "missing required property '\(name)'")
                    )
                }
            } else {
                violations.append(schemaError(at: path, "'required' must be an array of strings"))
            }
        }
        if let dependent = keywords["dependentRequired"] {
            if let table = dependent.objectValue {
                for (trigger, value) in table.sorted(by: { $0.key < $1.key }) where members[trigger] != nil {
                    guard let names = Self.strings(value) else {
                        violations.append(schemaError(at: path, "'dependentRequired' must map names to string arrays"))
                        continue
                    }
                    for name in names where members[name] == nil {
                        violations.append(
                            SchemaViolation(
                                instancePath: Self.child(path, name),
                                message: "missing property '\(name)', required when '\(trigger)' is present"
                            )
                        )
                    }
                }
            } else {
                violations.append(schemaError(at: path, "'dependentRequired' must be an object"))
            }
        }
        if let problem = countLimit(
            keywords, "minProperties", at: path, unit: "property", count: members.count, atLeast: true)
        {
            violations.append(problem)
        }
        if let problem = countLimit(
            keywords, "maxProperties", at: path, unit: "property", count: members.count, atLeast: false)
        {
            violations.append(problem)
        }

        var properties: [String: JSONValue] = [:]
        if let value = keywords["properties"] {
            if let table = value.objectValue {
                properties = table
            } else {
                violations.append(schemaError(at: path, "'properties' must be an object"))
            }
        }
        var patterns: [(pattern: String, regex: Regex<AnyRegexOutput>, schema: JSONValue)] = []
        if let value = keywords["patternProperties"] {
            if let table = value.objectValue {
                for (pattern, schema) in table.sorted(by: { $0.key < $1.key }) {
                    if let regex = validator.regex(pattern) {
                        patterns.append((pattern, regex, schema))
                    } else {
                        violations.append(
                            schemaError(
                                at: path, "'patternProperties' key \(pattern) is not a valid regular expression")
                        )
                    }
                }
            } else {
                violations.append(schemaError(at: path, "'patternProperties' must be an object"))
            }
        }
        let additional = keywords["additionalProperties"]
        let propertyNames = keywords["propertyNames"]

        for key in members.keys.sorted() {
            let value = members[key]!
            let childPath = Self.child(path, key)
            if let schema = propertyNames {
                for violation in evaluate(schema, .string(key), at: childPath, references: [], depth: depth + 1) {
                    violations.append(
                        SchemaViolation(
                            instancePath: childPath, message: "property name '\(key)': \(violation.message)")
                    )
                }
            }
            var matched = false
            if let schema = properties[key] {
                matched = true
                violations += evaluate(schema, value, at: childPath, references: [], depth: depth + 1)
            }
            for entry in patterns where Self.search(entry.regex, in: key) {
                matched = true
                violations += evaluate(entry.schema, value, at: childPath, references: [], depth: depth + 1)
            }
            guard !matched, let additional else { continue }
            if case .bool(false) = additional {
                violations.append(
                    SchemaViolation(
                        instancePath: childPath,
                        message: Self.unknownPropertyMessage(
                            key, properties: properties, patterns: patterns.map(\.pattern))
                    )
                )
            } else {
                violations += evaluate(additional, value, at: childPath, references: [], depth: depth + 1)
            }
        }
        return violations
    }

    static func unknownPropertyMessage(_ key: String, properties: [String: JSONValue], patterns: [String]) -> String {
        var allowed = properties.keys.sorted()
        allowed += patterns.map { "names matching \($0)" }
        if allowed.isEmpty { return "unknown property '\(key)' (no properties are allowed here)" }
        return "unknown property '\(key)' (allowed: \(allowed.joined(separator: ", ")))"
    }

    // MARK: applicators

    private func checkApplicators(
        _ keywords: [String: JSONValue], _ instance: JSONValue, at path: String, references: [String], depth: Int
    ) -> [SchemaViolation] {
        var violations: [SchemaViolation] = []
        if let value = keywords["allOf"] {
            if let branches = value.arrayValue, !branches.isEmpty {
                for branch in branches {
                    violations += evaluate(branch, instance, at: path, references: references, depth: depth + 1)
                }
            } else {
                violations.append(schemaError(at: path, "'allOf' must be a non-empty array of schemas"))
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            guard let value = keywords[keyword] else { continue }
            guard let branches = value.arrayValue, !branches.isEmpty else {
                violations.append(schemaError(at: path, "'\(keyword)' must be a non-empty array of schemas"))
                continue
            }
            // In a tagged union only the branches whose discriminators match can pass: evaluate those first, and
            // the others only when none passes and the answer needs every branch's reasons.
            let candidates = candidateBranches(branches, instance)
            var results: [[SchemaViolation]?] = Array(repeating: nil, count: branches.count)
            for index in candidates ?? Array(branches.indices) {
                results[index] = evaluate(branches[index], instance, at: path, references: references, depth: depth + 1)
            }
            let passing = results.indices.filter { results[$0]?.isEmpty == true }
            if passing.isEmpty, let candidates, candidates.count == 1 {
                violations += results[candidates[0]]!
            } else if passing.isEmpty {
                let all = branches.indices.map { index in
                    results[index]
                        ?? evaluate(branches[index], instance, at: path, references: references, depth: depth + 1)
                }
                violations += explainNoMatch(branches, all, instance, at: path)
            } else if keyword == "oneOf", passing.count > 1 {
                let names = passing.map { branchName(branches[$0], $0) }
                violations.append(
                    SchemaViolation(
                        instancePath: path,
                        message:
                            "matches \(Self.listing(names, "and")); expected exactly one of the \(branches.count) alternatives"
                    )
                )
            }
        }
        if let schema = keywords["not"] {
            if evaluate(schema, instance, at: path, references: references, depth: depth + 1).isEmpty {
                let what = schema["title"]?.stringValue ?? schema["description"]?.stringValue
                violations.append(
                    SchemaViolation(
                        instancePath: path,
                        message: what.map { "must not be: \($0)" } ?? "must not match the schema under 'not'"
                    )
                )
            }
        }
        if let condition = keywords["if"] {
            let holds = evaluate(condition, instance, at: path, references: references, depth: depth + 1).isEmpty
            if let consequence = keywords[holds ? "then" : "else"] {
                violations += evaluate(consequence, instance, at: path, references: references, depth: depth + 1)
            }
        }
        return violations
    }

    /// The branches of an `anyOf`/`oneOf` that can match an object, judged by the `const` properties every branch
    /// pins (`kind`, `type`): a branch whose pinned value differs from the object's cannot pass. Nil when the
    /// branches have no common discriminator, the object lacks one, or no branch fits.
    private func candidateBranches(_ branches: [JSONValue], _ instance: JSONValue) -> [Int]? {
        guard case .object(let members) = instance else { return nil }
        let tables = branches.map { validator.constProperties(of: $0) }
        let common = tables.dropFirst().reduce(Set(tables[0].keys)) { $0.intersection($1.keys) }
        guard !common.isEmpty, common.allSatisfy({ members[$0] != nil }) else { return nil }
        let candidates = branches.indices.filter { index in common.allSatisfy { members[$0] == tables[index][$0] } }
        return candidates.isEmpty ? nil : candidates
    }

    /// Explains why no branch of an `anyOf`/`oneOf` matched, as precisely as the branches allow.
    ///
    /// 1. Branches that tell themselves apart by `const` properties (`kind`, `type`): when exactly one
    ///    branch's discriminators match the value, that branch's own violations are the answer; when none do,
    ///    the answer is the discriminator's allowed values.
    /// 2. Branches that tell themselves apart by `type`: when exactly one branch takes the value's type, its
    ///    violations are the answer; when none does, the answer is the types that would be accepted.
    /// 3. Otherwise one message lists each alternative (by `title` when it has one) with its first violation.
    private func explainNoMatch(
        _ branches: [JSONValue], _ results: [[SchemaViolation]], _ instance: JSONValue, at path: String
    ) -> [SchemaViolation] {
        let discriminators = branches.map { validator.constProperties(of: $0) }
        let common = discriminators.dropFirst().reduce(Set(discriminators[0].keys)) { $0.intersection($1.keys) }
        if !common.isEmpty, case .object(let members) = instance {
            let keys = common.sorted()
            let matching = branches.indices.filter { index in
                keys.allSatisfy { key in members[key] == discriminators[index][key] }
            }
            if matching.count == 1 { return results[matching[0]] }
            if matching.isEmpty {
                for key in keys {
                    var allowed: [JSONValue] = []
                    for table in discriminators where !allowed.contains(table[key]!) { allowed.append(table[key]!) }
                    let list = allowed.map { brief($0) }.joined(separator: ", ")
                    guard let value = members[key] else {
                        return [
                            SchemaViolation(
                                instancePath: Self.child(path, key),
                                message: "missing required property '\(key)' (one of \(list))"
                            )
                        ]
                    }
                    if !allowed.contains(value) {
                        return [
                            SchemaViolation(
                                instancePath: Self.child(path, key),
                                message: "unknown \(key) \(brief(value)) (expected one of \(list))"
                            )
                        ]
                    }
                }
            }
        }

        let types = branches.map { declaredTypes(of: $0) }
        if types.allSatisfy({ $0 != nil }) {
            let admitting = branches.indices.filter { index in
                types[index]!.contains { Self.value(instance, hasType: $0) }
            }
            if admitting.count == 1 { return results[admitting[0]] }
            if admitting.isEmpty {
                var names: [String] = []
                for list in types { for name in list! where !names.contains(name) { names.append(name) } }
                return [
                    SchemaViolation(
                        instancePath: path,
                        message: "expected \(Self.listing(names, "or")), got \(instance.typeName)"
                    )
                ]
            }
        }

        let reasons = branches.indices.map { index -> String in
            let first = results[index].first.map { violation in
                if violation.instancePath == path { return violation.message }
                var relative = String(violation.instancePath.dropFirst(path.count))
                if relative.hasPrefix(".") { relative.removeFirst() }
                // "missing required property 'argv'" needs no "argv: " in front.
                if violation.message.contains("'\(relative)'") { return violation.message }
                return "\(relative): \(violation.message)"
            }
            return "(\(branchName(branches[index], index))) \(first ?? "does not match")"
        }
        return [
            SchemaViolation(
                instancePath: path,
                message: "matches none of the \(branches.count) alternatives: \(reasons.joined(separator: "; "))"
            )
        ]
    }

    private func branchName(_ branch: JSONValue, _ index: Int) -> String {
        if let title = validator.target(of: branch)["title"]?.stringValue { return title }
        if let reference = branch["$ref"]?.stringValue, let last = reference.split(separator: "/").last {
            return String(last)
        }
        return "alternative \(index + 1)"
    }

    /// The type names a schema declares (through `$ref`), or nil when it declares none.
    private func declaredTypes(of schema: JSONValue) -> [String]? {
        switch validator.target(of: schema)["type"] {
        case .string(let name): [name]
        case .array(let values): values.compactMap(\.stringValue)
        default: nil
        }
    }

    // MARK: helpers

    private func schemaError(at path: String, _ text: String) -> SchemaViolation {
        SchemaViolation(instancePath: path, message: "schema error: \(text)")
    }

    /// A short rendering of a value for messages: JSON text, cut after 60 characters.
    private func brief(_ value: JSONValue) -> String {
        let text = value.encoded(sortedKeys: true)
        if text.unicodeScalars.count <= 60 { return text }
        return String(String.UnicodeScalarView(text.unicodeScalars.prefix(57))) + "…"
    }

    static func strings(_ value: JSONValue) -> [String]? {
        guard let values = value.arrayValue else { return nil }
        let strings = values.compactMap(\.stringValue)
        return strings.count == values.count ? strings : nil
    }

    static func plural(_ unit: String, _ count: Int) -> String {
        if count == 1 { return unit }
        return unit.hasSuffix("y") ? unit.dropLast() + "ies" : unit + "s"
    }

    /// `a`, `a or b`, `a, b or c`.
    static func listing(_ names: [String], _ conjunction: String) -> String {
        guard names.count > 1 else { return names.first ?? "" }
        return names.dropLast().joined(separator: ", ") + " \(conjunction) " + names.last!
    }

    static func child(_ path: String, _ index: Int) -> String { "\(path)[\(index)]" }

    static func child(_ path: String, _ key: String) -> String {
        if isIdentifier(key) { return path.isEmpty ? key : "\(path).\(key)" }
        return "\(path)[\(JSONValue.string(key).encoded())]"
    }

    /// Whether a key can follow a `.` in a path: ASCII letters, digits, `_` and `$`, not starting with a digit.
    static func isIdentifier(_ key: String) -> Bool {
        func isWordByte(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "$"):
                true
            default: false
            }
        }
        guard let first = key.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return false }
        return key.utf8.allSatisfy(isWordByte)
    }
}

/// Percent-decodes a URI fragment; nil when an escape is malformed or the bytes are not UTF-8.
/// The unescaped tokens of a JSON pointer (RFC 6901) that starts with `/`: `~1` is `/`, `~0` is `~`.
package func jsonPointerTokens(_ pointer: String) -> [String] {
    pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map { token in
        String(token).replacing("~1", with: "/").replacing("~0", with: "~")
    }
}

extension JSONValue {
    /// The value a JSON pointer's unescaped tokens lead to from this one, or nil when they lead nowhere (an
    /// array index must be a decimal number without leading zeros).
    package func value(atPointer tokens: [String]) -> JSONValue? {
        var current = self
        for token in tokens {
            switch current {
            case .object(let members):
                guard let next = members[token] else { return nil }
                current = next
            case .array(let elements):
                let isIndex = token.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
                guard isIndex, token == "0" || !token.hasPrefix("0"), let index = Int(token), index < elements.count
                else { return nil }
                current = elements[index]
            default:
                return nil
            }
        }
        return current
    }
}

/// `text` with `%XX` escapes decoded; nil when an escape is malformed or the bytes are not UTF-8.
package func percentDecoded(_ text: String) -> String? {
    guard text.contains("%") else { return text }
    var bytes: [UInt8] = []
    var iterator = Array(text.utf8).makeIterator()
    while let byte = iterator.next() {
        guard byte == UInt8(ascii: "%") else {
            bytes.append(byte)
            continue
        }
        guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
            return nil
        }
        bytes.append(high << 4 | low)
    }
    return String(validating: bytes, as: UTF8.self)
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

// MARK: - Precompiled patterns, anchors and references

/// Every regular expression, `$anchor` and `$ref` of a schema document, found once when the validator is made.
///
/// `@unchecked Sendable`: both tables are immutable after `init`. `Regex` is not declared `Sendable` only
/// because of its generic output type; matching does not mutate it except for lowering its program on first
/// use, which `init` forces (by matching once) before the regex can be seen by another thread.
private final class PreparedDocument: @unchecked Sendable {
    let regexes: [String: Regex<AnyRegexOutput>]
    /// Each `$anchor` name with the JSON pointer tokens of the schema that declares it.
    let anchors: [String: [String]]
    /// Every distinct `$ref` value.
    let references: Set<String>

    init(document: JSONValue) {
        var found = Found()
        Self.collect(document, tokens: [], into: &found)
        var regexes: [String: Regex<AnyRegexOutput>] = [:]
        for pattern in found.patterns {
            if let regex = Self.compile(pattern) { regexes[pattern] = regex }
        }
        self.regexes = regexes
        self.anchors = found.anchors
        self.references = found.references
    }

    private struct Found {
        var patterns: Set<String> = []
        var anchors: [String: [String]] = [:]
        var references: Set<String> = []
    }

    /// Compiles an ECMA-262-style pattern: Unicode-scalar semantics, ASCII-only `\d` and `\w`.
    static func compile(_ pattern: String) -> Regex<AnyRegexOutput>? {
        guard let regex = try? Regex(pattern) else { return nil }
        let configured = regex.matchingSemantics(.unicodeScalar).asciiOnlyDigits().asciiOnlyWordCharacters()
        _ = try? configured.firstMatch(in: "")
        return configured
    }

    private static func collect(_ value: JSONValue, tokens: [String], into found: inout Found) {
        switch value {
        case .object(let members):
            if let pattern = members["pattern"]?.stringValue { found.patterns.insert(pattern) }
            if let table = members["patternProperties"]?.objectValue { found.patterns.formUnion(table.keys) }
            if let reference = members["$ref"]?.stringValue { found.references.insert(reference) }
            if let anchor = members["$anchor"]?.stringValue, found.anchors[anchor] == nil {
                found.anchors[anchor] = tokens
            }
            for (key, member) in members {
                collect(member, tokens: tokens + [key], into: &found)
            }
        case .array(let elements):
            for (index, element) in elements.enumerated() {
                collect(element, tokens: tokens + [String(index)], into: &found)
            }
        default:
            break
        }
    }
}

extension JSONSchemaValidator {
    /// The first thing in `schema` that would make every instance fail (a `$ref` that resolves to nothing in
    /// the schema itself, a `pattern` that does not compile, a keyword of the wrong type), or nil when it is
    /// usable. For checking schemas that clients declare before any instance meets them.
    public static func problem(in schema: JSONValue) -> String? {
        let validator = JSONSchemaValidator(document: schema)
        func walk(_ value: JSONValue, at path: String, depth: Int) -> String? {
            guard depth < maximumDepth else { return "\(path) nests too deeply" }
            switch value {
            case .object(let members):
                if let reference = members["$ref"] {
                    guard let text = reference.stringValue else { return "\(path).$ref is not a string" }
                    if validator.resolve(text) == nil { return "\(path).$ref \"\(text)\" resolves to nothing" }
                }
                if let pattern = members["pattern"] {
                    guard let text = pattern.stringValue else { return "\(path).pattern is not a string" }
                    if (try? Regex(text)) == nil { return "\(path).pattern \"\(text)\" does not compile" }
                }
                if let required = members["required"],
                    required.arrayValue?.allSatisfy({ $0.stringValue != nil }) != true
                {
                    return "\(path).required is not an array of strings"
                }
                if let type = members["type"] {
                    let names = type.arrayValue ?? [type]
                    let known: Set<String> = ["null", "boolean", "object", "array", "number", "integer", "string"]
                    for name in names where !known.contains(name.stringValue ?? "") {
                        return "\(path).type \(name.encoded()) is not a JSON Schema type"
                    }
                }
                for key in ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"] {
                    guard let map = members[key]?.objectValue else { continue }
                    for (name, child) in map.sorted(by: { $0.key < $1.key }) {
                        if let problem = walk(
                            child, at: "\(path).\(key)[\(JSONValue.string(name).encoded())]", depth: depth + 1)
                        {
                            return problem
                        }
                    }
                }
                for key in [
                    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
                    "unevaluatedProperties", "unevaluatedItems", "additionalItems",
                ] {
                    guard let child = members[key] else { continue }
                    if let problem = walk(child, at: "\(path).\(key)", depth: depth + 1) { return problem }
                }
                for key in ["allOf", "anyOf", "oneOf", "prefixItems"] {
                    guard let list = members[key]?.arrayValue else { continue }
                    for (index, child) in list.enumerated() {
                        if let problem = walk(child, at: "\(path).\(key)[\(index)]", depth: depth + 1) {
                            return problem
                        }
                    }
                }
            case .array(let elements):
                // `items` in its older array form
                for (index, child) in elements.enumerated() {
                    if let problem = walk(child, at: "\(path)[\(index)]", depth: depth + 1) { return problem }
                }
            case .bool:
                break
            default:
                return "\(path) is not a schema (an object or a boolean)"
            }
            return nil
        }
        return walk(schema, at: "schema", depth: 0)
    }
}
