/// What a server or worker container runs (the original's `DockerContainer`).
///
/// Containers are values: the configure methods return a configured copy and never change the original.
public protocol WorkerContainer: Sendable {
    /// The container's kind, checked when reconnecting.
    var name: String { get }
    /// The image (for the Local provider: the executable).
    var image: String { get }
    /// The environment the container starts with.
    var environment: [String: String] { get set }
    /// How many workers one container runs.
    var maxWorkersPerContainer: Int { get }
    /// Debian packages to install when the container starts.
    var systemPackages: [String] { get }
    /// Language packages (R, pip) to install when the container starts.
    var languagePackages: [String] { get }
    /// An SSH public key to authorise in the container, if any.
    var sshPublicKey: String? { get }

    /// Returns a copy configured to run the server for `configuration`.
    func configuredAsServer(configuration: ClusterConfiguration) -> Self

    /// Returns a copy configured to run `workerNumber` workers connecting to `server`.
    func configuredAsWorker(configuration: ClusterConfiguration, server: Endpoint, workerNumber: Int) -> Self

    /// The server container that goes with this worker container.
    func serverContainer() throws -> any WorkerContainer
}

/// Names of the environment variables DockerParallel's own server and worker entry points read.
public enum EnvironmentKey {
    /// `server` or `worker`: what the executable should run as.
    public static let role = "DOCKERPARALLEL_ROLE"
    /// The cluster password.
    public static let password = "DOCKERPARALLEL_PASSWORD"
    /// A file holding the cluster password instead of ``password`` (a swarm secret, mounted
    /// under `/run/secrets`), so that the password is in no container's environment.
    public static let passwordFile = "DOCKERPARALLEL_PASSWORD_FILE"
    /// The server's host (for workers) or bind address (for the server).
    public static let host = "DOCKERPARALLEL_HOST"
    /// The server's port.
    public static let port = "DOCKERPARALLEL_PORT"
    /// A port the server tries first, before ``port`` (the one it had before a restart).
    package static let preferredPort = "DOCKERPARALLEL_PREFERRED_PORT"
    /// The job queue name.
    public static let jobQueueName = "DOCKERPARALLEL_QUEUE"
    /// The number of worker slots in one container.
    public static let slots = "DOCKERPARALLEL_SLOTS"
    /// A unix domain socket the server also listens on, for peers on its machine.
    public static let unixSocketPath = "DOCKERPARALLEL_SOCKET"
    /// A file the server writes its bound endpoint to.
    public static let endpointFile = "DOCKERPARALLEL_ENDPOINT_FILE"
    /// A file the worker creates once it is connected.
    public static let readyFile = "DOCKERPARALLEL_READY_FILE"
    /// A process id; when that process is gone, the server or worker exits.
    public static let ownerProcessID = "DOCKERPARALLEL_OWNER_PID"
    /// Seconds a lease lasts without a heartbeat.
    public static let leaseDuration = "DOCKERPARALLEL_LEASE_SECONDS"
    /// The SQLite file where the server keeps tasks and results across restarts.
    public static let storePath = "DOCKERPARALLEL_STORE"
    /// `1` when the worker's server speaks TLS at ``host`` and ``port``.
    public static let tls = "DOCKERPARALLEL_TLS"
    /// The certificate authority (PEM) workers and clients trust for the server.
    public static let tlsCertificateAuthority = "DOCKERPARALLEL_TLS_CA"
    /// The server's certificate chain (PEM).
    public static let tlsCertificate = "DOCKERPARALLEL_TLS_CERTIFICATE"
    /// The server's private key (PEM): a secret, like the password.
    public static let tlsPrivateKey = "DOCKERPARALLEL_TLS_KEY"
    /// A file holding the server's private key instead of ``tlsPrivateKey`` (a swarm secret).
    public static let tlsPrivateKeyFile = "DOCKERPARALLEL_TLS_KEY_FILE"
    /// The private key (PEM) of the cluster's own certificate authority: the server signs itself
    /// a certificate for its addresses when it starts.
    public static let tlsCertificateAuthorityKey = "DOCKERPARALLEL_TLS_CA_KEY"
    /// A file holding ``tlsCertificateAuthorityKey`` instead (a swarm secret).
    public static let tlsCertificateAuthorityKeyFile = "DOCKERPARALLEL_TLS_CA_KEY_FILE"
    /// More names and addresses (comma-separated) for the certificate the server signs itself:
    /// those it is reached at that its machine cannot see (a published port's host address).
    public static let tlsNames = "DOCKERPARALLEL_TLS_NAMES"
    /// `1`: serve plain text to peers off loopback too (an explicit, loud opt-out of TLS).
    public static let insecurePlainText = "DOCKERPARALLEL_INSECURE_PLAINTEXT"
    /// A name for the worker, shown in status.
    public static let workerName = "DOCKERPARALLEL_WORKER_NAME"
    /// `0` makes the server write every batch of changes on its committer's thread, never a
    /// small one on its event loop (slower: for measuring what the event loop's writes save).
    package static let storeWritesOnEventLoop = "DOCKERPARALLEL_STORE_WRITES_ON_EVENT_LOOP"
}

extension WorkerContainer {
    /// No system packages.
    public var systemPackages: [String] { [] }
    /// No language packages.
    public var languagePackages: [String] { [] }
    /// No SSH key.
    public var sshPublicKey: String? { nil }

    /// Sets the environment DockerParallel's server entry point reads, keeping the user's own entries.
    public func configuredAsServer(configuration: ClusterConfiguration) -> Self {
        var copy = self
        copy.environment[EnvironmentKey.role] = "server"
        copy.environment[EnvironmentKey.password] = configuration.serverPassword.value
        copy.environment[EnvironmentKey.port] = String(configuration.serverPort)
        copy.environment[EnvironmentKey.jobQueueName] = configuration.jobQueueName
        let security = configuration.transportSecurity
        copy.environment[EnvironmentKey.tlsCertificate] = security.serverCertificateChain
        copy.environment[EnvironmentKey.tlsPrivateKey] = security.serverPrivateKey?.value
        copy.environment[EnvironmentKey.tlsCertificateAuthorityKey] = security.certificateAuthorityKey?.value
        copy.environment[EnvironmentKey.tlsCertificateAuthority] = security.certificateAuthority
        copy.environment[EnvironmentKey.insecurePlainText] = security.mode == .insecurePlainText ? "1" : nil
        return copy
    }

    /// Sets the environment DockerParallel's worker entry point reads, keeping the user's own entries.
    public func configuredAsWorker(configuration: ClusterConfiguration, server: Endpoint, workerNumber: Int) -> Self {
        var copy = self
        copy.environment[EnvironmentKey.role] = "worker"
        copy.environment[EnvironmentKey.password] = configuration.serverPassword.value
        copy.environment[EnvironmentKey.host] = server.host
        copy.environment[EnvironmentKey.port] = String(server.port)
        copy.environment[EnvironmentKey.jobQueueName] = configuration.jobQueueName
        copy.environment[EnvironmentKey.slots] = String(workerNumber)
        copy.environment[EnvironmentKey.tls] = server.usesTLS ? "1" : nil
        copy.environment[EnvironmentKey.tlsCertificateAuthority] = configuration.transportSecurity.certificateAuthority
        return copy
    }

    /// The same container: DockerParallel's executables run both roles.
    public func serverContainer() throws -> any WorkerContainer { self }
}
