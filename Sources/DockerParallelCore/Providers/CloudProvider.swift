/// A platform that runs the cluster's server and worker containers (the original's `CloudProvider`).
///
/// A minimum provider implements ``runServer(context:container:hardware:)``,
/// ``stopServer(context:)``, ``serverEndpoints(context:)`` and
/// ``setWorkerNumber(context:container:hardware:workerNumber:)``; the rest have defaults.
/// Every requirement may be called repeatedly and must be idempotent.
public protocol CloudProvider: Sendable {
    /// Prepares the platform (networks, roles). Called once per cluster object, lazily, before any other call.
    func initialize(context: ClusterContext) async throws

    /// Starts the server container, storing `context.staticData` with it.
    /// - Parameters:
    ///   - container: The server container, its environment already configured.
    ///   - hardware: What the server asks for.
    func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws

    /// Stops the server container. Stopping a stopped server is not an error.
    func stopServer(context: ClusterContext) async throws

    /// Reports whether the server is starting, running or stopped.
    func serverStatus(context: ClusterContext) async throws -> ServerStatus

    /// The server's endpoints; waits until the platform has assigned them.
    func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints

    /// Makes the number of workers equal `workerNumber`, starting or stopping containers.
    /// - Parameters:
    ///   - container: The worker container, its environment already configured.
    ///   - hardware: What each worker asks for.
    ///   - workerNumber: The number of workers (not containers) wanted.
    func setWorkerNumber(
        context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int
    ) async throws

    /// The numbers of workers starting and running.
    func workerNumbers(context: ClusterContext) async throws -> (initializing: Int, running: Int)

    /// Whether a cluster with this job queue name exists on the platform.
    func clusterExists(context: ClusterContext) async throws -> Bool

    /// Finds the existing cluster with this job queue name and returns the static data stored with it.
    func reconnect(context: ClusterContext) async throws -> StaticData

    /// Frees what the provider created; `deep` also removes shared resources (networks, roles).
    func cleanup(context: ClusterContext, deep: Bool) async throws
}

extension CloudProvider {
    /// Does nothing.
    public func initialize(context: ClusterContext) async throws {}

    /// Reports `.running`, as the original documents.
    public func serverStatus(context: ClusterContext) async throws -> ServerStatus { .running }

    /// Reports no initializing workers and the expected number as running.
    public func workerNumbers(context: ClusterContext) async throws -> (initializing: Int, running: Int) {
        (0, context.configuration.expectedWorkerNumber)
    }

    /// Reports that no cluster exists.
    public func clusterExists(context: ClusterContext) async throws -> Bool { false }

    /// Throws: this provider cannot reconnect.
    public func reconnect(context: ClusterContext) async throws -> StaticData {
        throw DockerParallelError(.unsupported, "No reconnect method has been defined in the provider \(Self.self)")
    }

    /// Does nothing.
    public func cleanup(context: ClusterContext, deep: Bool) async throws {}
}
