/// A platform's REST call that failed: the platform's status and message, or why no answer came.
package struct RESTError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's name.
        package let name: String
        /// Creates a code.
        package init(_ name: String) { self.name = name }
        /// The code's name.
        package var description: String { name }

        /// The platform answered with a status other than 2xx.
        package static let unexpectedStatus = Code("unexpectedStatus")
        /// No answer came: no connection, a lost one, or a timeout.
        package static let connectionFailed = Code("connectionFailed")
        /// A body could not be decoded as the expected JSON.
        package static let decodingFailed = Code("decodingFailed")
        /// A request body could not be encoded.
        package static let encodingFailed = Code("encodingFailed")
    }

    /// The kind of failure.
    package var code: Code
    /// The platform, as people call it ("the Docker daemon", "the Kubernetes API server").
    package var platform: String
    /// `METHOD /path` of the request.
    package var request: String
    /// The status, when the platform answered.
    package var status: Int?
    /// The platform's own message, or what went wrong.
    package var message: String
    /// The error that caused this one, if any.
    package var underlying: (any Error & Sendable)?

    /// Creates an error.
    package init(
        _ code: Code, platform: String, request: String, status: Int? = nil, message: String,
        underlying: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.platform = platform
        self.request = request
        self.status = status
        self.message = message
        self.underlying = underlying
    }

    /// What failed, with the platform's status and message.
    package var description: String {
        switch code {
        case .unexpectedStatus: "\(platform) answered \(status ?? 0): \(message)"
        case .connectionFailed: "cannot reach \(platform) for \(request): \(message)"
        case .decodingFailed: "\(platform)'s answer to \(request) could not be read: \(message)"
        default: "\(platform) (\(request)): \(message)"
        }
    }
}
