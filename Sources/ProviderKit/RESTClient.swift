import Foundation
import Logging
import NIOHTTP1

/// JSON requests to one platform's REST API over a ``HTTPTransport``, retried by a ``RetryPolicy``;
/// answers other than 2xx become a ``RESTError`` carrying the platform's status and message.
///
/// ```swift
/// let client = RESTClient(transport: transport, configuration: .init(platform: "the Docker daemon", pathPrefix: "/v1.41"))
/// let containers = try await client.json([ContainerSummary].self, .GET, "/containers/json", query: [QueryItem("all", "true")])
/// ```
package struct RESTClient: Sendable {
    /// What the client adds to every request and how it reads errors.
    package struct Configuration: Sendable {
        /// The platform, as messages name it ("the Docker daemon").
        package var platform: String
        /// Prepended to every path (an API version such as `/v1.41`).
        package var pathPrefix: String
        /// Headers every request carries.
        package var headers: HTTPHeaders
        /// When to send a request again.
        package var retry: RetryPolicy
        /// The platform's message in an error body; `nil` to use the body's text.
        package var errorMessage: @Sendable (Data) -> String?

        /// Creates a configuration.
        /// - Parameters:
        ///   - platform: The platform's name for messages.
        ///   - pathPrefix: Default none.
        ///   - headers: Default none.
        ///   - retry: Default ``RetryPolicy/init(maxAttempts:baseDelay:maxDelay:isThrottling:)``'s defaults.
        ///   - errorMessage: Default ``JSONModels/message(in:)``.
        package init(
            platform: String, pathPrefix: String = "", headers: HTTPHeaders = [:], retry: RetryPolicy = RetryPolicy(),
            errorMessage: @escaping @Sendable (Data) -> String? = JSONModels.message(in:)
        ) {
            self.platform = platform
            self.pathPrefix = pathPrefix
            self.headers = headers
            self.retry = retry
            self.errorMessage = errorMessage
        }
    }

    /// Where requests go.
    package let transport: any HTTPTransport
    /// The client's settings.
    package let configuration: Configuration
    private let random: @Sendable () -> Double
    private let sleep: @Sendable (Duration) async throws -> Void
    private let logger: Logger?

    /// Creates a client.
    /// - Parameters:
    ///   - transport: Where requests go.
    ///   - configuration: The platform's name, path prefix, headers and retry policy.
    ///   - logger: Where retries are logged at debug level (default: nowhere).
    ///   - random: Draws in `0..<1` for the backoff's jitter (tests pass fixed ones).
    ///   - sleep: Waits between attempts (tests may record instead).
    package init(
        transport: any HTTPTransport, configuration: Configuration, logger: Logger? = nil,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.transport = transport
        self.configuration = configuration
        self.logger = logger
        self.random = random
        self.sleep = sleep
    }

    /// Sends a request, retrying as the policy says, and returns a 2xx answer.
    /// - Parameter request: Its path is relative to ``Configuration/pathPrefix``.
    /// - Throws: ``RESTError`` `.unexpectedStatus` with the platform's message for any other
    ///   answer, `.connectionFailed` when none came.
    @discardableResult
    package func send(_ request: RESTRequest) async throws -> RESTResponse {
        let response = try await sendAllowingAnyStatus(request)
        guard response.isSuccess else {
            let text = configuration.errorMessage(response.body) ?? String(decoding: response.body, as: UTF8.self)
            throw RESTError(
                .unexpectedStatus, platform: configuration.platform, request: "\(request.method.rawValue) \(request.path)",
                status: response.status, message: text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return response
    }

    /// Sends a request, retrying as the policy says, and returns the last answer whatever its status.
    /// - Throws: ``RESTError`` `.connectionFailed` when no answer came.
    package func sendAllowingAnyStatus(_ request: RESTRequest) async throws -> RESTResponse {
        var prepared = request
        prepared.path = configuration.pathPrefix + request.path
        for (name, value) in configuration.headers where !prepared.headers.contains(name: name) {
            prepared.headers.add(name: name, value: value)
        }
        var attempt = 1
        while true {
            let outcome: RetryPolicy.Outcome
            let failure: RESTError?
            do {
                let response = try await transport.send(prepared)
                outcome = .response(response)
                failure = nil
            } catch let error as RESTError where error.code == .connectionFailed {
                outcome = .connectionFailed
                failure = error
            }
            guard let delay = configuration.retry.delay(
                afterAttempt: attempt, outcome: outcome, isIdempotent: prepared.isIdempotent, randomUnit: random())
            else {
                if case .response(let response) = outcome { return response }
                throw failure ?? RESTError(.connectionFailed, platform: configuration.platform, request: prepared.summary, message: "no answer")
            }
            logger?.debug(
                "retrying", metadata: ["request": "\(prepared.summary)", "attempt": "\(attempt)", "delay": "\(delay)"])
            try await sleep(delay)
            attempt += 1
        }
    }

    /// Sends a request with an optional JSON body and returns the 2xx answer's body.
    /// - Throws: ``RESTError``.
    @discardableResult
    package func data(
        _ method: HTTPMethod, _ path: String, query: [QueryItem] = [], json: (any Encodable & Sendable)? = nil,
        timeout: Duration = .seconds(60), isIdempotent: Bool? = nil
    ) async throws -> Data {
        var request = RESTRequest(method, path, query: query, timeout: timeout, isIdempotent: isIdempotent)
        if let json {
            request.body = try JSONModels.encode(json, platform: configuration.platform, request: "\(method.rawValue) \(path)")
            request.headers.add(name: "Content-Type", value: "application/json")
        }
        return try await send(request).body
    }

    /// Sends a request with an optional JSON body and decodes the 2xx answer's JSON.
    /// - Throws: ``RESTError``, `.decodingFailed` naming the path and the platform when the body
    ///   is not a `T`.
    package func json<T: Decodable>(
        _ type: T.Type, _ method: HTTPMethod, _ path: String, query: [QueryItem] = [],
        json body: (any Encodable & Sendable)? = nil, timeout: Duration = .seconds(60), isIdempotent: Bool? = nil
    ) async throws -> T {
        let data = try await data(method, path, query: query, json: body, timeout: timeout, isIdempotent: isIdempotent)
        return try JSONModels.decode(T.self, from: data, platform: configuration.platform, request: "\(method.rawValue) \(path)")
    }
}
