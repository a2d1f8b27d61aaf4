import Foundation
import SpacesProtocol
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Calls an HTTP API for a space's `http` capability. The engine makes the request itself, on the host, so the
/// secrets that the declared headers name (`${secret:NAME}`) never enter the sandbox.
///
/// Each call uses a session of its own that keeps nothing (no cookies, cache or credential store) and never
/// follows a redirect: following one could carry the secret headers to another host. The answer's body is read
/// as it arrives and abandoned past ``maxBodyBytes``; ``call(capability:method:params:secrets:)`` never waits
/// longer than the handler's `timeoutMs`.
struct HTTPCapabilityHandler: CapabilityHandler {
    /// The largest answer body a call accepts.
    static let maxBodyBytes = 16 << 20
    /// How much of an error answer's body a failure message quotes, in characters.
    static let quotedBodyCharacters = 300

    init() {}

    /// What one call sends: built from the method's route, the params and the declared headers.
    struct Request: Equatable {
        var method: String
        var url: String
        /// The declared headers with their secrets filled in, then the defaults that were not declared.
        var headers: [Header]
        /// The JSON body of a POST, PUT or PATCH; nil for GET and DELETE.
        var body: [UInt8]?

        struct Header: Equatable {
            var name: String
            var value: String
        }

        func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }
    }

    func call(
        capability: CapabilityDeclaration, method: CapabilityDeclaration.Method, params: JSONValue,
        secrets: [String: String]
    ) async -> Result<JSONValue, CapabilityFailure> {
        guard case .http(let baseURL, let headers, let timeoutMs) = capability.handler else {
            return .failure(
                CapabilityFailure(
                    .handlerError, "capability '\(capability.name)' is not an http capability",
                    hint: "this is a bug in the engine: report it"))
        }
        let request: Request
        switch Self.request(
            route: method.http, methodName: method.name, baseURL: baseURL, headers: headers, params: params,
            secrets: secrets)
        {
        case .success(let built): request = built
        case .failure(let failure): return .failure(failure)
        }
        return await Self.perform(request, timeoutMs: timeoutMs)
    }

    func stop() async {}
}

// MARK: Building the request

extension HTTPCapabilityHandler {
    /// The request a call sends: `route` (default `POST /<methodName>`) with each `{name}` of its path replaced by
    /// the URL-encoded param `name`; the other params become the query (GET, DELETE) or the JSON body.
    static func request(
        route: CapabilityDeclaration.HTTPRoute?, methodName: String, baseURL: String,
        headers: [(name: String, value: String)], params: JSONValue, secrets: [String: String]
    ) -> Result<Request, CapabilityFailure> {
        let route = route ?? CapabilityDeclaration.HTTPRoute(method: "POST", path: "/" + methodName)
        let hasBody = !["GET", "DELETE"].contains(route.method)
        var remaining: [String: JSONValue]
        switch params {
        case .object(let members): remaining = members
        case .null: remaining = [:]
        default:
            // A body method may send any JSON value as it is; everything else needs named params.
            guard hasBody, !route.path.contains("{") else {
                return .failure(
                    CapabilityFailure(
                        .invalidParams,
                        "\(route.method) \(route.path) takes an object of params, got \(params.typeName)",
                        hint: "call the method with an object, e.g. {\"id\": 42}"))
            }
            remaining = [:]
        }

        var path = ""
        var rest = Substring(route.path)
        while let open = rest.firstIndex(of: "{") {
            guard let close = rest[open...].firstIndex(of: "}") else { break }
            path += rest[..<open]
            let name = String(rest[rest.index(after: open)..<close])
            guard let value = remaining.removeValue(forKey: name) else {
                return .failure(
                    CapabilityFailure(
                        .invalidParams, "\(route.method) \(route.path) needs the param '\(name)'",
                        hint: "pass \(name) in the call's params, e.g. {\"\(name)\": …}"))
            }
            guard let text = pathText(value) else {
                return .failure(
                    CapabilityFailure(
                        .invalidParams,
                        "the param '\(name)' goes into the path \(route.path), so it must be a string, number or boolean, got \(value.typeName)",
                        hint: "pass \(name) as a string or a number"))
            }
            path += percentEncoded(text)
            rest = rest[rest.index(after: close)...]
        }
        path += rest

        var base = Substring(baseURL)
        while base.hasSuffix("/") { base = base.dropLast() }
        var url = String(base) + path
        var body: [UInt8]?
        if hasBody {
            if case .object = params {
                body = JSONValue.object(remaining).encodedBytes()
            } else if params.isNull {
                body = Array("{}".utf8)
            } else {
                body = params.encodedBytes()
            }
        } else {
            let query = queryString(remaining)
            if !query.isEmpty { url += (url.contains("?") ? "&" : "?") + query }
        }

        var filled: [Request.Header] = []
        for (name, value) in headers {
            let text = CapabilityDeclaration.fillSecrets(value, values: secrets)
            // A secret holding a line break would otherwise add headers of its own making.
            guard !text.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
                return .failure(
                    CapabilityFailure(
                        .handlerError,
                        "the header '\(name)' holds a line break once its secrets are filled in",
                        hint: "remove the line break from the secret's value on the engine's host"))
            }
            filled.append(Request.Header(name: name, value: text))
        }
        var request = Request(method: route.method, url: url, headers: filled, body: body)
        var defaults = [("Accept", "application/json"), ("User-Agent", "agent-spaces")]
        if hasBody { defaults.append(("Content-Type", "application/json")) }
        for (name, value) in defaults where request.header(name) == nil {
            request.headers.append(Request.Header(name: name, value: value))
        }
        return .success(request)
    }

    /// A path param as text: strings as they are, numbers and booleans as JSON writes them.
    private static func pathText(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): text
        case .number, .bool: value.encoded()
        default: nil
        }
    }

    /// Every byte of the UTF-8 form except RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
    static func percentEncoded(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                output.append(byte)
            default:
                output.append(contentsOf: [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]])
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// The params as a query string, keys sorted: scalars as text, an array of scalars as the key repeated, an
    /// object (or an array holding objects or arrays) as its JSON text. Nulls are left out.
    static func queryString(_ params: [String: JSONValue]) -> String {
        var pairs: [String] = []
        func add(_ key: String, _ value: JSONValue) {
            let text: String
            switch value {
            case .string(let string): text = string
            default: text = value.encoded()
            }
            pairs.append(percentEncoded(key) + "=" + percentEncoded(text))
        }
        for key in params.keys.sorted() {
            switch params[key]! {
            case .null:
                continue
            case .array(let elements)
            where elements.allSatisfy({ $0.arrayValue == nil && $0.objectValue == nil }):
                for element in elements { add(key, element) }
            case let value:
                add(key, value)
            }
        }
        return pairs.joined(separator: "&")
    }
}

