/// How a ``RESTClient`` reaches a platform: one request in, one response out.
///
/// The seam between the providers' mapping code and the network: ``AsyncHTTPTransport`` sends
/// over AsyncHTTPClient, ``RecordedTransport`` answers from recorded exchanges in tests.
package protocol HTTPTransport: Sendable {
    /// Sends a request and returns the platform's answer, whatever its status.
    /// - Throws: ``RESTError`` with the code `.connectionFailed` when no answer came (no
    ///   connection, a lost one, the request's timeout).
    func send(_ request: RESTRequest) async throws -> RESTResponse
}
