import Foundation
import NIOHTTP1

/// One request to a platform's REST API, before it is sent: what a ``HTTPTransport`` carries.
package struct RESTRequest: Sendable, Equatable {
    /// The HTTP method.
    package var method: HTTPMethod
    /// The path from the API's root, starting with `/` (a version prefix included).
    package var path: String
    /// Query items, in the order they are sent; a name may repeat.
    package var query: [QueryItem]
    /// Headers to send besides the transport's own.
    package var headers: HTTPHeaders
    /// The body, if any.
    package var body: Data?
    /// How long the request may take, connecting included.
    package var timeout: Duration
    /// Whether sending it twice does no more than sending it once: only such requests are
    /// retried after a server error or a lost connection.
    package var isIdempotent: Bool

    /// Creates a request.
    /// - Parameters:
    ///   - method: The HTTP method.
    ///   - path: The path, starting with `/`.
    ///   - query: Query items in order.
    ///   - headers: Extra headers.
    ///   - body: The body.
    ///   - timeout: Default 60 s.
    ///   - isIdempotent: Default: true for every method but POST and PATCH.
    package init(
        _ method: HTTPMethod, _ path: String, query: [QueryItem] = [], headers: HTTPHeaders = [:], body: Data? = nil,
        timeout: Duration = .seconds(60), isIdempotent: Bool? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.isIdempotent = isIdempotent ?? !(method == .POST || method == .PATCH)
    }

    /// The query as it goes on the URL, `?` included, or an empty string: percent-encoded, with
    /// `+` encoded too (servers read a bare `+` as a space).
    package var encodedQuery: String {
        guard !query.isEmpty else { return "" }
        var components = URLComponents()
        components.queryItems = query.map { URLQueryItem(name: $0.name, value: $0.value) }
        guard let text = components.percentEncodedQuery else { return "" }
        return "?" + text.replacingOccurrences(of: "+", with: "%2B")
    }

    /// `METHOD /path?query`, for messages.
    package var summary: String { "\(method.rawValue) \(path)\(encodedQuery)" }
}

/// One `name=value` pair of a URL's query.
package struct QueryItem: Sendable, Hashable, CustomStringConvertible {
    /// The name.
    package var name: String
    /// The value.
    package var value: String

    /// Creates a query item.
    package init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    /// Query items from a dictionary, sorted by name so that a request is always spelled the same.
    package static func sorted(_ items: [String: String]) -> [QueryItem] {
        items.sorted { $0.key < $1.key }.map { QueryItem($0.key, $0.value) }
    }

    /// `name=value`, not encoded.
    package var description: String { "\(name)=\(value)" }
}
