import DockerParallelCore
import Foundation
import NIOCore
import NIOFoundationCompat

/// Encodes and decodes message bodies: the frequent messages in their binary layout
/// (``WireMessage``), the others as JSON.
package enum MessageCoding {
    /// Encodes a message: its binary layout when it has one, JSON otherwise.
    package static func encode<Message: WireMessage>(_ message: Message) throws -> ByteBuffer {
        var writer = WireWriter()
        if message.encodeBinary(into: &writer) { return writer.buffer }
        return try JSONEncoder().encodeAsByteBuffer(message, allocator: ByteBufferAllocator())
    }

    /// Decodes a message written by ``encode(_:)``.
    /// - Throws: `.protocolViolation` saying what was wrong.
    package static func decode<Message: WireMessage>(_ type: Message.Type, from body: ByteBuffer) throws -> Message {
        guard let first = body.getInteger(at: body.readerIndex, as: UInt8.self), first != UInt8(ascii: "{") else {
            do {
                return try JSONDecoder().decode(Message.self, from: body)
            } catch {
                throw DockerParallelError(.protocolViolation, "malformed \(Message.self) (\(body.readableBytes) bytes): \(error)")
            }
        }
        return try WireReader.read(body) { reader in
            _ = try reader.byte()
            let message = try Message.decodeBinary(tag: first, from: &reader)
            guard reader.isAtEnd else { throw WireReader.malformed("\(Message.self) has bytes after its end") }
            return message
        }
    }
}
