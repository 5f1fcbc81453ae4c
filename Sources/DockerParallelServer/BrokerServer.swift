import DockerParallelCore
import Foundation
import DockerParallelWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
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
        let logger = self.logger
        var queue = TaskQueue(leaseDuration: configuration.leaseDuration.inSeconds)
        var store: (any BrokerStore)?
        var reserve: StorageReserve?
        var history: (restarts: Int, firstStarted: Double?) = (0, nil)
        // One server per store: a second one (two processes restarting the cluster at once)
        // stops here, before it reads anything.
        let storeLock = try configuration.storePath.map { try StoreLock(storePath: $0) }
        defer { storeLock?.release() }
        if let path = configuration.storePath {
            let spare = StorageReserve(path: path + ".reserve", size: configuration.storageReserve)
            reserve = spare
            let opened: SQLiteStore
            do {
                opened = try SQLiteStore(path: path)
            } catch where SQLiteStore.isFull(error) {
                // Restarted on a full disk: the reserve makes room to open the store.
                spare.release()
                opened = try SQLiteStore(path: path)
            }
            history = (opened.restarts, opened.firstStarted)
            // With a store, queued payloads beyond the resident limit wait on disk.
            queue = TaskQueue(leaseDuration: configuration.leaseDuration.inSeconds, residentLimit: configuration.residentTaskLimit)
            let jobs = try opened.load()
            for job in jobs {
                queue.restore(jobID: job.jobID, options: job.options, tasks: job.tasks, results: job.results)
            }
            // Leases given but not stored before a crash must not be given again: workers may still
            // report them. Numbering starts past both the stored ones and the clock (microseconds).
            queue.resumeLeaseNumbering(after: max(try opened.lastLeaseID(), UInt64(Date().timeIntervalSince1970 * 1_000_000)))
            logger.info(
                "opened the broker's store",
                metadata: ["path": "\(path)", "jobs": "\(jobs.count)", "restarts": "\(opened.restarts)"])
            store = opened
        }
        // Every open connection, so that stopping the server closes them all.
        let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
        let storeFailed = NIOLockedValueBox<(any Error)?>(nil)
        let serverChannel = NIOLockedValueBox<(any Channel)?>(nil)
        let broker = Broker(
            configuration: configuration, queue: queue, store: store, reserve: reserve, history: history, logger: logger
        ) { error in
            logger.error("the broker's store failed; stopping so that a restart resumes from it", metadata: ["error": "\(error)"])
            storeFailed.withLockedValue { $0 = error }
            serverChannel.withLockedValue { $0 }?.close(promise: nil)
        }
        let maximumFrameLength = configuration.maximumFrameLength
        let tls = try Self.tlsContext(configuration, logger: logger)
        let allowsPlainText = configuration.allowsPlainTextOffLoopback
        let http = HTTPFace(
            broker: broker, password: configuration.password, certificateAuthority: configuration.tlsCertificateAuthority,
            storePath: configuration.storePath, logger: logger)
        // Every connection on one event loop: the broker's events run under one lock anyway,
        // and a frame for another connection is then written without waking another thread
        // (a round trip took 450 µs instead of 600 µs here).
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Void> = { channel in
            let id = ObjectIdentifier(channel)
            connections.withLockedValue { $0[id] = channel }
            channel.closeFuture.whenComplete { _ in _ = connections.withLockedValue { $0.removeValue(forKey: id) } }
            return channel.eventLoop.makeCompletedFuture {
                // What the connection speaks is known from its first byte.
                try channel.pipeline.syncOperations.addHandler(ConnectionSniffer(
                    tls: tls, allowsPlainTextOffLoopback: allowsPlainText, http: http, logger: logger
                ) { pipeline in
                    try pipeline.addFrameCodec(maximumLength: maximumFrameLength)
                    try pipeline.addHandler(BrokerConnectionHandler(broker: broker, logger: logger))
                })
            }
        }
        let bootstrap = ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer(initializer)
        let channel: any Channel
        do {
            if let preferred = configuration.preferredPort, preferred != configuration.port,
               let bound = try? await bootstrap.bind(host: configuration.host, port: preferred).get() {
                channel = bound
            } else {
                channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
            }
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw DockerParallelError(
                .serverStartFailed,
                "port \(configuration.port) on \(configuration.host) is already in use: choose another port (--port) or stop the program using it",
                underlying: error)
        } catch {
            throw DockerParallelError(
                .serverStartFailed, "cannot listen on \(configuration.host):\(configuration.port): \(error)", underlying: error)
        }
        // The same server on a unix domain socket, for peers on this machine.
        var socketChannel: (any Channel)?
        if let path = configuration.unixSocketPath {
            do {
                socketChannel = try await ServerBootstrap(group: loop)
                    .serverChannelOption(.backlog, value: 256)
                    .childChannelInitializer(initializer)
                    .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
                    .get()
                chmod(path, 0o600)
            } catch {
                channel.close(promise: nil)
                throw DockerParallelError(
                    .serverStartFailed, "cannot listen on the unix socket \(path): \(error)", underlying: error)
            }
        }
        serverChannel.withLockedValue { $0 = channel }
        let port = channel.localAddress?.port ?? configuration.port
        logger.debug("server listening", metadata: ["host": "\(configuration.host)", "port": "\(port)"])
        http.client.serve(at: Endpoint(
            host: configuration.host, port: port, unixSocketPath: socketChannel == nil ? nil : configuration.unixSocketPath,
            usesTLS: tls != nil && !TransportSecurity.isLoopback(configuration.host)))
        onBound(Endpoint(
            host: configuration.host, port: port, unixSocketPath: socketChannel == nil ? nil : configuration.unixSocketPath,
            usesTLS: tls != nil && !TransportSecurity.isLoopback(configuration.host)))

        // Restored tasks wait on disk; the first load brings them in.
        broker.loaded([])
        let expiry = channel.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) { _ in
            broker.expireLeases()
        }
        let sampling = channel.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(1)) { _ in
            let latency = broker.metrics.takeWindow()
            http.history.record(
                finished: broker.report().jobs.reduce(0) { $0 + $1.finished }, dispatch: latency.dispatch,
                commit: latency.commit)
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
        sampling.cancel()
        if let socketChannel {
            try? await socketChannel.close()
            if let path = configuration.unixSocketPath { unlink(path) }
        }
        let open = connections.withLockedValue { Array($0.values) }
        for connection in open { connection.close(promise: nil) }
        for connection in open { try? await connection.closeFuture.get() }
        // The last changes are stored before `run` returns, so that a new server on the same
        // store starts from all of them.
        let unwritten = await broker.committer.flush()
        broker.committer.close()
        if unwritten > 0 {
            logger.error(
                "stopping with changes the full disk did not take: the tasks they concern run again after a restart",
                metadata: ["changes": "\(unwritten)"])
            storeFailed.withLockedValue { $0 = $0 ?? DockerParallelError(.storageFull, "\(unwritten) changes could not be stored: the disk is full") }
        }
        logger.debug("server stopped")
        if let error = storeFailed.withLockedValue({ $0 }) {
            throw DockerParallelError(.providerFailed, "the broker's store failed: \(error)", underlying: nil)
        }
    }
}

