import NIOCore

/// One message on the wire: `[length: UInt32 BE][request id: UInt32 BE][body]`, where length
/// counts the id and the body. Replies carry their request's id; pushes to workers carry 0.
package struct Frame: Sendable, Equatable {
    /// The request this frame answers or asks; 0 for unsolicited pushes.
    package var requestID: UInt32
    /// The encoded message (see ``MessageCoding``).
    package var body: ByteBuffer

    /// Creates a frame.
    package init(requestID: UInt32, body: ByteBuffer) {
        self.requestID = requestID
        self.body = body
    }

    /// The largest frame a peer accepts, in bytes (64 MiB).
    package static let maximumLength = 64 * 1024 * 1024
    /// Bytes before the body.
    package static let headerLength = 8
}
