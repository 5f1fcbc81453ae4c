/// A platform that runs the cluster's server and worker containers (the original's `CloudProvider`).
///
/// A minimum provider implements ``runServer(context:container:hardware:)``,
/// ``stopServer(context:)``, ``serverEndpoints(context:)`` and
/// ``setWorkerNumber(context:container:hardware:workerNumber:)``; the rest have defaults.
/// Every requirement may be called repeatedly and must be idempotent.
///
/// The defaults never invent an answer that could pass for a real one: a requirement whose answer
/// only the platform knows (``workerNumbers(context:)``, ``clusterExists(context:)``,
/// ``clusterNames()``, ``reconnect(context:)``, ``storedStaticData(context:)``) throws a ``DockerParallelError`` with the code
/// `.unsupported` when the provider lacks it, naming the provider and the requirement.
/// `DockerCluster` degrades where it can (it counts the workers connected to the server instead
/// of asking for worker numbers), and the conformance kit reports such a step as an unsupported
/// optional requirement. ``serverStatus(context:)`` is the one exception, see its default.
public protocol CloudProvider: Sendable {
    /// Prepares the platform (networks, roles). Called once per cluster object, lazily, before any other call.
    func initialize(context: ClusterContext) async throws

    /// Starts the server container, storing `context.staticData` with it; does nothing when it
    /// runs already. Two processes that call it at once, for the same cluster, end with one
    /// server: the one that loses waits for the other's, or returns.
    /// - Parameters:
    ///   - container: The server container, its environment already configured.
    ///   - hardware: What the server asks for.
    func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws

    /// Stops the server container on purpose, and forgets its static data (see
    /// ``storedStaticData(context:)``), so that nothing restarts it. Stopping a stopped server
    /// is not an error.
    func stopServer(context: ClusterContext) async throws

    /// Reports whether the server is starting, running or stopped.
    func serverStatus(context: ClusterContext) async throws -> ServerStatus

    /// The server's endpoints; waits until the platform has assigned them.
    func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints

    /// Makes the number of workers equal `workerNumber`, starting or stopping containers.
    ///
    /// ``ScalingPlan`` decides which containers to start and stop the way the package's providers do.
    /// - Parameters:
    ///   - container: The worker container, its environment already configured.
    ///   - hardware: What each worker asks for.
    ///   - workerNumber: The number of workers (not containers) wanted.
    func setWorkerNumber(
        context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int
    ) async throws

    /// The numbers of workers starting and running on the platform, counted in worker slots.
    ///
    /// ``WorkerNumbers/expected`` is the context's `configuration.expectedWorkerNumber`.
    /// - Throws: `.unsupported` by default: `DockerCluster` then counts the worker slots
    ///   connected to the server.
    func workerNumbers(context: ClusterContext) async throws -> WorkerNumbers

    /// Whether a cluster with this job queue name exists on the platform.
    /// - Throws: `.unsupported` by default: `DockerCluster.startCluster()` then starts a new
    ///   server instead of reconnecting.
    func clusterExists(context: ClusterContext) async throws -> Bool

    /// The job queue names of the clusters this provider can see, running or not, sorted.
    /// - Throws: `.unsupported` by default.
    func clusterNames() async throws -> [String]

    /// Finds the existing cluster with this job queue name and returns the static data stored with it.
    /// - Throws: `.unsupported` by default; `.clusterNotFound` when there is no such cluster.
    func reconnect(context: ClusterContext) async throws -> StaticData

    /// The static data stored with this cluster's server when it was last started, whether that
    /// server runs now or died; `nil` when there is none: never started, stopped on purpose
    /// (``stopServer(context:)`` forgets it), or cleaned up.
    ///
    /// A server that died is restarted with it, so that the cluster keeps its identity: the
    /// password that its workers and clients hold, its port and its settings.
    /// - Throws: `.unsupported` by default: a restarted server then gets the settings of the
    ///   handle that restarts it.
    func storedStaticData(context: ClusterContext) async throws -> StaticData?

    /// Frees what the provider created; `deep` also removes shared resources (networks, roles).
    func cleanup(context: ClusterContext, deep: Bool) async throws
}

extension CloudProvider {
    /// Does nothing.
    public func initialize(context: ClusterContext) async throws {}

    /// Reports `.running`, as the original documents.
    ///
    /// Kept although it is an answer a provider did not give: `DockerCluster` asks for the status
    /// before every connection and on every `update()`, so a minimum provider (which implements only
    /// run/stop server, server endpoints and set worker number) could not run a job without it. A
    /// provider that can tell should implement it: `update()` restarts a server only when the
    /// status says it stopped.
    public func serverStatus(context: ClusterContext) async throws -> ServerStatus { .running }

    /// Throws `.unsupported`: only the platform knows how many workers it runs.
    public func workerNumbers(context: ClusterContext) async throws -> WorkerNumbers {
        throw Self.unsupported("workerNumbers(context:)")
    }

    /// Throws `.unsupported`: only the platform knows which clusters exist.
    public func clusterExists(context: ClusterContext) async throws -> Bool {
        throw Self.unsupported("clusterExists(context:)")
    }

    /// Throws `.unsupported`: only the platform knows which clusters exist.
    public func clusterNames() async throws -> [String] {
        throw Self.unsupported("clusterNames()")
    }

    /// Throws `.unsupported`: this provider cannot reconnect.
    public func reconnect(context: ClusterContext) async throws -> StaticData {
        throw Self.unsupported("reconnect(context:)")
    }

    /// Throws `.unsupported`: only the platform keeps what it stored with a server.
    public func storedStaticData(context: ClusterContext) async throws -> StaticData? {
        throw Self.unsupported("storedStaticData(context:)")
    }

    /// Does nothing.
    public func cleanup(context: ClusterContext, deep: Bool) async throws {}

    /// The error a default implementation throws for a requirement the provider does not implement.
    static func unsupported(_ requirement: String) -> DockerParallelError {
        DockerParallelError(
            .unsupported,
            "the provider \(Self.self) does not implement \(requirement): implement it in \(Self.self) to use this operation")
    }
}