extension BrokerServer {
    /// The TLS context of a server with a certificate; `nil` without one, which only a server on
    /// loopback, or one opted out of TLS, may be.
    static func tlsContext(_ configuration: ServerConfiguration, logger: Logger) throws -> NIOSSLContext? {
        let offLoopback = !TransportSecurity.isLoopback(configuration.host)
        var configuration = configuration
        if let authority = configuration.tlsCertificateAuthority, let authorityKey = configuration.tlsCertificateAuthorityKey {
            // The cluster's own authority: a certificate for the names this server has here.
            let names = ClusterCertificates.namesOfThisMachine(listeningOn: configuration.host) + configuration.tlsNames
            let issued = try ClusterCertificates.serverCertificate(
                authority: authority, authorityKey: authorityKey.value, jobQueueName: configuration.jobQueueName, names: names)
            configuration.tlsCertificateChain = issued.chain
            configuration.tlsPrivateKey = ServerPassword(issued.privateKey)
            logger.debug("signed the server's certificate", metadata: ["names": "\(names.joined(separator: ", "))"])
        }
        guard let chain = configuration.tlsCertificateChain, let key = configuration.tlsPrivateKey else {
            if offLoopback {
                guard configuration.allowsPlainTextOffLoopback else {
                    throw DockerParallelError(
                        .serverStartFailed,
                        "the server listens on \(configuration.host), off loopback, without a TLS certificate: give it one (DOCKERPARALLEL_TLS_CERTIFICATE and DOCKERPARALLEL_TLS_KEY; a DockerCluster makes its own), or opt out of TLS with DOCKERPARALLEL_INSECURE_PLAINTEXT=1")
                }
                logger.warning("INSECURE: serving plain text off loopback: anyone on the network path can read the cluster password and its tasks")
            }
            return nil
        }
        if configuration.allowsPlainTextOffLoopback {
            logger.warning("INSECURE: peers off loopback may connect in plain text: anyone on the network path can read the cluster password and its tasks")
        }
        do {
            let certificates = try NIOSSLCertificate.fromPEMBytes(Array(chain.utf8))
            let privateKey = try NIOSSLPrivateKey(bytes: Array(key.value.utf8), format: .pem)
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: certificates.map { .certificate($0) }, privateKey: .privateKey(privateKey))
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw DockerParallelError(.serverStartFailed, "the server's TLS certificate or key cannot be used: \(error)")
        }
    }
}

/// An exclusive lock on a store, held while a server serves it (a `flock` on `<store>.lock`,
/// released by the kernel if the server dies).
struct StoreLock {
    private let descriptor: Int32

    /// Takes the lock.
    /// - Throws: `.serverStartFailed` when another server holds it.
    init(storePath: String) throws {
        let path = storePath + ".lock"
        descriptor = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw DockerParallelError(
                .serverStartFailed,
                "cannot open the broker's database at \(storePath): its lock file \(path): \(String(cString: strerror(errno))). Check the folder exists and is writable.")
        }
        // A server that just stopped may still hold the lock for a moment through a child
        // process that another thread of its process was starting (the child shares the lock
        // until it execs): a short wait tells that apart from a second live server.
        var tries = 0
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            tries += 1
            guard tries < 100 else { break }
            usleep(20_000)
        }
        guard tries < 100 else {
            close(descriptor)
            throw DockerParallelError(
                .serverStartFailed,
                "another server already serves the store \(storePath): a cluster has one server. Connect to that one, or stop it first.")
        }
    }

    /// Lets the lock go.
    func release() {
        close(descriptor)
    }
}