// MARK: Performing the request

extension HTTPCapabilityHandler {
    /// Sends `request` and turns the answer into a result or a failure, within `timeoutMs`.
    static func perform(_ request: Request, timeoutMs: Int) async -> Result<JSONValue, CapabilityFailure> {
        let described = "\(request.method) \(request.url)"
        guard let url = URL(string: request.url), url.scheme == "http" || url.scheme == "https" else {
            return .failure(
                CapabilityFailure(
                    .handlerError, "cannot call \(described): not a valid http or https URL",
                    hint: "fix the handler's baseUrl or the method's http.path"))
        }
        var urlRequest = URLRequest(url: url)
        urlRequest.httpMethod = request.method
        urlRequest.timeoutInterval = Double(timeoutMs) / 1000
        for header in request.headers { urlRequest.setValue(header.value, forHTTPHeaderField: header.name) }
        if let body = request.body { urlRequest.httpBody = Data(body) }

        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.httpShouldSetCookies = false
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCredentialStorage = nil
        configuration.timeoutIntervalForRequest = Double(timeoutMs) / 1000
        configuration.timeoutIntervalForResource = Double(timeoutMs) / 1000
        let exchange = HTTPExchange(limit: maxBodyBytes)
        let session = URLSession(configuration: configuration, delegate: exchange, delegateQueue: nil)
        let task = session.dataTask(with: urlRequest)
        // Our own deadline: URLSession's request timeout counts idle time, so a slow trickle could outlast it.
        let watchdog = Task {
            try? await Task.sleep(for: .milliseconds(timeoutMs))
            if !Task.isCancelled {
                exchange.markTimedOut()
                task.cancel()
            }
        }
        let outcome = await exchange.run(task)
        watchdog.cancel()
        session.invalidateAndCancel()

        if outcome.timedOut {
            return .failure(
                CapabilityFailure(
                    .timeout, "\(described) did not answer within \(timeoutMs) ms",
                    hint: "retry later, or raise the handler's timeoutMs if the API is slow"))
        }
        if outcome.tooLarge {
            return .failure(
                CapabilityFailure(
                    .resultTooLarge, "the answer of \(described) is larger than \(maxBodyBytes >> 20) MiB",
                    hint: "ask for less (filter or page the request)"))
        }
        if let error = outcome.error {
            let nsError = error as NSError
            if nsError.domain == NSURLErrorDomain, nsError.code == NSURLErrorTimedOut {
                return .failure(
                    CapabilityFailure(
                        .timeout, "\(described) did not answer within \(timeoutMs) ms",
                        hint: "retry later, or raise the handler's timeoutMs if the API is slow"))
            }
            return .failure(
                CapabilityFailure(
                    .handlerError, "\(described) failed: \(describe(nsError))",
                    hint: "check that the API at the handler's baseUrl is reachable from the engine's host"))
        }
        guard let response = outcome.response else {
            return .failure(
                CapabilityFailure(
                    .handlerError, "\(described) failed: no HTTP answer",
                    hint: "check that the handler's baseUrl is an HTTP API"))
        }
        return result(
            status: response.statusCode, location: response.value(forHTTPHeaderField: "Location"),
            body: outcome.body, described: described)
    }

