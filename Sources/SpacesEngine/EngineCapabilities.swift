import Logging
import SpacesProtocol
import Synchronization

extension Engine {
    /// How spaces reach the client for handlers of kind `client`.
    var clientInvoker: Space.ClientInvoker {
        { [weak self] params, timeoutMs in
            guard let self else {
                return .failure(RPCError(.internalError, "the engine is stopping", hint: "start a new engine"))
            }
            let requester = state.withLock { $0.clientRequester }
            guard let requester else {
                return .failure(
                    RPCError(.internalError, "this engine has no client to ask", hint: "use an http or mcp handler"))
            }
            return await requester("capabilities/invoke", params, timeoutMs)
        }
    }

    /// The transport's way of sending requests to the client (`capabilities/invoke`).
    public func setClientRequester(_ requester: @escaping ClientRequester) {
        state.withLock { $0.clientRequester = requester }
    }

    /// A `client` handler needs a client that said it answers `capabilities/invoke`. `indexed: false` when
    /// `path` names one capability (`params.capability`) rather than a list.
    func checkClientHandlers(_ capabilities: [CapabilityDeclaration], path: String, indexed: Bool = true)
        throws(RPCError)
    {
        let canAnswer = state.withLock { $0.clientHandlesCapabilities && $0.clientRequester != nil }
        for (index, capability) in capabilities.enumerated() {
            guard case .client = capability.handler, !canAnswer else { continue }
            let field = (indexed ? "\(path)[\(index)]" : path) + ".handler"
            throw RPCError.invalidParams(
                field, "this client did not say it answers capabilities/invoke",
                hint:
                    "send capabilities: {capabilityHandlers: true} in initialize and answer capabilities/invoke requests, or use an http or mcp handler"
            )
        }
    }

    /// An approval of a running operation's capability call that nobody gave (timeout, cancel, destroy): the
    /// call fails with APPROVAL_DENIED, a cancel also stops the operation, and the operation is waited for in
    /// order with the space's batches, its events recorded and streamed, the rest of its batch not run.
    func finishUnanswered(_ pending: PendingApproval, _ expiry: ApprovalExpiry, space: Space) {
        var trimmed = pending.remainder
        trimmed.operations = Array(trimmed.operations.prefix(1))
        let remainder = trimmed
        let control = BatchControl(batchId: pending.batchId, spaceId: space.id)
        if expiry.stopsOperation { _ = control.cancel() }
        let resolution = ApprovalResolution(
            approvalId: pending.approvalId, decision: "deny", by: expiry.by, note: expiry.reason)
        logger.info("approval denied", metadata: ["approval": "\(pending.approvalId)", "why": "\(expiry.reason)"])
        let streamer = eventStreamer(spaceId: space.id, batchId: control.batchId, enabled: pending.stream)
        space.executor.submit(preferring: nil) { [self] in
            let (result, next) = await space.run(remainder, control: control, notify: streamer, resolution: resolution)
            if next == nil { batchContinued(pending.batchId, result: result) }
        }
    }

    /// `spaces/addCapability` {spaceId, capability}: validated now, added in order with the space's batches;
    /// programs started from then on can import it, and `.spaces/capabilities.d.ts` is written again.
    package func prepareAddCapability(_ params: Params) throws(RPCError) -> (
        executor: SerialExecutor, job: @Sendable () async -> Result<JSONValue, RPCError>
    ) {
        let space = try space(try params.string("spaceId"))
        guard let raw = params.members["capability"], !raw.isNull else {
            throw RPCError.invalidParams(
                params.fieldPath("capability"), "missing required field",
                hint: "send capability: {name, methods, handler}, as in spaces/create's capabilities")
        }
        let declaration = try CapabilityDeclaration.parse(
            raw, path: params.fieldPath("capability"), secrets: Set(space.record.secrets.map { $0.name }))
        if space.capabilities.contains(where: { $0.name == declaration.name }) {
            throw RPCError.invalidParams(
                params.fieldPath("capability") + ".name", "the space already has a capability '\(declaration.name)'",
                hint: "choose another name; a capability cannot be replaced while the space runs")
        }
        guard space.capabilities.count < CapabilityDeclaration.maxCapabilities else {
            throw RPCError.invalidParams(
                params.fieldPath("capability"),
                "the space already has \(CapabilityDeclaration.maxCapabilities) capabilities",
                hint: "group related methods into fewer capabilities")
        }
        try checkClientHandlers([declaration], path: params.fieldPath("capability"), indexed: false)
        let path = params.fieldPath("capability")
        let job: @Sendable () async -> Result<JSONValue, RPCError> = {
            if space.isDestroyed { return .failure(RPCError.spaceNotFound(space.id)) }
            do throws(RPCError) {
                let resolved = try await space.discoverMethods([declaration], path: path, indexed: false)
                let all = space.capabilities + resolved
                space.setCapabilities(all)
                space.audit.record("capability.added", data: ["capability": resolved[0].json])
                space.audit.flush()
                do {
                    let worker = try await space.ensureWorker()
                    try await space.installCapabilities(on: worker, writeDeclarations: true)
                } catch {
                    return .failure(RPCError(.internalError, "\(error)", hint: "retry"))
                }
                return .success([
                    "spaceId": .string(space.id), "capability": resolved[0].json,
                    "declarations": .string(Space.declarationsPath),
                ])
            } catch {
                return .failure(error)
            }
        }
        return (space.executor, job)
    }
}

