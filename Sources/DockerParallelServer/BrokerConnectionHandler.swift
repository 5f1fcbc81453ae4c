import DockerParallelCore
import DockerParallelWire
import Logging
import NIOCore

/// One connection: decodes each frame and hands it to the broker, which checks the hello and
/// answers.
///
/// A frame that cannot be read, or a wrong password, gets an error frame and a closed connection;
/// the broker and its other peers are not touched.
final class BrokerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private let broker: Broker
    private let logger: Logger
    private var peer: PeerID?

    init(broker: Broker, logger: Logger) {
        self.broker = broker
        self.logger = logger
    }

    /// Added once the connection's first bytes said what it speaks: it is active already.
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive, peer == nil { peer = broker.opened(context.channel) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if peer == nil { peer = broker.opened(context.channel) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let peer else { return }
        let frame = unwrapInboundIn(data)
        let message: ClientMessage
        do {
            message = try MessageCoding.decode(ClientMessage.self, from: frame.body)
        } catch {
            broker.unreadable(from: peer, requestID: frame.requestID, code: .protocolViolation, message: "\(error)")
            return
        }
        broker.received(message, requestID: frame.requestID, from: peer)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let peer {
            broker.closed(peer)
            logger.trace("connection closed", metadata: ["peer": "\(peer)"])
        }
        peer = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? DockerParallelError, let peer {
            broker.unreadable(from: peer, requestID: 0, code: error.code, message: error.message)
        } else {
            context.close(promise: nil)
        }
    }
}
