import DockerParallelCore

/// How a worker finds its server and what it runs.
public struct WorkerConfiguration: Sendable {
    /// The server.
    public var server: Endpoint
    /// Where the server is now, asked before each reconnect (a restarted server may listen
    /// elsewhere); `nil` answers keep the last endpoint.
    public var serverLocator: (@Sendable () -> Endpoint?)?
    /// The cluster password.
    public var password: ServerPassword
    /// The certificate authority (PEM) to trust for a server that speaks TLS; `nil`: the system's.
    public var certificateAuthority: String?
    /// A name shown in the server's status.
    public var name: String
    /// Tasks run at once.
    public var slots: Int
    /// Tasks leased ahead of free slots, to hide the round trip to the server (at least).
    public var prefetch: Int
    /// Tasks leased ahead at most: a worker raises its prefetch up to this for tasks that take
    /// less time than a round trip (about 10 ms of work ahead).
    public var maximumPrefetch: Int
    /// The Swift tasks this worker can run.
    public var registry: TaskRegistry
    /// How long to keep trying to reach a lost server before giving up.
    public var reconnectTimeout: Duration
    /// How long running tasks get to finish after a graceful shutdown (SIGTERM) before they are
    /// handed back to the server.
    public var shutdownGracePeriod: Duration

    /// Creates a configuration.
    /// - Parameters:
    ///   - server: The server's endpoint.
    ///   - password: The cluster password.
    ///   - name: The worker's name.
    ///   - slots: Tasks at once (default 1).
    ///   - prefetch: Tasks leased ahead of free slots, at least (default 1).
    ///   - maximumPrefetch: Tasks leased ahead at most, for short tasks (default 256).
    ///   - registry: Swift tasks (default none; command tasks always work).
    ///   - reconnectTimeout: How long to retry a lost server (default 60 s).
    ///   - shutdownGracePeriod: How long running tasks may finish on shutdown (default 10 s).
    public init(
        server: Endpoint, password: ServerPassword, name: String, slots: Int = 1, prefetch: Int = 1,
        maximumPrefetch: Int = 256, registry: TaskRegistry = TaskRegistry(), reconnectTimeout: Duration = .seconds(60),
        shutdownGracePeriod: Duration = .seconds(10)
    ) {
        self.server = server
        self.serverLocator = nil
        self.password = password
        self.name = name
        self.slots = max(1, slots)
        self.prefetch = max(0, prefetch)
        self.maximumPrefetch = max(self.prefetch, maximumPrefetch)
        self.registry = registry
        self.reconnectTimeout = reconnectTimeout
        self.shutdownGracePeriod = shutdownGracePeriod
    }
}