    /// The result of an answer: a 2xx body as JSON (or as a string when it is not JSON, `null` when empty); any
    /// other status a failure that quotes the start of the body.
    static func result(status: Int, location: String?, body: [UInt8], described: String)
        -> Result<JSONValue, CapabilityFailure>
    {
        switch status {
        case 200..<300:
            if body.isEmpty { return .success(.null) }
            if let value = try? JSONValue.parse(body) { return .success(value) }
            return .success(.string(String(decoding: body, as: UTF8.self)))
        case 300..<400:
            return .failure(
                CapabilityFailure(
                    .handlerError,
                    "HTTP \(status) from \(described): a redirect to \(location ?? "(no Location header)"), which is not followed",
                    hint:
                        "point the handler's baseUrl (or the method's http.path) at the final address; redirects are not followed so that secret headers reach only the declared host"
                ))
        default:
            let quoted = String(String(decoding: body, as: UTF8.self).prefix(quotedBodyCharacters))
            let hint =
                switch status {
                case 401, 403: "the API refused the credentials: check the secrets in the handler's headers"
                case 404: "check the params that form the path, and the method's http route"
                case 400..<500: "the API rejected the request: check the params against the API's documentation"
                default: "the API failed; retry later, or check the service behind the handler's baseUrl"
                }
            return .failure(CapabilityFailure(.handlerError, "HTTP \(status) from \(described): \(quoted)", hint: hint))
        }
    }

    /// The most specific description an error carries (URLSession on Linux puts curl's under the underlying error).
    private static func describe(_ error: NSError) -> String {
        if let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError,
            let text = underlying.userInfo[NSLocalizedDescriptionKey] as? String, !text.isEmpty
        {
            return text
        }
        if let text = error.userInfo[NSLocalizedDescriptionKey] as? String, !text.isEmpty { return text }
        return "\(error.domain) error \(error.code)"
    }
}

/// One request's session delegate: refuses redirects, collects the body up to a limit, and hands the outcome to
/// the call waiting in ``run(_:)``.
///
/// `@unchecked Sendable`: URLSession calls it on its delegate queue while the call waits on another thread; all
/// of its mutable state is in `state`, a `Mutex`.
private final class HTTPExchange: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    struct Outcome {
        var response: HTTPURLResponse?
        var body: [UInt8] = []
        var error: (any Error)?
        var tooLarge = false
        var timedOut = false
    }

    private struct State {
        var outcome = Outcome()
        var finished = false
        var waiter: CheckedContinuation<Outcome, Never>?
    }

    private let limit: Int
    private let state = Mutex(State())

    init(limit: Int) { self.limit = limit }

    /// Starts `task` and waits until it completes (or is cancelled).
    func run(_ task: URLSessionDataTask) async -> Outcome {
        await withCheckedContinuation { continuation in
            let finished = state.withLock { state -> Outcome? in
                if state.finished { return state.outcome }
                state.waiter = continuation
                return nil
            }
            if let finished {
                continuation.resume(returning: finished)
            } else {
                task.resume()
            }
        }
    }

    func markTimedOut() { state.withLock { $0.outcome.timedOut = true } }

    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping @Sendable (URLSession.ResponseDisposition) -> Void
    ) {
        let tooLarge = response.expectedContentLength > Int64(limit)
        state.withLock { state in
            state.outcome.response = response as? HTTPURLResponse
            if tooLarge { state.outcome.tooLarge = true }
        }
        completionHandler(tooLarge ? .cancel : .allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let overflow = state.withLock { state -> Bool in
            if state.outcome.tooLarge { return true }
            guard state.outcome.body.count + data.count <= limit else {
                state.outcome.tooLarge = true
                state.outcome.body = []
                return true
            }
            state.outcome.body.append(contentsOf: data)
            return false
        }
        if overflow { dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        let (waiter, outcome) = state.withLock { state in
            state.finished = true
            if state.outcome.response == nil { state.outcome.response = task.response as? HTTPURLResponse }
            state.outcome.error = error
            defer { state.waiter = nil }
            return (state.waiter, state.outcome)
        }
        waiter?.resume(returning: outcome)
    }
}
