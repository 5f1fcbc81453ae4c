import DockerEngineProvider
import DockerParallelCore
import Foundation
import Logging
import ProviderKit

/// Runs the server and the workers as Docker Swarm services, through a manager's Engine API.
///
/// The server is the service `dockerparallel-<name>-server` (one replica); the workers are
/// services `dockerparallel-<name>-worker-<slots>` whose replicas each run `<slots>` worker slots;
/// scaling sets their replicas, and swarm replaces a task that dies. Every service carries the
/// label `dockerparallel.queue` with the cluster's job queue name; the server's also carries its
/// static data without its secrets, so that another process finds the cluster by its name.
///
/// The password (and the server's and its authority's TLS keys) travel as swarm secrets, mounted under `/run/secrets`
/// and named by `DOCKERPARALLEL_PASSWORD_FILE`: never in an environment or a label. A process
/// that reconnects reads the password back from a container of the cluster on the node it talks to.
public actor SwarmProvider: CloudProvider {
    /// Where the swarm manager is and how services are run.
    public struct Configuration: Sendable {
        /// A manager's daemon (default: `DOCKER_HOST`, else `/var/run/docker.sock`).
        public var host: DockerHost
        /// `host` (default): tasks use their node's network. Otherwise the name of an overlay
        /// network, created when missing (and removed by a deep cleanup).
        public var network: String
        /// On an overlay network, how services are reached: `dnsrr` (default; it needs no IPVS)
        /// or `vip`.
        public var endpointMode: String
        /// With host networking: the address the server binds and clients and workers dial
        /// (default `127.0.0.1`, for a one-node swarm). On an overlay network: the address at
        /// which clients reach the port the server publishes on its node.
        public var serverAddress: String
        /// Placement constraints of every service, as `docker service create --constraint`
        /// takes them (`node.role==manager`, `node.labels.pool==batch`).
        public var constraints: [String]
        /// Placement constraints of the server alone, added to ``constraints``.
        public var serverConstraints: [String]
        /// Whether hardware is also reserved (default `false`: it is only a limit). Reserved,
        /// the scheduler places a task only on a node with that much free; one that fits
        /// nowhere stays pending.
        public var reservesHardware: Bool
        /// How long to wait for the server to run and listen.
        public var startTimeout: Duration
        /// How long a stopped task gets to exit (workers drain) before it is killed.
        public var stopGracePeriod: Duration

        /// Creates a configuration.
        public init(
            host: DockerHost = (try? DockerHost.fromEnvironment()) ?? .defaultSocket, network: String = "host",
            endpointMode: String = "dnsrr", serverAddress: String = "127.0.0.1", constraints: [String] = [],
            serverConstraints: [String] = [], reservesHardware: Bool = false, startTimeout: Duration = .seconds(60),
            stopGracePeriod: Duration = .seconds(10)
        ) {
            self.host = host
            self.network = network
            self.endpointMode = endpointMode
            self.serverAddress = serverAddress
            self.constraints = constraints
            self.serverConstraints = serverConstraints
            self.reservesHardware = reservesHardware
            self.startTimeout = startTimeout
            self.stopGracePeriod = stopGracePeriod
        }

        var usesHostNetwork: Bool { network == "host" }
    }

    /// Label keys.
    public enum Label {
        /// The cluster's job queue name.
        public static let queue = "dockerparallel.queue"
        /// `server`, `worker` or (on a secret) `password`, `tls-key` and `tls-ca-key`.
        public static let role = "dockerparallel.role"
        /// Worker slots in each task of a worker service.
        public static let workers = "dockerparallel.workers"
        /// The server's port.
        public static let port = "dockerparallel.port"
        /// The cluster's static data (base64 JSON) without its secrets, on the server service.
        public static let staticData = "dockerparallel.static-data"
        /// The name of the secret holding the password, on the server service.
        public static let passwordSecret = "dockerparallel.password-secret"
        /// The name of the secret holding the server's TLS key, on the server service.
        public static let tlsKeySecret = "dockerparallel.tls-key-secret"
        /// The name of the secret holding the cluster authority's key, on the server service.
        public static let tlsAuthorityKeySecret = "dockerparallel.tls-ca-key-secret"
        /// A digest of the service's spec: a service whose spec changed is updated.
        public static let spec = "dockerparallel.spec"
        /// The job queue name on the tasks' containers (a key of their own, so that the Docker
        /// provider does not take them for its containers).
        public static let containerQueue = "dockerparallel.swarm.queue"
        /// `server` or `worker` on the tasks' containers.
        public static let containerRole = "dockerparallel.swarm.role"
    }

    /// The exit status of a container whose start-up failed (packages, bad settings).
    public static let startupFailureStatus = DockerEngineProvider.startupFailureStatus

    /// The provider's configuration.
    public let configuration: Configuration
    let engine: DockerEngineClient
    let pollInterval: Duration

    /// Creates a provider.
    /// - Throws: `.invalidArgument` when the TLS files cannot be read.
    public init(configuration: Configuration = Configuration()) throws {
        self.configuration = configuration
        self.engine = try DockerEngineClient(host: configuration.host)
        self.pollInterval = .milliseconds(100)
    }

    /// Creates a provider that talks to the manager through `transport` (tests pass a
    /// `RecordedTransport`).
    package init(
        configuration: Configuration, transport: any HTTPTransport, retry: RetryPolicy = .none,
        pollInterval: Duration = .milliseconds(1)
    ) {
        self.configuration = configuration
        self.engine = DockerEngineClient(host: configuration.host, transport: transport, retry: retry, sleep: { _ in })
        self.pollInterval = pollInterval
    }

    // MARK: CloudProvider

    /// Checks that the daemon is a swarm manager.
    /// - Throws: `.providerFailed` naming the command that makes one.
    public func initialize(context: ClusterContext) async throws {
        try ClusterConfiguration.validate(jobQueueName: context.configuration.jobQueueName)
        let info = try await engine.get(EngineInfo.self, "/info")
        guard info.Swarm?.LocalNodeState == "active" else {
            throw DockerParallelError(
                .providerFailed,
                "the Docker engine at \(configuration.host) is not part of a swarm (its state is '\(info.Swarm?.LocalNodeState ?? "unknown")'). Make it a manager with `docker swarm init --advertise-addr <its address>`, or point DOCKER_HOST at a manager.")
        }
        guard info.Swarm?.ControlAvailable == true else {
            throw DockerParallelError(
                .providerFailed,
                "the Docker engine at \(configuration.host) is a swarm worker, not a manager: point DOCKER_HOST at a manager (`docker node ls` on one lists them)")
        }
    }

    public func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws {
        if context.isRestart, try await storedStaticData(context: context) == nil {
            throw DockerParallelError(
                .serverNotRunning, "the server of '\(context.configuration.jobQueueName)' was stopped on purpose while it was being restarted")
        }
        let name = Self.serverName(context)
        if let existing = try await service(named: name) {
            // Running already, or started by another process: swarm keeps it going.
            return try await waitForServer(existing, isNew: false)
        }
        try await engine.requireImage(container.image)
        let networkID = try await ensureNetwork(context)
        let port = context.configuration.serverPort == 0
            ? try await DockerEngineProvider.freePort(on: configuration.usesHostNetwork ? configuration.serverAddress : "0.0.0.0")
            : context.configuration.serverPort
        var environment = container.environment
        environment[EnvironmentKey.host] = configuration.usesHostNetwork ? configuration.serverAddress : "0.0.0.0"
        environment[EnvironmentKey.port] = String(port)
        // A published port is reached at an address the task cannot see.
        environment[EnvironmentKey.tlsNames] = configuration.serverAddress
        environment[EnvironmentKey.storePath] = "/workspace/store/broker.sqlite"
        let secrets = try await makeSecrets(context, from: &environment)
        var staticData = context.staticData
        staticData.configuration.serverPort = port
        var labels = [
            Label.queue: context.configuration.jobQueueName, Label.role: "server", Label.port: String(port),
            Label.staticData: try JSONEncoder().encode(Self.withoutSecrets(staticData)).base64EncodedString(),
        ]
        for secret in secrets { labels[secret.label] = secret.reference.SecretName }
        let spec = Self.serviceSpec(
            name: name, labels: labels, container: container, environment: environment,
            secrets: secrets.map(\.reference), hardware: hardware, replicas: 1,
            mounts: [.init(Type: "volume", Source: Self.volumeName(context), Target: "/workspace/store")],
            publishing: configuration.usesHostNetwork ? nil : port, networkID: networkID, serverConstraints: true,
            configuration: configuration)
        var isNew = true
        do {
            _ = try await createService(spec)
        } catch is NameInUse {
            // Another process created it first: its secrets are the ones in use.
            for secret in secrets { try? await removeSecret(secret.reference.SecretID) }
            isNew = false
        }
        guard let created = try await service(named: name) else {
            throw DockerParallelError(.serverStartFailed, "the server service \(name) was removed while it started")
        }
        try await waitForServer(created, isNew: isNew)
        try await removeUnusedSecrets(context)
        context.logger.debug("started the server service", metadata: ["id": "\(created.ID.prefix(12))", "port": "\(port)"])
    }

    /// Removes the server service and its secrets, and waits until its container (on this
    /// node) has exited, so that a new server can open its store; the store's volume stays
    /// until a deep cleanup.
    public func stopServer(context: ClusterContext) async throws {
        if let server = try await service(named: Self.serverName(context)) { try await removeService(server.ID) }
        try await removeUnusedSecrets(context)
        try await waitUntilContainersAreGone(context, role: "server")
    }

    public func serverStatus(context: ClusterContext) async throws -> ServerStatus {
        guard let server = try await service(named: Self.serverName(context)) else { return .stopped }
        return try await isServing(server) ? .running : .initializing
    }

    /// With host networking both endpoints are the server address; on an overlay network,
    /// clients use the port published on the server address and workers the service's name.
    public func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints {
        guard let server = try await service(named: Self.serverName(context)), let port = server.labels[Label.port].flatMap(Int.init)
        else {
            throw DockerParallelError(
                .serverStartFailed, "the server service of '\(context.configuration.jobQueueName)' is not running")
        }
        // Told from the service, so that a process reconnecting without the network option finds it.
        let hostNetwork = server.usesHostNetwork
        let offLoopback = !hostNetwork || !TransportSecurity.isLoopback(configuration.serverAddress)
        let published = Endpoint(host: configuration.serverAddress, port: port, usesTLS: offLoopback)
        guard !hostNetwork else { return ServerEndpoints(publicEndpoint: published, privateEndpoint: published) }
        return ServerEndpoints(
            publicEndpoint: published, privateEndpoint: Endpoint(host: Self.serverName(context), port: port, usesTLS: true))
    }

    public func setWorkerNumber(
        context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int
    ) async throws {
        let wanted = WorkerLayout(workers: workerNumber, slotsPerContainer: container.maxWorkersPerContainer)
        let current = try await services(context, role: "worker")
        // Sizes no longer wanted go (their workers drain and hand their tasks back).
        for service in current where wanted.replicas[service.slots] == nil {
            try await removeService(service.ID)
        }
        guard !wanted.replicas.isEmpty else { return }
        guard let server = try await service(named: Self.serverName(context)) else {
            throw DockerParallelError(
                .serverNotRunning, "the server service of '\(context.configuration.jobQueueName)' is not running: start the cluster first")
        }
        let secret = try await passwordSecretReference(of: server, context: context)
        let networkID = try await ensureNetwork(context)
        try await engine.requireImage(container.image)
        for (slots, replicas) in wanted.replicas.sorted(by: { $0.key > $1.key }) {
            let name = Self.workerName(context, slots: slots)
            var environment = container.environment
            environment[EnvironmentKey.password] = nil
            environment[EnvironmentKey.passwordFile] = Self.secretPath(secret.SecretName)
            environment[EnvironmentKey.slots] = String(slots)
            environment[EnvironmentKey.workerName] = "{{.Service.Name}}.{{.Task.Slot}}"
            let labels = [Label.queue: context.configuration.jobQueueName, Label.role: "worker", Label.workers: String(slots)]
            let spec = Self.serviceSpec(
                name: name, labels: labels, container: container, environment: environment, secrets: [secret],
                hardware: hardware, replicas: replicas, mounts: [], publishing: nil, networkID: networkID,
                serverConstraints: false, configuration: configuration)
            if let existing = current.first(where: { $0.Spec.Name == name }) {
                if existing.labels[Label.spec] != spec.Labels[Label.spec] || existing.replicas != replicas {
                    try await updateService(existing, spec: spec)
                }
            } else {
                do {
                    _ = try await createService(spec)
                } catch is NameInUse {
                    // Another process created it first: make it what this one wants.
                    if let existing = try await service(named: name) { try await updateService(existing, spec: spec) }
                }
            }
        }
        if let failure = try await startupFailure(of: try await services(context, role: "worker")) {
            throw DockerParallelError(.providerFailed, failure)
        }
    }

    /// Counted from the worker services' tasks: running ones, and those on their way.
    public func workerNumbers(context: ClusterContext) async throws -> WorkerNumbers {
        var numbers = WorkerNumbers(expected: context.configuration.expectedWorkerNumber, initializing: 0, running: 0)
        let workers = try await services(context, role: "worker")
        guard !workers.isEmpty else { return numbers }
        let slots = Dictionary(workers.map { ($0.ID, $0.slots) }, uniquingKeysWith: { first, _ in first })
        for task in try await tasks(of: workers.map(\.ID)) {
            let count = slots[task.ServiceID] ?? 1
            if task.isRunning {
                numbers.running += count
            } else if task.isStarting {
                numbers.initializing += count
            }
        }
        return numbers
    }

    public func clusterExists(context: ClusterContext) async throws -> Bool {
        try await service(named: Self.serverName(context)) != nil
    }

    /// The static data on the server service's labels, with the password read back from the
    /// secret in one of the cluster's containers on this node.
    public func reconnect(context: ClusterContext) async throws -> StaticData {
        guard let data = try await storedStaticData(context: context) else {
            throw DockerParallelError(
                .clusterNotFound,
                "no server service of the cluster '\(context.configuration.jobQueueName)' is on the swarm at \(configuration.host)")
        }
        return data
    }

    /// The static data of the server service while it exists, with its secrets read back:
    /// swarm restarts a server task that dies, so only a removed service (stopped on purpose)
    /// has none.
    public func storedStaticData(context: ClusterContext) async throws -> StaticData? {
        guard let server = try await service(named: Self.serverName(context)),
              let text = server.labels[Label.staticData], let data = Data(base64Encoded: text) else { return nil }
        var staticData = try JSONDecoder().decode(StaticData.self, from: data)
        if let secret = server.labels[Label.passwordSecret] {
            staticData.configuration.serverPassword = ServerPassword(try await readSecret(secret, context: context))
        }
        if let secret = server.labels[Label.tlsKeySecret] {
            staticData.configuration.transportSecurity.serverPrivateKey = ServerPassword(try await readSecret(secret, context: context))
        }
        if let secret = server.labels[Label.tlsAuthorityKeySecret] {
            staticData.configuration.transportSecurity.certificateAuthorityKey = ServerPassword(
                try await readSecret(secret, context: context))
        }
        return staticData
    }

    /// Removes the cluster's services and secrets; `deep` also the overlay network it created
    /// and the store's volume (once the server's container is gone).
    public func cleanup(context: ClusterContext, deep: Bool) async throws {
        for service in try await services(context, role: nil) { try await removeService(service.ID) }
        try await removeUnusedSecrets(context, keepingReferenced: false)
        guard deep else { return }
        let filters = Self.selector(context).dockerFilters
        for network in try await engine.get([NetworkSummary].self, "/networks", query: ["filters": filters]) {
            _ = try? await engine.send(.DELETE, "/networks/\(network.Id)")
        }
        try await waitUntilContainersAreGone(context, role: nil)
        do {
            try await engine.send(.DELETE, "/volumes/\(Self.volumeName(context))")
        } catch let error as RESTError where error.status == 404 {
            // Never created, or already gone.
        }
    }

    /// The names of the clusters that have a server service on the swarm.
    public func clusterNames() async throws -> [String] {
        let servers = try await engine.get(
            [Service].self, "/services", query: ["filters": LabelSelector([Label.role: "server"]).dockerFilters])
        return Set(servers.compactMap { $0.labels[Label.queue] }).sorted()
    }
}