extension Space {
    /// Where the engine writes the capabilities' TypeScript declarations, workspace-relative.
    static let declarationsPath = ".spaces/capabilities.d.ts"

    /// Replaces the capabilities; `persisting: false` while the space is being created (its record is saved
    /// once its directory exists).
    func setCapabilities(_ capabilities: [CapabilityDeclaration], persisting: Bool = true) {
        let record = state.withLock { state in
            state.record.capabilities = capabilities
            return state.record
        }
        if persisting { persist(record) }
    }

    /// Capabilities with their methods complete: an `mcp` handler's server is started and asked for its tools,
    /// which become its methods (or complete the declared ones). Throws -32602 naming the capability at fault.
    func discoverMethods(_ declared: [CapabilityDeclaration], path: String, indexed: Bool = true)
        async throws(RPCError) -> [CapabilityDeclaration]
    {
        var result: [CapabilityDeclaration] = []
        for (index, capability) in declared.enumerated() {
            guard case .mcp = capability.handler else {
                result.append(capability)
                continue
            }
            let field = indexed ? "\(path)[\(index)]" : path
            guard let handler = capabilityHandler(for: capability) as? MCPCapabilityHandler else {
                result.append(capability)
                continue
            }
            switch await handler.discoverTools() {
            case .failure(let failure):
                throw RPCError.invalidParams(
                    field + ".handler", "the MCP server did not list its tools: \(failure.message)",
                    hint: "check the command line and that the server speaks MCP over stdio")
            case .success(let tools):
                var complete = capability
                complete.methods = MCPCapabilityHandler.methods(from: tools, declared: capability.methods)
                let missing = capability.methods.map { $0.name }.filter { name in !tools.contains { $0.name == name } }
                if let name = missing.first {
                    throw RPCError.invalidParams(
                        Params(members: [:], path: field + ".methods").fieldPath(name),
                        "the MCP server has no tool '\(name)'",
                        hint: "its tools: \(tools.map(\.name).joined(separator: ", "))")
                }
                if complete.methods.isEmpty {
                    throw RPCError.invalidParams(
                        field + ".handler", "the MCP server offers no tool usable as a method",
                        hint: "tool names must be letters, digits, '_' and '-'")
                }
                result.append(complete)
            }
        }
        return result
    }

    /// Tells a worker which capabilities its programs may import and, when asked, writes their declarations
    /// into the workspace.
    func installCapabilities(on worker: WorkerConnection, writeDeclarations: Bool) async throws(SpaceError) {
        let capabilities = self.capabilities
        let answer = await worker.request(
            "capabilities", ["manifest": CapabilityDeclaration.manifest(capabilities)])
        if case .failed(_, let message, _) = answer { throw SpaceError.workerDidNotStart("capabilities: \(message)") }
        guard writeDeclarations else { return }
        let written = await worker.request(
            "file.write",
            [
                "path": .string(Self.declarationsPath),
                "content": .string(CapabilityTypeScript.declarationFile(for: capabilities)),
            ])
        if case .failed(_, let message, _) = written {
            logger.warning("capability declarations not written: \(message)")
        }
    }
}
