import DockerParallelCore

/// A worker (and server) container for the Docker Engine provider: an image holding the
/// `dockerparallel` binary, or a program of yours that registers Swift tasks (see
/// `dockerparallel image build`).
///
/// At start-up the container installs `systemPackages` with apt-get and `languagePackages` (`pip:`
/// names with pip, the others with R's `install.packages`), authorises `sshPublicKey`, writes its
/// logs under `/workspace/log`, then runs the server or its worker slots.
public struct DockerWorkerContainer: WorkerContainer {
    public var name: String { "DockerWorkerContainer" }
    /// The image (default `dockerparallel:latest`).
    public var image: String
    public var environment: [String: String]
    /// Worker slots one container runs at most.
    public var maxWorkersPerContainer: Int
    public var systemPackages: [String]
    public var languagePackages: [String]
    public var sshPublicKey: String?

    /// Creates a container description.
    /// - Parameters:
    ///   - image: An image on the engine (default `dockerparallel:latest`).
    ///   - environment: Extra environment for the tasks.
    ///   - maxWorkersPerContainer: Worker slots per container (default 1).
    ///   - systemPackages: Debian packages to install at start-up (the image needs apt-get).
    ///   - languagePackages: `pip:NAME` for Python packages; other names are R packages.
    ///   - sshPublicKey: A key to authorise for root.
    public init(
        image: String = "dockerparallel:latest", environment: [String: String] = [:], maxWorkersPerContainer: Int = 1,
        systemPackages: [String] = [], languagePackages: [String] = [], sshPublicKey: String? = nil
    ) {
        self.image = image
        self.environment = environment
        self.maxWorkersPerContainer = max(1, maxWorkersPerContainer)
        self.systemPackages = systemPackages
        self.languagePackages = languagePackages
        self.sshPublicKey = sshPublicKey
    }

    /// The same image for the server, without the packages: the server runs no tasks.
    public func serverContainer() throws -> any WorkerContainer {
        var server = self
        server.systemPackages = []
        server.languagePackages = []
        server.maxWorkersPerContainer = 1
        return server
    }
}
