import DockerParallelCore

/// How the broker listens and leases.
public struct ServerConfiguration: Sendable {
    /// The address to bind; loopback by default.
    public var host: String
    /// The port to bind; 0 picks a free one.
    public var port: Int
    /// A port to try first, falling back to ``port`` when it is taken: a restarted server asks
    /// for the one it had, so that its peers find it where it was.
    public var preferredPort: Int?
    /// The password every connection must present.
    public var password: ServerPassword
    /// The job queue name, reported in status.
    public var jobQueueName: String
    /// How long a lease lasts without a heartbeat.
    public var leaseDuration: Duration
    /// The largest frame accepted, in bytes.
    public var maximumFrameLength: Int
    /// The SQLite file that keeps tasks and results across restarts; `nil` keeps them in memory only.
    public var storePath: String?
    /// With a store: how many queued tasks keep their payload in memory; the rest wait on disk
    /// until workers get near them.
    public var residentTaskLimit: Int
    /// A unix domain socket to listen on besides the port, for peers on this machine (at most
    /// 100 bytes long); a stale file there is replaced.
    public var unixSocketPath: String?
    /// Whether an event loop writes a small batch of changes to the store itself, after its
    /// current reads, instead of waking the committer's thread (default `true`). It is a
    /// blocking SQLite write on the loop, and the faster path for a lone change: see
    /// ``GroupCommitter`` and the benchmark's durable round-trip rows.
    public var writesSmallBatchesOnEventLoop: Bool = true
    /// The certificate chain (PEM) the server presents over TLS; with ``tlsPrivateKey``, peers
    /// off this machine must use TLS.
    public var tlsCertificateChain: String?
    /// The authority (PEM) that signed ``tlsCertificateChain``: the HTTP API's own connection to
    /// the server trusts it.
    public var tlsCertificateAuthority: String?
    /// The private key (PEM) of ``tlsCertificateChain``.
    public var tlsPrivateKey: ServerPassword?
    /// The private key (PEM) of ``tlsCertificateAuthority`` when that is the cluster's own: the
    /// server then signs itself a certificate naming the addresses it is reached at on its
    /// machine, and serves that one.
    public var tlsCertificateAuthorityKey: ServerPassword?
    /// Names and addresses the server is reached at that its machine cannot see (a published
    /// port's host address), for the certificate it signs itself.
    public var tlsNames: [String] = []
    /// Serve plain text to peers off this machine too: an explicit, loud opt-out of TLS. Without
    /// it, a server that binds anything but loopback refuses to start without a certificate.
    public var allowsPlainTextOffLoopback = false
    /// Bytes kept free on the store's disk for the tasks already taken (default 16 MiB): when
    /// the disk fills, the server gives them back and takes no new tasks until it has room for
    /// them twice over again (see ``StorageReserve``).
    public var storageReserve: Int = 16 * 1_048_576

    /// Creates a configuration.
    /// - Parameters:
    ///   - host: The bind address (default `127.0.0.1`).
    ///   - port: The port (default 8888; 0 for any free port).
    ///   - password: The cluster password.
    ///   - jobQueueName: The cluster's name.
    ///   - leaseDuration: How long without a heartbeat before a task is taken back (default 30 s).
    ///   - maximumFrameLength: Bytes (default 64 MiB).
    ///   - storePath: The durable store's file (default none: in memory).
    ///   - residentTaskLimit: Queued payloads kept in memory with a store (default 50,000).
    ///   - unixSocketPath: A unix domain socket to listen on too (default none).
    public init(
        host: String = "127.0.0.1",
        port: Int = ClusterConfiguration.defaultServerPort,
        password: ServerPassword,
        jobQueueName: String = ClusterConfiguration.defaultJobQueueName,
        leaseDuration: Duration = .seconds(30),
        maximumFrameLength: Int = 64 * 1024 * 1024,
        storePath: String? = nil,
        residentTaskLimit: Int = 50_000,
        unixSocketPath: String? = nil
    ) {
        self.host = host
        self.port = port
        self.password = password
        self.jobQueueName = jobQueueName
        self.leaseDuration = leaseDuration
        self.maximumFrameLength = maximumFrameLength
        self.storePath = storePath
        self.residentTaskLimit = residentTaskLimit
        self.unixSocketPath = unixSocketPath
    }
}
