import Foundation

/// One message on the wire: `[length: UInt32 BE][request id: UInt32 BE][JSON body]`, where length
/// counts the id and the body. Replies carry their request's id; pushes to workers carry 0.
public struct Frame: Sendable, Equatable {
    /// The request this frame answers or asks; 0 for unsolicited pushes.
    public var requestID: UInt32
    /// The encoded message.
    public var body: Data

    /// Creates a frame.
    public init(requestID: UInt32, body: Data) {
        self.requestID = requestID
        self.body = body
    }

    /// The largest frame a peer accepts, in bytes (64 MiB).
    public static let maximumLength = 64 * 1024 * 1024
    /// Bytes before the body.
    public static let headerLength = 8
}

/// Encodes and decodes message bodies.
public enum MessageCoding {
    /// Encodes a message.
    public static func encode<Message: Encodable>(_ message: Message) throws -> Data {
        try JSONEncoder().encode(message)
    }

    /// Decodes a message, turning any failure into a `.protocolViolation` that says what was wrong.
    public static func decode<Message: Decodable>(_ type: Message.Type, from body: Data) throws -> Message {
        do {
            return try JSONDecoder().decode(Message.self, from: body)
        } catch {
            throw DockerParallelError(.protocolViolation, "malformed \(Message.self) (\(body.count) bytes): \(error)")
        }
    }
}
