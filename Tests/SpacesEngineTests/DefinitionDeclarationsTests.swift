import SpacesProtocol
import Testing

@testable import SpacesEngine

/// `CapabilityTypeScript.definitionDeclarations(of:)`: a whole schema document's definitions as a module's
/// declarations, as `spaces generate-types` writes the TypeScript SDK's protocol types.
@Suite struct DefinitionDeclarationsTests {
    private func declarations(_ schema: String) throws -> (text: String, typeNames: [String: String]) {
        let (lines, typeNames) = CapabilityTypeScript.definitionDeclarations(of: try JSONValue.parse(schema))
        return (lines.joined(separator: "\n"), typeNames)
    }

    @Test func eachDefinitionIsAnInterfaceOrAliasSortedByName() throws {
        let (text, typeNames) = try declarations(
            """
            {"$ref": "#/$defs/Message",
             "$defs": {
               "Message": {"description": "One line.", "anyOf": [{"$ref": "#/$defs/Request"}, {"type": "null"}]},
               "Request": {"type": "object", "required": ["id"],
                           "properties": {"id": {"$ref": "#/$defs/request-id"}, "next": {"$ref": "#/$defs/Request"},
                                          "root": {"$ref": "#"}}},
               "request-id": {"type": ["string", "integer"]}}}
            """)
        #expect(
            text == """
                /** One line. */
                export type Message = Request | null;

                export interface Request {
                  id: RequestId;
                  next?: Request;
                  root?: unknown;
                }

                export type RequestId = string | number;
                """)
        #expect(typeNames == ["Message": "Message", "Request": "Request", "request-id": "RequestId"])
    }

    @Test func circularAliasesAreBroken() throws {
        let (text, _) = try declarations(
            ##"{"$defs": {"A": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/A"}]}}}"##)
        #expect(text == "export type A = unknown /* cycle */;")
    }

    @Test func aDocumentWithoutDefinitionsDeclaresNothing() throws {
        #expect(try declarations(#"{"type": "object"}"#).text == "")
    }
}
