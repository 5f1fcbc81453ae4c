import DockerParallelCore
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// A client's or worker's authenticated connection to the server.
///
/// Requests get replies matched by id; messages the server pushes unasked (task assignments)
/// arrive on ``pushes``. When the connection drops, every waiting request fails with
/// `.connectionFailed` and ``pushes`` finishes.
package final class PeerConnection: Sendable {
    private struct State {
        var nextRequestID: UInt32 = 1
        var pending: [UInt32: @Sendable (Result<ServerMessage, any Error>) -> Void] = [:]
        var streams: [UInt32: AsyncThrowingStream<ServerMessage, any Error>.Continuation] = [:]
        var closed = false
        /// The error that closed the connection, if one did (a failed TLS handshake).
        var closeReason: String?
        var pushHandler: (@Sendable (ServerMessage?) -> Void)?
    }

    private let channel: any Channel
    private let state = NIOLockedValueBox(State())
    private let pushContinuation: AsyncStream<ServerMessage>.Continuation
    /// Messages the server sends unasked, such as task assignments.
    package let pushes: AsyncStream<ServerMessage>
    /// Seconds a lease lasts, as the server announced.
    package private(set) var leaseDuration: Double {
        get { leaseDurationBox.withLockedValue { $0 } }
        set { leaseDurationBox.withLockedValue { $0 = newValue } }
    }
    private let leaseDurationBox = NIOLockedValueBox(30.0)

    private init(channel: any Channel) {
        self.channel = channel
        (pushes, pushContinuation) = AsyncStream.makeStream(of: ServerMessage.self)
    }

    /// Connects and authenticates.
    /// - Parameters:
    ///   - endpoint: The server.
    ///   - hello: The role and password to present.
    ///   - timeout: Seconds to wait for the connection and the server's welcome.
    ///   - eventLoop: The loop that serves the connection (default: one of the shared loops).
    /// - Throws: `.connectionFailed` when nothing answers, `.authenticationFailed` on a wrong password.
    ///   - certificateAuthority: The authority (PEM) to trust for a server that speaks TLS; `nil`
    ///     trusts the system's authorities and checks the server's host name.
    package static func connect(
        to endpoint: Endpoint, hello: Hello, timeout: Double = 10, on eventLoop: (any EventLoop)? = nil,
        certificateAuthority: String? = nil
    ) async throws -> PeerConnection {
        let group: any EventLoopGroup = eventLoop ?? MultiThreadedEventLoopGroup.singleton
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.milliseconds(Int64(timeout * 1000)))
        let channel: any Channel
        do {
            // On the server's machine its unix socket, when there; host and port otherwise.
            var local: (any Channel)?
            if let path = endpoint.unixSocketPath, FileManager.default.fileExists(atPath: path) {
                local = try? await bootstrap.connect(unixDomainSocketPath: path).get()
            }
            if let local {
                channel = local
            } else {
                channel = try await bootstrap.channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .connect(host: endpoint.host, port: endpoint.port).get()
            }
        } catch {
            throw DockerParallelError(
                .connectionFailed,
                "cannot connect to the DockerParallel server at \(endpoint): \(error). Is the cluster's server running?")
        }
        // TLS over the network; the unix socket stays on this machine.
        let tls = try endpoint.usesTLS && !(channel.localAddress?.protocol == .unix)
            ? Self.tlsContext(trusting: certificateAuthority, endpoint: endpoint) : nil
        let connection = PeerConnection(channel: channel)
        try await channel.eventLoop.submit {
            if let tls {
                let hostname = certificateAuthority == nil && !Self.isAddress(endpoint.host) ? endpoint.host : nil
                try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: hostname))
            }
            try channel.pipeline.syncOperations.addFrameCodec()
            try channel.pipeline.syncOperations.addHandler(PeerHandler(connection: connection))
        }.get()
        do {
            let reply: ServerMessage
            do {
                reply = try await connection.request(.hello(hello), timeout: timeout)
            } catch let error as DockerParallelError where tls != nil && error.code == .connectionFailed {
                throw DockerParallelError(
                    .connectionFailed,
                    "the TLS handshake with the server at \(endpoint) failed (\(connection.closeReason ?? error.message)): its certificate is not one this cluster's authority signed, or it does not speak TLS",
                    underlying: error)
            }
            guard case .welcome(let leaseDuration) = reply else {
                throw DockerParallelError(.protocolViolation, "the server answered hello with \(reply)")
            }
            connection.leaseDuration = leaseDuration
            return connection
        } catch {
            connection.close()
            throw error
        }
    }

    /// A TLS client context that trusts `authority` (PEM) alone, pinned, or the system's
    /// authorities when it is `nil`.
    static func tlsContext(trusting authority: String?, endpoint: Endpoint) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let authority {
            do {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(authority.utf8)))
            } catch {
                throw DockerParallelError(.invalidArgument, "the cluster's certificate authority cannot be read: \(error)")
            }
            // The authority signs this cluster's server alone; platforms choose its addresses.
            configuration.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw DockerParallelError(.connectionFailed, "cannot set up TLS for \(endpoint): \(error)")
        }
    }

    /// Whether a host is an IP address rather than a name.
    static func isAddress(_ host: String) -> Bool {
        host.contains(":") || host.split(separator: ".").allSatisfy { Int($0) != nil }
    }

    /// Sends a request and waits for its reply.
    /// - Throws: The server's error as a ``DockerParallelError``, or `.connectionFailed`.
    package func request(_ message: ClientMessage, timeout: Double? = nil) async throws -> ServerMessage {
        let body = try MessageCoding.encode(message)
        let reply: ServerMessage = try await withCheckedThrowingContinuation { continuation in
            send(body, timeout: timeout) { continuation.resume(with: $0) }
        }
        if case .error(let code, let message) = reply { throw DockerParallelError(code, message) }
        return reply
    }

    /// Writes a request frame; `onReply` gets its reply, or the failure of the connection.
    private func send(
        _ body: ByteBuffer, timeout: Double?, onReply: @escaping @Sendable (Result<ServerMessage, any Error>) -> Void
    ) {
        guard let id = register({ $0.pending[$1] = onReply }) else {
            onReply(.failure(Self.closedError))
            return
        }
        channel.writeAndFlush(Frame(requestID: id, body: body), promise: nil)
        if let timeout {
            channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) { [weak self] in
                guard let self else { return }
                let waiting = self.state.withLockedValue { $0.pending.removeValue(forKey: id) }
                waiting?(.failure(DockerParallelError(.timedOut, "the server did not answer within \(timeout) s")))
            }
        }
    }

    /// Sends a request whose replies form a stream (watching a job).
    package func stream(_ message: ClientMessage) -> AsyncThrowingStream<ServerMessage, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ServerMessage.self)
        let id = register { $0.streams[$1] = continuation }
        guard let id else {
            continuation.finish(throwing: Self.closedError)
            return stream
        }
        // A reader that stops early drops what the server still sends for this request.
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLockedValue { $0.streams.removeValue(forKey: id) }
        }
        do {
            channel.writeAndFlush(Frame(requestID: id, body: try MessageCoding.encode(message)), promise: nil)
        } catch {
            continuation.finish(throwing: error)
        }
        return stream
    }

    /// Takes the next request id and records its waiter; `nil` when the connection is closed.
    private func register(_ record: (inout State, UInt32) -> Void) -> UInt32? {
        state.withLockedValue { state in
            guard !state.closed else { return nil }
            let id = state.nextRequestID
            state.nextRequestID = id &+ 1 == 0 ? 1 : id &+ 1
            record(&state, id)
            return id
        }
    }

    /// Hands messages the server pushes to `handler` as they arrive, on the connection's event
    /// loop, instead of to ``pushes``; `nil` once the connection has closed. One hop less than
    /// iterating ``pushes``. Set it before anything is pushed (before asking for tasks).
    package func handlePushes(_ handler: @escaping @Sendable (ServerMessage?) -> Void) {
        let closed = state.withLockedValue { state in
            state.pushHandler = handler
            return state.closed
        }
        if closed { handler(nil) }
    }

    /// Sends a message that needs no reply.
    package func send(_ message: ClientMessage) {
        guard let body = try? MessageCoding.encode(message) else { return }
        channel.writeAndFlush(Frame(requestID: 0, body: body), promise: nil)
    }

    /// An executor on the connection's event loop, where its frames are read and written: a
    /// task that prefers it handles replies and pushes without a hop to another thread.
    @available(macOS 15, *)
    package var taskExecutor: EventLoopTaskExecutor { EventLoopTaskExecutor(eventLoop: channel.eventLoop) }

    /// Closes the connection.
    package func close() {
        channel.close(promise: nil)
    }

    /// Whether the connection is still open.
    package var isOpen: Bool { !state.withLockedValue { $0.closed } }

    /// The error that closed the connection, if one did.
    package var closeReason: String? { state.withLockedValue { $0.closeReason } }

    fileprivate func failed(_ error: any Error) {
        state.withLockedValue { state in
            if state.closeReason == nil { state.closeReason = "\(error)" }
        }
    }

    /// Completes when the connection has closed.
    package func closed() async {
        try? await channel.closeFuture.get()
    }

    private static let closedError = DockerParallelError(.connectionFailed, "the connection to the DockerParallel server was closed")

    fileprivate func receive(_ frame: Frame) {
        let message: ServerMessage
        do {
            message = try MessageCoding.decode(ServerMessage.self, from: frame.body)
        } catch {
            close()
            return
        }
        if frame.requestID == 0 {
            if let handler = state.withLockedValue({ $0.pushHandler }) {
                handler(message)
            } else {
                pushContinuation.yield(message)
            }
            return
        }
        let (pending, stream) = state.withLockedValue { state in
            (state.pending.removeValue(forKey: frame.requestID), state.streams[frame.requestID])
        }
        if let pending {
            pending(.success(message))
        } else if let stream {
            if case .error(let code, let text) = message {
                state.withLockedValue { _ = $0.streams.removeValue(forKey: frame.requestID) }
                stream.finish(throwing: DockerParallelError(code, text))
            } else {
                stream.yield(message)
            }
        }
    }

    fileprivate func connectionClosed() {
        let (pending, streams, pushHandler) = state.withLockedValue { state in
            state.closed = true
            defer {
                state.pending = [:]
                state.streams = [:]
            }
            return (state.pending, state.streams, state.pushHandler)
        }
        for onReply in pending.values { onReply(.failure(Self.closedError)) }
        for continuation in streams.values { continuation.finish(throwing: Self.closedError) }
        pushContinuation.finish()
        pushHandler?(nil)
    }
}

private final class PeerHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame

    let connection: PeerConnection

    init(connection: PeerConnection) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.receive(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.connectionClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.failed(error)
        context.close(promise: nil)
    }
}
