import Logging
import SpacesProtocol

/// Handlers of kind `client`: the embedding client answers `capabilities/invoke`.
struct ClientCapabilityHandler: CapabilityHandler {
    let spaceId: String
    let invokeClient: Space.ClientInvoker

    func call(
        capability: CapabilityDeclaration, method: CapabilityDeclaration.Method, params: JSONValue,
        secrets: [String: String]
    ) async -> Result<JSONValue, CapabilityFailure> {
        let request: JSONValue = [
            "spaceId": .string(spaceId), "capability": .string(capability.name), "method": .string(method.name),
            "params": params,
        ]
        // The bridge's own timer answers TIMEOUT at timeoutMs; the request's outlives it only to be cleaned up.
        switch await invokeClient(request, capability.handler.timeoutMs + 1_000) {
        case .success(let result):
            return .success(result)
        case .failure(let error):
            return .failure(
                CapabilityFailure(
                    .handlerError, "\(capability.name).\(method.name) failed in the client: \(error.message)",
                    hint: error.hint.isEmpty ? "see the client's log" : error.hint))
        }
    }

    func stop() async {}
}

extension Space {
    /// The handler a declaration asks for.
    static func makeHandler(
        for capability: CapabilityDeclaration, invokeClient: @escaping ClientInvoker, spaceId: String,
        secrets: [String: String], logger: Logger
    ) -> any CapabilityHandler {
        switch capability.handler {
        case .client:
            ClientCapabilityHandler(spaceId: spaceId, invokeClient: invokeClient)
        case .http:
            HTTPCapabilityHandler()
        case .mcp:
            MCPCapabilityHandler(capability: capability, secrets: secrets, logger: logger)
        }
    }
}
