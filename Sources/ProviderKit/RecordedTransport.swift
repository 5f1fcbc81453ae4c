import Foundation
import NIOHTTP1

/// A transport that answers from recorded exchanges, for tests that run without the platform.
///
/// A request takes the first unused exchange with the same method, path and query (an exchange
/// without a query matches any); so exchanges answer in the order they were recorded, while
/// requests a provider sends concurrently may come in any order. A request that matches none
/// fails with a message listing what was expected; ``verify()`` then reports it, and every
/// exchange left unused, even when the code under test swallowed the failure.
package actor RecordedTransport: HTTPTransport {
    /// One recorded request and its answer.
    package struct Exchange: Sendable {
        /// The request's method.
        package var method: HTTPMethod
        /// The request's path, prefix included; ending in `*`, any path that starts with what
        /// comes before it (a name the code under test draws at random).
        package var path: String
        /// The request's query in any order, or `nil` to match any query.
        package var query: Set<QueryItem>?
        /// The answer.
        package var response: RESTResponse
        /// Checks the request further (its body, headers); throws to fail it.
        package var check: (@Sendable (RESTRequest) throws -> Void)?

        /// Records an exchange.
        /// - Parameters:
        ///   - method: The method.
        ///   - path: The path, prefix included.
        ///   - query: The query items, or `nil` for any.
        ///   - status: The answer's status (default 200).
        ///   - headers: The answer's headers.
        ///   - body: The answer's body.
        ///   - check: Checks the request further.
        package init(
            _ method: HTTPMethod, _ path: String, query: [QueryItem]? = [], status: Int = 200, headers: HTTPHeaders = [:],
            body: Data = Data(), check: (@Sendable (RESTRequest) throws -> Void)? = nil
        ) {
            self.method = method
            self.path = path
            self.query = query.map(Set.init)
            self.response = RESTResponse(status: status, headers: headers, body: body)
            self.check = check
        }

        /// Records an exchange whose answer is JSON text.
        package static func json(
            _ method: HTTPMethod, _ path: String, query: [QueryItem]? = [], status: Int = 200, _ json: String,
            check: (@Sendable (RESTRequest) throws -> Void)? = nil
        ) -> Exchange {
            Exchange(
                method, path, query: query, status: status, headers: ["Content-Type": "application/json"], body: Data(json.utf8),
                check: check)
        }

        func matches(_ request: RESTRequest) -> Bool {
            let pathMatches = path.hasSuffix("*") ? request.path.hasPrefix(path.dropLast()) : path == request.path
            return method == request.method && pathMatches && (query.map { $0 == Set(request.query) } ?? true)
        }

        var summary: String {
            let items = query.map { $0.map(\.description).sorted().joined(separator: "&") } ?? "*"
            return "\(method.rawValue) \(path)?\(items)"
        }
    }

    /// A request no exchange answered, or one an exchange's check refused.
    package struct Mismatch: Error, Sendable, CustomStringConvertible {
        /// What went wrong.
        package var description: String
    }

    private var exchanges: [Exchange]
    private var used: [Bool]
    private var failures: [String] = []
    /// Every request received, in order.
    package private(set) var requests: [RESTRequest] = []

    /// Creates a transport that answers with these exchanges.
    package init(_ exchanges: [Exchange]) {
        self.exchanges = exchanges
        self.used = Array(repeating: false, count: exchanges.count)
    }

    /// Adds exchanges after the recorded ones.
    package func append(_ more: [Exchange]) {
        exchanges += more
        used += Array(repeating: false, count: more.count)
    }

    /// Answers with the first unused exchange that matches.
    /// - Throws: ``Mismatch`` when none does, or when the exchange's check refuses the request.
    package func send(_ request: RESTRequest) async throws -> RESTResponse {
        requests.append(request)
        guard let index = exchanges.indices.first(where: { !used[$0] && exchanges[$0].matches(request) }) else {
            let unused = exchanges.indices.filter { !used[$0] }.map { exchanges[$0].summary }
            let problem = "unexpected request \(request.summary); the unused exchanges are: "
                + (unused.isEmpty ? "none" : unused.joined(separator: ", "))
            failures.append(problem)
            throw Mismatch(description: problem)
        }
        used[index] = true
        do {
            try exchanges[index].check?(request)
        } catch {
            let problem = "the request \(request.summary) failed its check: \(error)"
            failures.append(problem)
            throw Mismatch(description: problem)
        }
        return exchanges[index].response
    }

    /// The requests received with this method and path, in order.
    package func received(_ method: HTTPMethod, _ path: String) -> [RESTRequest] {
        requests.filter { $0.method == method && $0.path == path }
    }

    /// Checks that every request was expected and every exchange was used.
    /// - Throws: ``Mismatch`` listing each unexpected request and each unused exchange.
    package func verify() throws {
        let unused = exchanges.indices.filter { !used[$0] }.map { "unused exchange \(exchanges[$0].summary)" }
        let problems = failures + unused
        guard problems.isEmpty else { throw Mismatch(description: problems.joined(separator: "\n")) }
    }
}
