import DockerParallelCore
import Foundation
import NIOCore

/// Splits a byte stream into ``Frame``s, rejecting frames over ``Frame/maximumLength``.
package struct FrameDecoder: ByteToMessageDecoder {
    package typealias InboundOut = Frame

    private let maximumLength: Int

    /// Creates a decoder.
    package init(maximumLength: Int = Frame.maximumLength) {
        self.maximumLength = maximumLength
    }

    package mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard length >= 4, Int(length) <= maximumLength else {
            throw DockerParallelError(
                .protocolViolation,
                "frame length \(length) is outside 4...\(maximumLength) bytes; is this a DockerParallel peer?")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let requestID = buffer.readInteger(as: UInt32.self),
              let body = buffer.readSlice(length: Int(length) - 4) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(Frame(requestID: requestID, body: body)))
        return .continue
    }

    package mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Writes ``Frame``s with their length prefix.
package struct FrameEncoder: MessageToByteEncoder {
    package typealias OutboundIn = Frame

    /// Creates an encoder.
    package init() {}

    package func encode(data: Frame, out: inout ByteBuffer) throws {
        out.writeInteger(UInt32(data.body.readableBytes + 4))
        out.writeInteger(data.requestID)
        out.writeImmutableBuffer(data.body)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds the frame decoder and encoder.
    package func addFrameCodec(maximumLength: Int = Frame.maximumLength) throws {
        try addHandler(ByteToMessageHandler(FrameDecoder(maximumLength: maximumLength)))
        try addHandler(MessageToByteHandler(FrameEncoder()))
    }
}
