import DockerParallelCore
import Foundation
import NIOCore
import NIOFoundationCompat

/// Splits a byte stream into ``Frame``s, rejecting frames over ``Frame/maximumLength``.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    private let maximumLength: Int

    /// Creates a decoder.
    public init(maximumLength: Int = Frame.maximumLength) {
        self.maximumLength = maximumLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard length >= 4, Int(length) <= maximumLength else {
            throw DockerParallelError(
                .protocolViolation,
                "frame length \(length) is outside 4...\(maximumLength) bytes; is this a DockerParallel peer?")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let requestID = buffer.readInteger(as: UInt32.self),
              let body = buffer.readData(length: Int(length) - 4) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(Frame(requestID: requestID, body: body)))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Writes ``Frame``s with their length prefix.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame

    /// Creates an encoder.
    public init() {}

    public func encode(data: Frame, out: inout ByteBuffer) throws {
        out.writeInteger(UInt32(data.body.count + 4))
        out.writeInteger(data.requestID)
        out.writeBytes(data.body)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds the frame decoder and encoder.
    public func addFrameCodec(maximumLength: Int = Frame.maximumLength) throws {
        try addHandler(ByteToMessageHandler(FrameDecoder(maximumLength: maximumLength)))
        try addHandler(MessageToByteHandler(FrameEncoder()))
    }
}
