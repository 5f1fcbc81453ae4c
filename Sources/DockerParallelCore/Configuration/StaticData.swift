/// What a provider stores with the server so that a new process can reconnect to the cluster
/// (the original's `getDockerStaticData`). It holds the password: providers must store it privately.
public struct StaticData: Sendable, Codable, Equatable {
    /// The cluster's configuration.
    public var configuration: ClusterConfiguration
    /// The worker container's name, checked on reconnect.
    public var workerContainerName: String
    /// The worker container's image.
    public var workerImage: String
    /// The worker container's maximum workers per container.
    public var maxWorkersPerContainer: Int
    /// The cluster's verbosity.
    public var verbosity: Int

    /// Creates static data.
    public init(
        configuration: ClusterConfiguration, workerContainerName: String, workerImage: String,
        maxWorkersPerContainer: Int, verbosity: Int
    ) {
        self.configuration = configuration
        self.workerContainerName = workerContainerName
        self.workerImage = workerImage
        self.maxWorkersPerContainer = maxWorkersPerContainer
        self.verbosity = verbosity
    }
}
