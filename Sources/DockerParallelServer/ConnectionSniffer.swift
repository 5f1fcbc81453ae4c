import DockerParallelCore
import DockerParallelWire
import Logging
import NIOCore
import NIOSSL

/// The first handler of every connection: reads its first byte and sets the connection up for
/// what it speaks. A TLS handshake gets TLS, then a second sniffer for what comes inside; HTTP
/// (a first byte that is a capital letter, as every method is) goes to the HTTP side; anything
/// else is the binary stream. Plain text is served to peers on this machine (its unix socket,
/// loopback), and to others only with the plain-text opt-out; they get an answer that says to use
/// TLS, and are closed.
final class ConnectionSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The first byte of a TLS handshake record.
    static let tlsHandshake: UInt8 = 0x16

    private let tls: NIOSSLContext?
    /// Whether the bytes come from inside TLS already.
    private let secure: Bool
    private let allowsPlainTextOffLoopback: Bool
    private let http: HTTPFace?
    private let logger: Logger
    /// Adds the binary stream's handlers (frame codec, broker connection) at the pipeline's end,
    /// after the sniffer, the connection's last handler until then.
    private let addStream: (ChannelPipeline.SynchronousOperations) throws -> Void

    init(
        tls: NIOSSLContext?, secure: Bool = false, allowsPlainTextOffLoopback: Bool, http: HTTPFace?, logger: Logger,
        addStream: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void
    ) {
        self.tls = tls
        self.secure = secure
        self.allowsPlainTextOffLoopback = allowsPlainTextOffLoopback
        self.http = http
        self.logger = logger
        self.addStream = addStream
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        let pipeline = context.pipeline.syncOperations
        let allowed = secure || Self.isLocal(context.channel.remoteAddress) || allowsPlainTextOffLoopback
        do {
            if first == Self.tlsHandshake, !secure, let tls {
                try pipeline.addHandler(NIOSSLServerHandler(context: tls))
                try pipeline.addHandler(ConnectionSniffer(
                    tls: nil, secure: true, allowsPlainTextOffLoopback: allowsPlainTextOffLoopback, http: http, logger: logger,
                    addStream: addStream))
            } else if (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(first), let http {
                guard allowed else { return refusePlainHTTP(context: context) }
                http.adopt(context: context, buffered: buffer, sniffer: self)
                return
            } else if allowed {
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

    /// Answers plain HTTP from off this machine with why it is refused, then closes.
    private func refusePlainHTTP(context: ChannelHandlerContext) {
        let peer = context.channel.remoteAddress.map { "\($0)" } ?? "a peer"
        logger.warning("refused plain-text HTTP from off this machine", metadata: ["peer": "\(peer)"])
        let body = #"{"error":{"message":"this server speaks HTTPS off its machine: use https:// and trust the cluster's certificate authority","status":403}}"#
        let response = "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n\(body)"
        context.writeAndFlush(NIOAny(ByteBuffer(string: response)), promise: nil)
        context.close(promise: nil)
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
