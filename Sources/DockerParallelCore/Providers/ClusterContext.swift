import Logging

/// What a provider is told about the cluster it acts for.
public struct ClusterContext: Sendable {
    /// The cluster's configuration, including its password.
    public var configuration: ClusterConfiguration
    /// The cluster's runtime state.
    public var runtime: ClusterRuntime
    /// The data to store with the server so that another process can reconnect.
    public var staticData: StaticData
    /// Whether the cluster should go away when the process that made it exits.
    public var stopClusterOnExit: Bool
    /// 0 silent, 1 progress, 2 detail.
    public var verbosity: Int
    /// Where the provider logs.
    public var logger: Logger
    /// Whether ``CloudProvider/runServer(context:container:hardware:)`` restarts a server that
    /// died: it then starts one only while the server's static data is still stored, so that a
    /// server stopped on purpose meanwhile (by another process) stays stopped.
    public var isRestart = false
    /// The tasks each connected worker runs now, by worker name (`DOCKERPARALLEL_WORKER_NAME`),
    /// from the server's report, when ``CloudProvider/setWorkerNumber(context:container:hardware:workerNumber:)``
    /// is called; `nil` when the server could not be asked. A provider that names its workers
    /// after its containers gives ``ScalingPlan`` their activity, so that scaling down stops
    /// idle workers first.
    public var workerActivity: [String: Int]?

    /// Creates a context.
    public init(
        configuration: ClusterConfiguration, runtime: ClusterRuntime, staticData: StaticData,
        stopClusterOnExit: Bool, verbosity: Int, logger: Logger
    ) {
        self.configuration = configuration
        self.runtime = runtime
        self.staticData = staticData
        self.stopClusterOnExit = stopClusterOnExit
        self.verbosity = verbosity
        self.logger = logger
    }
}
