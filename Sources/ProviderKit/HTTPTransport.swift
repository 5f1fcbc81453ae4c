import Foundation

/// How a ``RESTClient`` reaches a platform: one request in, one response out.
///
/// The seam between the providers' mapping code and the network: ``AsyncHTTPTransport`` sends
/// over AsyncHTTPClient, ``RecordedTransport`` answers from recorded exchanges in tests.
package protocol HTTPTransport: Sendable {
    /// Sends a request and returns the platform's answer, whatever its status.
    /// - Throws: ``RESTError`` with the code `.connectionFailed` when no answer came (no
    ///   connection, a lost one, the request's timeout).
    func send(_ request: RESTRequest) async throws -> RESTResponse

    /// Sends a request whose answer is a stream of lines (a Kubernetes watch) and returns its
    /// status and headers at once, and its lines as they arrive.
    ///
    /// The default sends the request with ``send(_:)`` and yields the whole body's lines: right
    /// for recorded answers, which are finite.
    /// - Throws: ``RESTError`` `.connectionFailed` when no answer came.
    func streamLines(_ request: RESTRequest) async throws -> StreamedResponse
}

/// An answer whose body arrives line by line.
package struct StreamedResponse: Sendable {
    /// The HTTP status code.
    package var status: Int
    /// The lines of the body, without their line breaks, empty lines left out; the stream ends
    /// when the platform closes it and throws ``RESTError`` `.connectionFailed` when it breaks.
    package var lines: AsyncThrowingStream<Data, any Error>

    /// Creates a streamed answer.
    package init(status: Int, lines: AsyncThrowingStream<Data, any Error>) {
        self.status = status
        self.lines = lines
    }

    /// The lines of a whole body.
    package static func lines(of body: Data) -> AsyncThrowingStream<Data, any Error> {
        AsyncThrowingStream { continuation in
            for line in body.split(separator: UInt8(ascii: "\n")) where !line.isEmpty { continuation.yield(Data(line)) }
            continuation.finish()
        }
    }

    /// All the lines, joined: the body of an answer that was not a stream (an error).
    package func collectedBody(limit: Int = 1 << 20) async throws -> Data {
        var body = Data()
        for try await line in lines {
            body.append(line)
            body.append(UInt8(ascii: "\n"))
            if body.count > limit { break }
        }
        return body
    }
}

extension HTTPTransport {
    /// Sends the request with ``send(_:)`` and yields the whole body's lines.
    package func streamLines(_ request: RESTRequest) async throws -> StreamedResponse {
        let response = try await send(request)
        return StreamedResponse(status: response.status, lines: StreamedResponse.lines(of: response.body))
    }
}
