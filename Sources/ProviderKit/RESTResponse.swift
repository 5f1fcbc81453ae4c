import Foundation
import NIOHTTP1

/// What a platform answered: status, headers and the whole body.
package struct RESTResponse: Sendable, Equatable {
    /// The HTTP status code.
    package var status: Int
    /// The response's headers.
    package var headers: HTTPHeaders
    /// The body.
    package var body: Data

    /// Creates a response.
    package init(status: Int, headers: HTTPHeaders = [:], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// Whether the status is 2xx.
    package var isSuccess: Bool { (200..<300).contains(status) }
}
