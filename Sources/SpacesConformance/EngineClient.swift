public import SpacesProtocol

/// A minimal protocol client over an ``EngineProcess``: numbered requests, answers matched by id,
/// notifications collected on the side. Used by `spaces quickstart` and `spaces bench`.
public final class EngineClient {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let process: EngineProcess
    private var nextID = 1
    public private(set) var notifications: [JSONValue] = []
    /// Called with each notification as it arrives.
    public var onNotification: ((JSONValue) -> Void)?
    /// Answers each request the engine sends (`capabilities/invoke`): the `result`, or nil for a -32601 error.
    public var onRequest: ((_ method: String, _ params: JSONValue) -> JSONValue?)?
    public var timeoutMs: Int

    public init(process: EngineProcess, timeoutMs: Int = 60_000) {
        self.process = process
        self.timeoutMs = timeoutMs
    }

    /// Sends a request and returns its `result`; a JSON-RPC error becomes a thrown ``Failure``.
    @discardableResult
    public func call(_ method: String, _ params: JSONValue = .object([:])) throws(Failure) -> JSONValue {
        let id = send(method, params)
        return try awaitResult(id: id)
    }

    /// Sends a request without waiting; returns its id.
    public func send(_ method: String, _ params: JSONValue) -> Int {
        let id = nextID
        nextID += 1
        let message: JSONValue = ["jsonrpc": "2.0", "id": JSONValue(id), "method": .string(method), "params": params]
        try? process.send(message.encodedBytes() + [0x0A])
        return id
    }

    public func sendRaw(_ bytes: [UInt8]) throws(Failure) {
        do {
            try process.send(bytes)
        } catch {
            throw Failure(description: error.description)
        }
    }

    public func awaitResult(id: Int) throws(Failure) -> JSONValue {
        let message = try awaitResponse(id: id)
        if let error = message["error"] {
            let hint = error["data"]?["hint"]?.stringValue ?? ""
            throw Failure(description: "\(error["message"]?.stringValue ?? "error") — \(hint)")
        }
        return message["result"] ?? .null
    }

    public func awaitResponse(id: Int) throws(Failure) -> JSONValue {
        while true {
            let line: [UInt8]?
            do {
                line = try process.nextLine(timeoutMs: timeoutMs)
            } catch {
                throw Failure(description: error.description)
            }
            guard let line else { throw Failure(description: "the engine closed its output") }
            guard let message = try? JSONValue.parse(line) else {
                throw Failure(description: "the engine wrote a line that is not JSON")
            }
            if message["id"] == JSONValue(id) { return message }
            if let method = message["method"]?.stringValue, let requestID = message["id"] {
                let answer: JSONValue =
                    if let result = onRequest?(method, message["params"] ?? .null) {
                        ["jsonrpc": "2.0", "id": requestID, "result": result]
                    } else {
                        [
                            "jsonrpc": "2.0", "id": requestID,
                            "error": ["code": -32601, "message": .string("this client does not answer \(method)")],
                        ]
                    }
                try? process.send(answer.encodedBytes() + [0x0A])
                continue
            }
            if message["method"] != nil {
                notifications.append(message)
                onNotification?(message)
            }
        }
    }
}
