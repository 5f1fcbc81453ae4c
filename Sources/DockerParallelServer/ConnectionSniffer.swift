import DockerParallelCore
import DockerParallelWire
import Logging
import NIOCore
import NIOSSL

/// The first handler of every connection: reads its first byte and sets the connection up for
/// what it speaks. A TLS handshake gets TLS and then the binary stream; the binary stream in
/// plain text is served to peers on this machine (its unix socket, loopback), and to others only
/// with the plain-text opt-out; they get an error frame that says to use TLS, and are closed.
final class ConnectionSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The first byte of a TLS handshake record.
    static let tlsHandshake: UInt8 = 0x16

    private let tls: NIOSSLContext?
    private let allowsPlainTextOffLoopback: Bool
    private let logger: Logger
    /// Adds the binary stream's handlers (frame codec, broker connection) at the pipeline's end,
    /// after the sniffer, the connection's only handler until then.
    private let addStream: (ChannelPipeline.SynchronousOperations) throws -> Void

    init(
        tls: NIOSSLContext?, allowsPlainTextOffLoopback: Bool, logger: Logger,
        addStream: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void
    ) {
        self.tls = tls
        self.allowsPlainTextOffLoopback = allowsPlainTextOffLoopback
        self.logger = logger
        self.addStream = addStream
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        let pipeline = context.pipeline.syncOperations
        do {
            if first == Self.tlsHandshake, let tls {
                try pipeline.addHandler(NIOSSLServerHandler(context: tls))
                try addStream(pipeline)
            } else if Self.isLocal(context.channel.remoteAddress) || allowsPlainTextOffLoopback {
                try addStream(pipeline)
            } else {
                refusePlainText(context: context, requestID: Self.requestID(of: buffer))
                return
            }
        } catch {
            logger.warning("cannot set up a connection", metadata: ["error": "\(error)"])
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        pipeline.removeHandler(context: context, promise: nil)
    }

    /// Answers a plain-text peer off this machine with why it is refused, then closes.
    private func refusePlainText(context: ChannelHandlerContext, requestID: UInt32) {
        let peer = context.channel.remoteAddress.map { "\($0)" } ?? "a peer"
        logger.warning("refused a plain-text connection from off this machine", metadata: ["peer": "\(peer)"])
        let message = ServerMessage.error(
            code: .authenticationFailed,
            message: tls == nil
                ? "this server serves no plain text off its machine: connect from its machine, or start it with TLS"
                : "this server speaks TLS off its machine: connect with TLS, trusting the cluster's certificate authority (a DockerParallel client does when the endpoint says `tls`)")
        var frames = ByteBuffer()
        if let body = try? MessageCoding.encode(message) {
            frames.writeInteger(UInt32(body.readableBytes + 4))
            frames.writeInteger(requestID)
            frames.writeImmutableBuffer(body)
        }
        context.writeAndFlush(NIOAny(frames), promise: nil)
        context.close(promise: nil)
    }

    /// The request id of the frame a buffer starts with (the hello's), or 0.
    private static func requestID(of buffer: ByteBuffer) -> UInt32 {
        buffer.getInteger(at: buffer.readerIndex + 4, as: UInt32.self) ?? 0
    }

    /// Whether a peer is on this machine: the unix socket, or loopback.
    static func isLocal(_ address: SocketAddress?) -> Bool {
        guard let address else { return false }
        switch address {
        case .unixDomainSocket: return true
        case .v4, .v6: return address.ipAddress.map(TransportSecurity.isLoopback) ?? false
        }
    }
}
