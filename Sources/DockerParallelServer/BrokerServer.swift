import DockerParallelCore
import DockerParallelWire
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The DockerParallel server: one port, authenticated connections from clients and workers,
/// and the task queue between them.
///
/// Run it as a `Service`; it stops on graceful shutdown or cancellation, closing every connection.
public final class BrokerServer: Service {
    private let configuration: ServerConfiguration
    private let logger: Logger
    private let onBound: @Sendable (Endpoint) -> Void

    /// Creates a server.
    /// - Parameters:
    ///   - configuration: Where to listen and how to lease.
    ///   - logger: Where the server logs (at debug and trace).
    ///   - onBound: Called once with the bound endpoint (useful with port 0).
    public init(configuration: ServerConfiguration, logger: Logger, onBound: @escaping @Sendable (Endpoint) -> Void = { _ in }) {
        self.configuration = configuration
        self.logger = logger
        self.onBound = onBound
    }

    /// Binds and serves until shutdown.
    /// - Throws: `.serverStartFailed` when the port cannot be bound.
    public func run() async throws {
        let broker = Broker(configuration: configuration)
        let logger = self.logger
        let maximumFrameLength = configuration.maximumFrameLength
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addFrameCodec(maximumLength: maximumFrameLength)
                        try channel.pipeline.syncOperations.addHandler(
                            BrokerConnectionHandler(broker: broker, logger: logger))
                    }
                }
                .bind(host: configuration.host, port: configuration.port)
                .get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw DockerParallelError(
                .serverStartFailed,
                "port \(configuration.port) on \(configuration.host) is already in use: choose another port (--port) or stop the program using it",
                underlying: error)
        } catch {
            throw DockerParallelError(
                .serverStartFailed, "cannot listen on \(configuration.host):\(configuration.port): \(error)", underlying: error)
        }
        let port = channel.localAddress?.port ?? configuration.port
        logger.debug("server listening", metadata: ["host": "\(configuration.host)", "port": "\(port)"])
        onBound(Endpoint(host: configuration.host, port: port))

        let expiry = channel.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) { _ in
            for output in broker.expireLeases() { output.channel.writeAndFlush(output.frame, promise: nil) }
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
        expiry.cancel()
        logger.debug("server stopped")
    }
}
