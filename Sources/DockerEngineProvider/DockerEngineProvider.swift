import DockerParallelCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import ProviderKit

/// Runs the server and the workers as containers on a Docker engine, through its HTTP API.
///
/// Every container carries the label `dockerparallel.queue` with the cluster's job queue name,
/// and `dockerparallel.role` (`server` or `worker`); the server container also carries the
/// cluster's static data, so that another process finds the cluster by its name and reconnects.
/// The broker's store lives in a named volume, `dockerparallel-<name>-store`, so a server
/// container that dies is replaced without losing a task; a deep cleanup removes it.
public actor DockerEngineProvider: CloudProvider {
    /// Where the daemon is and how containers are run.
    public struct Configuration: Sendable {
        /// The daemon (default: `DOCKER_HOST`, else `/var/run/docker.sock`).
        public var host: DockerHost
        /// The containers' network mode (default `host`).
        public var networkMode: String
        /// With host networking: the address the server binds and clients and workers dial
        /// (default `127.0.0.1`; use the machine's address for workers on other machines).
        public var serverAddress: String
        /// How long to wait for the server container to listen.
        public var startTimeout: Duration
        /// How long a stopped container gets to exit (workers drain) before it is killed.
        public var stopGracePeriod: Duration

        /// Creates a configuration.
        public init(
            host: DockerHost = (try? DockerHost.fromEnvironment()) ?? .defaultSocket, networkMode: String = "host",
            serverAddress: String = "127.0.0.1", startTimeout: Duration = .seconds(60), stopGracePeriod: Duration = .seconds(10)
        ) {
            self.host = host
            self.networkMode = networkMode
            self.serverAddress = serverAddress
            self.startTimeout = startTimeout
            self.stopGracePeriod = stopGracePeriod
        }
    }

    /// Label keys.
    public enum Label {
        /// The cluster's job queue name.
        public static let queue = "dockerparallel.queue"
        /// `server` or `worker`.
        public static let role = "dockerparallel.role"
        /// Worker slots in a worker container.
        public static let workers = "dockerparallel.workers"
        /// The server's port.
        public static let port = "dockerparallel.port"
        /// The cluster's static data (base64 JSON), on the server container.
        public static let staticData = "dockerparallel.static-data"
    }

    /// The exit status of a container whose start-up failed (packages, bad settings).
    public static let startupFailureStatus = 78

    /// The provider's configuration.
    public let configuration: Configuration
    let engine: DockerEngineClient

    /// Creates a provider.
    /// - Throws: `.invalidArgument` when the TLS files cannot be read.
    public init(configuration: Configuration = Configuration()) throws {
        self.configuration = configuration
        self.engine = try DockerEngineClient(host: configuration.host)
    }

    /// Creates a provider that talks to the daemon through `transport` (tests pass a
    /// `RecordedTransport`).
    /// - Parameters:
    ///   - retry: When to send a request again.
    ///   - sleep: Waits between attempts.
    package init(
        configuration: Configuration, transport: any HTTPTransport, retry: RetryPolicy = RetryPolicy(),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.configuration = configuration
        self.engine = DockerEngineClient(host: configuration.host, transport: transport, retry: retry, sleep: sleep)
    }

    // MARK: CloudProvider

    public func initialize(context: ClusterContext) async throws {
        try ClusterConfiguration.validate(jobQueueName: context.configuration.jobQueueName)
        let version: EngineVersion
        do {
            version = try await engine.get(EngineVersion.self, "/version")
        } catch let error as RESTError {
            throw DockerParallelError(
                .providerFailed,
                "the Docker daemon at \(configuration.host) refused the API's version request (\(error.status ?? 0): \(error.message)). Check DOCKER_HOST, and DOCKER_TLS_VERIFY with DOCKER_CERT_PATH for a TLS daemon.")
        }
        context.logger.debug("Docker engine", metadata: ["version": "\(version.Version)", "api": "\(version.ApiVersion)"])
    }

    public func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws {
        let name = Self.serverName(context)
        var port = context.configuration.serverPort
        // Another process may be replacing the same dead container (two restarting the cluster
        // at once): whoever creates the name first starts the server, the others wait for it.
        let deadline = ContinuousClock.now + configuration.startTimeout
        if context.isRestart, try await storedStaticData(context: context) == nil {
            throw DockerParallelError(
                .serverNotRunning, "the server of '\(context.configuration.jobQueueName)' was stopped on purpose while it was being restarted")
        }
        while true {
            if let existing = try await inspect(name) {
                if existing.State.Running { return }
                if existing.State.Status == "created" || existing.State.Status == "restarting" {
                    // Another process is starting it, or died before it could: starting a
                    // started container is harmless, and one that cannot start is removed.
                    try await start(existing.Id, name: name)
                    return try await waitForServer(existing.Id, name: name)
                }
                // A server container that died: replaced, on the same port, with the same store.
                // It steps aside under a name of its own and stays until its successor runs, so
                // that its static data (the cluster's identity) can be read all along.
                if port == 0, let old = existing.Config.Labels?[Label.port].flatMap(Int.init) { port = old }
                try await rename(existing.Id, to: "\(name)-dead-\(existing.Id.prefix(12))")
            }
            do {
                try await createServer(context: context, name: name, container: container, hardware: hardware, port: port)
                try await removeDeadServers(context, name: name)
                return
            } catch is NameInUse {
                // The dead one is still being removed, or another process created the new one.
                guard ContinuousClock.now < deadline else {
                    throw DockerParallelError(.timedOut, "the server container \(name) could not be replaced within \(configuration.startTimeout)")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    private func createServer(
        context: ClusterContext, name: String, container: any WorkerContainer, hardware: Hardware, port: Int
    ) async throws {
        try await requireImage(container.image)
        try await ensureNetwork(context)
        let port = port == 0 ? try await Self.freePort(on: configuration.serverAddress) : port
        var environment = container.environment
        environment[EnvironmentKey.host] = configuration.networkMode == "host" ? configuration.serverAddress : "0.0.0.0"
        environment[EnvironmentKey.port] = String(port)
        // A published port is reached at the daemon's address, which the container cannot see.
        environment[EnvironmentKey.tlsNames] = configuration.serverAddress
        environment[EnvironmentKey.storePath] = "/workspace/store/broker.sqlite"
        var staticData = context.staticData
        staticData.configuration.serverPort = port
        let labels = [
            Label.queue: context.configuration.jobQueueName, Label.role: "server", Label.port: String(port),
            Label.staticData: try JSONEncoder().encode(staticData).base64EncodedString(),
        ]
        let id = try await create(
            name: name, container: container, environment: environment, labels: labels, hardware: hardware,
            binds: ["\(Self.volumeName(context)):/workspace/store"], publishing: port)
        try await start(id, name: name)
        try await waitForServer(id, name: name)
        context.logger.debug("started the server container", metadata: ["id": "\(id.prefix(12))", "port": "\(port)"])
    }

    /// Waits until a server container listens on its port; one that exits first is an error
    /// with its log.
    private func waitForServer(_ id: String, name: String) async throws {
        let deadline = ContinuousClock.now + configuration.startTimeout
        while true {
            guard let state = try await inspect(id) else {
                throw DockerParallelError(.serverStartFailed, "the server container \(name) was removed while it started")
            }
            let port = state.Config.Labels?[Label.port].flatMap(Int.init) ?? 0
            if await isListening(state, port: port) { return }
            if Self.isDead(state.State.Status) {
                throw DockerParallelError(
                    .serverStartFailed,
                    "the server container \(name) exited with status \(state.State.ExitCode) at start-up. Its log says:\n\(try await logTail(id))")
            }
            guard ContinuousClock.now < deadline else {
                throw DockerParallelError(
                    .timedOut,
                    "the server container \(name) did not listen on \(configuration.serverAddress):\(port) within \(configuration.startTimeout). Its log says:\n\(try await logTail(id))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Stops and removes the server container, and with it the static data on its labels.
    public func stopServer(context: ClusterContext) async throws {
        let name = Self.serverName(context)
        if let existing = try await inspect(name) { try await stopAndRemove(existing.Id) }
        try await removeDeadServers(context, name: name)
    }

    /// Removes the dead server containers that stepped aside for a successor.
    private func removeDeadServers(_ context: ClusterContext, name: String) async throws {
        for server in try await list(context, role: "server") where server.name != name && Self.isDead(server.State) {
            try await remove(server.Id)
        }
    }

    public func serverStatus(context: ClusterContext) async throws -> ServerStatus {
        guard let server = try await inspect(Self.serverName(context)), server.State.Running,
              let port = server.Config.Labels?[Label.port].flatMap(Int.init) else { return .stopped }
        return await isListening(server, port: port) ? .running : .initializing
    }

    /// With host networking both endpoints are the server address; on another network, clients
    /// use the port published on the server address and workers the container's own address.
    public func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints {
        guard let server = try await inspect(Self.serverName(context)), server.State.Running,
              let port = server.Config.Labels?[Label.port].flatMap(Int.init) else {
            throw DockerParallelError(
                .serverStartFailed, "the server container of '\(context.configuration.jobQueueName)' is not running")
        }
        // Off the host network, or on a host address off loopback, the server speaks TLS.
        let offLoopback = !usesHostNetwork || !TransportSecurity.isLoopback(configuration.serverAddress)
        let published = Endpoint(host: configuration.serverAddress, port: port, usesTLS: offLoopback)
        guard !usesHostNetwork, let address = server.address(on: configuration.networkMode) else {
            return ServerEndpoints(publicEndpoint: published, privateEndpoint: published)
        }
        return ServerEndpoints(publicEndpoint: published, privateEndpoint: Endpoint(host: address, port: port, usesTLS: true))
    }

    public func setWorkerNumber(
        context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int
    ) async throws {
        var workers = try await list(context, role: "worker")
        // Dead worker containers go; one whose start-up failed is reported instead of retried.
        var startupFailure: String?
        for dead in workers where Self.isDead(dead.State) {
            if startupFailure == nil, let state = try await inspect(dead.Id), state.State.ExitCode == Self.startupFailureStatus {
                startupFailure = "the worker container \(dead.name) failed at start-up. Its log says:\n\(try await logTail(dead.Id))"
            }
            try await remove(dead.Id)
        }
        workers.removeAll { Self.isDead($0.State) }
        if let startupFailure { throw DockerParallelError(.providerFailed, startupFailure) }

        let plan = ScalingPlan(
            // Each container's worker is named after it: the server's report says which are busy.
            current: workers.map {
                ScalingPlan.Container(
                    id: $0.Id, slots: $0.slots, order: $0.Created ?? 0, activity: ScalingPlan.activity(of: $0.name, in: context.workerActivity))
            },
            slotsPerContainer: container.maxWorkersPerContainer, wantedWorkers: workerNumber)
        // Too many: stop idle containers first, then the newest (their workers drain and hand tasks back).
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in plan.idsToStop { group.addTask { try await self.stopAndRemove(id) } }
            try await group.waitForAll()
        }
        guard !plan.sizesToStart.isEmpty else { return }
        try await requireImage(container.image)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for slots in plan.sizesToStart {
                group.addTask {
                    let name = "dockerparallel-\(context.configuration.jobQueueName)-worker-\(Self.randomSuffix())"
                    var environment = container.environment
                    environment[EnvironmentKey.slots] = String(slots)
                    environment[EnvironmentKey.workerName] = name
                    let labels = [
                        Label.queue: context.configuration.jobQueueName, Label.role: "worker", Label.workers: String(slots),
                    ]
                    let id = try await self.create(
                        name: name, container: container, environment: environment, labels: labels, hardware: hardware, binds: nil)
                    try await self.start(id, name: name)
                }
            }
            try await group.waitForAll()
        }
    }

    public func workerNumbers(context: ClusterContext) async throws -> WorkerNumbers {
        var numbers = WorkerNumbers(expected: context.configuration.expectedWorkerNumber, initializing: 0, running: 0)
        for worker in try await list(context, role: "worker") {
            switch worker.State {
            case "running": numbers.running += worker.slots
            case "created", "restarting": numbers.initializing += worker.slots
            default: break
            }
        }
        return numbers
    }

    public func clusterExists(context: ClusterContext) async throws -> Bool {
        try await inspect(Self.serverName(context))?.State.Running ?? false
    }

    public func reconnect(context: ClusterContext) async throws -> StaticData {
        let name = context.configuration.jobQueueName
        guard let server = try await inspect(Self.serverName(context)),
              let text = server.Config.Labels?[Label.staticData], let data = Data(base64Encoded: text) else {
            throw DockerParallelError(
                .clusterNotFound, "no server container of the cluster '\(name)' is on the Docker engine at \(configuration.host)")
        }
        return try JSONDecoder().decode(StaticData.self, from: data)
    }

    /// The static data on the server container's labels, running or dead (or one that died and
    /// is being replaced).
    public func storedStaticData(context: ClusterContext) async throws -> StaticData? {
        var text = try await inspect(Self.serverName(context))?.Config.Labels?[Label.staticData]
        if text == nil {
            text = try await list(context, role: "server").lazy.compactMap { $0.Labels?[Label.staticData] }.first
        }
        guard let text, let data = Data(base64Encoded: text) else { return nil }
        return try JSONDecoder().decode(StaticData.self, from: data)
    }

    public func cleanup(context: ClusterContext, deep: Bool) async throws {
        for container in try await list(context, role: nil) { try await remove(container.Id) }
        if deep {
            // Networks this provider created for the cluster.
            struct NetworkSummary: Decodable { var Id: String }
            let filters = Self.selector(context).dockerFilters
            for network in try await engine.get([NetworkSummary].self, "/networks", query: ["filters": filters]) {
                _ = try? await engine.send(.DELETE, "/networks/\(network.Id)")
            }
            do {
                try await engine.send(.DELETE, "/volumes/\(Self.volumeName(context))")
            } catch let error as RESTError where error.status == 404 {
                // Never created, or already gone.
            }
        }
    }

    /// The names of the clusters that have a server container on the engine, running or not.
    public func clusterNames() async throws -> [String] {
        let filters = LabelSelector([Label.role: "server"]).dockerFilters
        let servers = try await engine.get([ContainerSummary].self, "/containers/json", query: ["all": "true", "filters": filters])
        return Set(servers.compactMap { $0.Labels?[Label.queue] }).sorted()
    }
}

extension ContainerSummary {
    /// Worker slots in the container.
    var slots: Int { Labels?[DockerEngineProvider.Label.workers].flatMap(Int.init) ?? 1 }
    /// The container's name without the leading slash.
    var name: String { Names.first.map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 } ?? String(Id.prefix(12)) }
}
