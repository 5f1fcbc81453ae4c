import DockerParallelCore
import DockerParallelWire
import Logging
import NIOCore

/// One connection: authenticates the first frame, then hands every message to the broker.
///
/// A frame that cannot be read, or a wrong password, gets an error frame and a closed connection;
/// the broker and its other peers are not touched.
final class BrokerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private let broker: Broker
    private let logger: Logger
    private var peerID: UInt64?
    private var rejected = false

    init(broker: Broker, logger: Logger) {
        self.broker = broker
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !rejected else { return }
        let frame = unwrapInboundIn(data)
        let message: ClientMessage
        do {
            message = try MessageCoding.decode(ClientMessage.self, from: frame.body)
        } catch {
            reject(context: context, requestID: frame.requestID, code: .protocolViolation, message: "\(error)")
            return
        }
        guard let peerID else {
            authenticate(context: context, requestID: frame.requestID, message: message)
            return
        }
        if message.isSubmit && broker.committer.isDurable {
            // Backpressure: read nothing more from this peer until its submit is stored (in
            // memory, a submit is taken at once).
            try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        }
        broker.handle(message, requestID: frame.requestID, from: peerID)
    }

    private func authenticate(context: ChannelHandlerContext, requestID: UInt32, message: ClientMessage) {
        guard case .hello(let hello) = message else {
            reject(context: context, requestID: requestID, code: .protocolViolation, message: "the first message must be hello")
            return
        }
        guard broker.configuration.password.matches(hello.password) else {
            logger.debug("rejected a connection with a wrong password", metadata: ["peer": "\(hello.name)"])
            reject(
                context: context, requestID: requestID, code: .authenticationFailed,
                message: "wrong cluster password for '\(broker.configuration.jobQueueName)': use the password of the cluster you connect to")
            return
        }
        guard hello.protocolVersion == Hello.currentProtocolVersion else {
            reject(
                context: context, requestID: requestID, code: .protocolViolation,
                message: "protocol version \(hello.protocolVersion) is not supported (the server speaks \(Hello.currentProtocolVersion)); use the same DockerParallel version for server, workers and client")
            return
        }
        peerID = broker.connect(hello, channel: context.channel)
        logger.debug("peer connected", metadata: ["role": "\(hello.role)", "name": "\(hello.name)"])
        let welcome = Broker.frame(.welcome(leaseDuration: broker.configuration.leaseDuration), requestID: requestID)
        context.writeAndFlush(wrapOutboundOut(welcome), promise: nil)
    }

    private func reject(context: ChannelHandlerContext, requestID: UInt32, code: DockerParallelError.Code, message: String) {
        let frame = Broker.frame(.error(code: code, message: message), requestID: requestID)
        rejected = true
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let peerID {
            broker.disconnect(peerID)
            logger.debug("peer disconnected", metadata: ["peer": "\(peerID)"])
        }
        peerID = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? DockerParallelError {
            reject(context: context, requestID: 0, code: error.code, message: error.message)
        } else {
            context.close(promise: nil)
        }
    }
}
