import DockerParallelCore
import DockerParallelServer
import DockerParallelWire
import Foundation
import Logging
import NIOCore
import NIOPosix

/// A handle on one cluster: its server, its workers and the provider that runs them.
///
/// The lifecycle follows the original DockerParallel: ``startCluster()`` starts the server, sets
/// the worker number and connects; ``stopCluster(ignoreErrors:cleanup:)`` undoes it. Two handles
/// with the same job queue name are the same cluster: ``reconnect()`` adopts one that runs.
public actor DockerCluster {
    /// The provider that runs the server and the workers.
    public nonisolated let provider: any CloudProvider
    /// The container the workers run.
    public private(set) var workerContainer: any WorkerContainer
    /// The container the server runs.
    public private(set) var serverContainer: any WorkerContainer
    /// The cluster's settings.
    public internal(set) var configuration: ClusterConfiguration
    /// Where the server is and what the provider last reported.
    public internal(set) var runtime: ClusterRuntime
    /// The original's verbosity, a convenience over ``logger``'s level: 0 warnings only,
    /// 1 progress messages (`info`), 2 details (`debug`).
    public var verbosity: Int {
        didSet { logger.logLevel = Self.logLevel(verbosity: verbosity) }
    }
    /// Whether ``close()`` stops the cluster, and whether its processes go away with this one
    /// (Local provider).
    public var stopClusterOnExit: Bool

    /// How long a job's operations wait for a lost server to come back before failing.
    public var serverRecoveryTimeout: Duration = .seconds(60)

    /// Where the cluster logs: progress at `info` ("Deploying server container"), details at
    /// `debug`. Its level follows ``verbosity``.
    public private(set) var logger: Logger
    var providerInitialized = false
    var serverLost = false
    /// The worker number last seen asked of the server, which a supervisor that follows the
    /// server's requests adopts only when it changes.
    var lastRequestedWorkers: Int?
    var connection: PeerConnection?
    /// The loop that serves every connection of this handle to the server.
    nonisolated let eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()

    /// An executor on the thread that reads and writes this handle's connection to the server.
    ///
    /// Code that runs with it as its task executor preference calls the cluster without a hop
    /// to another thread and back for each reply, which is most of a small job's round trip
    /// after the network's. Keep that code short: while it computes, the connection waits.
    ///
    /// ```swift
    /// try await withTaskExecutorPreference(cluster.taskExecutor) {
    ///     for input in inputs { results.append(try await cluster.map([input], using: Square.self)[0]) }
    /// }
    /// ```
    @available(macOS 15, *)
    public nonisolated var taskExecutor: any TaskExecutor { EventLoopTaskExecutor(eventLoop: eventLoop) }

    /// Creates a handle; nothing is started until ``startCluster()`` or ``startServer()``.
    /// - Parameters:
    ///   - provider: Where to run (default: processes on this machine).
    ///   - workerContainer: What workers run (default: this executable as a worker).
    ///   - serverContainer: What the server runs (default: the worker container's server container).
    ///   - configuration: Job queue name, worker number, hardware, port, password.
    ///   - serverFromOtherSource: Endpoints of a server run by someone else; the provider then
    ///     neither starts nor stops it.
    ///   - verbosity: 0 warnings only, 1 progress (default), 2 details: sets `logger`'s level.
    ///   - stopClusterOnExit: Default `true`.
    ///   - logger: Where the cluster logs its progress (default: nowhere).
    /// - Throws: When the worker container has no server container.
    public init(
        provider: any CloudProvider = LocalProvider(),
        workerContainer: any WorkerContainer = LocalProcessContainer(),
        serverContainer: (any WorkerContainer)? = nil,
        configuration: ClusterConfiguration = ClusterConfiguration(),
        serverFromOtherSource: ServerEndpoints? = nil,
        verbosity: Int = 1,
        stopClusterOnExit: Bool = true,
        logger: Logger = Logger(label: "DockerParallel", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        self.provider = provider
        self.workerContainer = workerContainer
        self.serverContainer = try serverContainer ?? workerContainer.serverContainer()
        self.configuration = configuration
        self.runtime = ClusterRuntime(serverFromOtherSource: serverFromOtherSource != nil, serverEndpoints: serverFromOtherSource)
        self.verbosity = verbosity
        self.stopClusterOnExit = stopClusterOnExit
        var logger = logger
        logger.logLevel = Self.logLevel(verbosity: verbosity)
        self.logger = logger
    }

    // MARK: Settings

    /// Sets the verbosity: 0 warnings only, 1 progress, 2 details.
    public func setVerbosity(_ level: Int) { verbosity = level }

    /// The log level a verbosity stands for.
    static func logLevel(verbosity: Int) -> Logger.Level {
        switch verbosity {
        case ..<1: .warning
        case 1: .info
        default: .debug
        }
    }

    /// Sets whether the cluster stops when this handle is closed or this process exits.
    public func setStopClusterOnExit(_ value: Bool) { stopClusterOnExit = value }

    // MARK: Cluster

    /// Starts the server, sets the worker number and connects. When a cluster with the same job
    /// queue name already runs, reconnects to it instead.
    public func startCluster() async throws {
        try await initializeProvider()
        say("Checking if the cluster exists")
        if try await providerClusterExists() ?? false {
            say("The cluster '\(configuration.jobQueueName)' exists; reconnecting")
            try await reconnect()
            return
        }
        try await startServer()
        say("The cluster has \(configuration.expectedWorkerNumber) workers")
        try await setWorkerNumber(configuration.expectedWorkerNumber)
        _ = try await client()
    }

    /// Stops the workers and the server, keeping the expected worker number.
    /// - Parameters:
    ///   - ignoreErrors: Carry on past a failing step (each failure is reported as a message).
    ///   - cleanup: Also free what the provider keeps (state folders, networks).
    public func stopCluster(ignoreErrors: Bool = false, cleanup: Bool = false) async throws {
        say("Stopping cluster")
        connection?.close()
        connection = nil
        guard providerInitialized else { return }
        let expected = configuration.expectedWorkerNumber
        // A supervisor elsewhere that follows the server's requests stops re-deploying workers.
        if isServerRunning, let connection = try? await client() {
            _ = try? await connection.request(.setWorkers(count: 0), timeout: 2)
            connection.close()
            self.connection = nil
        }
        try await step(ignoreErrors) { try await self.setWorkerNumber(0) }
        configuration.expectedWorkerNumber = expected
        try await step(ignoreErrors) { try await self.stopServer() }
        if cleanup {
            try await step(ignoreErrors) { try await self.provider.cleanup(context: self.context(), deep: false) }
        }
    }

    /// Starts the server unless it runs already.
    public func startServer() async throws {
        try await startServer(isRestart: false)
    }

    /// Starts the server unless it runs already; a restart starts it only while its static data
    /// is stored (see ``ClusterContext/isRestart``).
    func startServer(isRestart: Bool) async throws {
        try await initializeProvider()
        if runtime.serverFromOtherSource { return }
        if isServerRunning { try await updateServerStatus() }
        guard !isServerRunning else { return }
        try await adoptStoredIdentity()
        if configuration.transportSecurity.mode == .tls, !configuration.transportSecurity.hasServerCertificate {
            // The cluster's own authority, made once and kept with its static data.
            configuration.transportSecurity = try ClusterCertificates.make(jobQueueName: configuration.jobQueueName)
        }
        say("Deploying server container")
        let container = serverContainer.configuredAsServer(configuration: configuration)
        var context = context()
        context.isRestart = isRestart
        try await provider.runServer(context: context, container: container, hardware: configuration.serverHardware)
        // Another process that started the same cluster at the same moment may have won: its
        // password, port and settings are the cluster's now.
        if let stored = try await storedStaticData(), !stored.configuration.serverPassword.value.isEmpty,
           stored.configuration.serverPassword != configuration.serverPassword {
            say("Another process started '\(configuration.jobQueueName)' first: using its server")
            var adopted = stored.configuration
            adopted.expectedWorkerNumber = configuration.expectedWorkerNumber
            configuration = adopted
        }
        runtime.serverEndpoints = try await provider.serverEndpoints(context: self.context())
    }

    /// What ``startServer()`` and ``setWorkerNumber(_:)`` would hand the provider, without
    /// starting anything: the context (with the cluster's new authority when it uses its own),
    /// the configured server container, and the worker container configured to dial `server`.
    /// `dockerparallel k8s manifests` prints the provider's objects from it.
    package func deploymentPlan(workersDialing server: Endpoint) throws
        -> (context: ClusterContext, server: any WorkerContainer, worker: any WorkerContainer)
    {
        if configuration.transportSecurity.mode == .tls, !configuration.transportSecurity.hasServerCertificate {
            configuration.transportSecurity = try ClusterCertificates.make(jobQueueName: configuration.jobQueueName)
        }
        let serverContainer = serverContainer.configuredAsServer(configuration: configuration)
        let worker = workerContainer.configuredAsWorker(configuration: configuration, server: server, workerNumber: 1)
        return (context(), serverContainer, worker)
    }

    /// Stops the server, unless it comes from another source.
    public func stopServer() async throws {
        connection?.close()
        connection = nil
        if runtime.serverFromOtherSource {
            say("The server is not managed by the cloud provider and will not be stopped")
            return
        }
        guard isServerRunning else { return }
        try await initializeProvider()
        try await provider.stopServer(context: context())
        runtime.serverEndpoints = nil
    }

    /// Whether this handle knows a running server (it does not ask the provider; see ``update()``).
    public var isServerRunning: Bool {
        runtime.serverFromOtherSource || runtime.serverEndpoints != nil
    }

    /// Sets the expected worker number, and deploys or stops workers if the server runs.
    /// - Throws: `.invalidArgument` for a negative number.
    public func setWorkerNumber(_ number: Int) async throws {
        guard number >= 0 else {
            throw DockerParallelError(.invalidArgument, "the worker number must be 0 or more, got \(number)")
        }
        configuration.expectedWorkerNumber = number
        guard isServerRunning, let endpoints = runtime.serverEndpoints,
              let endpoint = endpoints.endpoint(sameLAN: configuration.serverWorkerSameLAN) else { return }
        try await initializeProvider()
        say("Setting worker number to \(number)")
        let container = workerContainer.configuredAsWorker(configuration: configuration, server: endpoint, workerNumber: 1)
        var context = context()
        // Which workers are busy, so that scaling down stops idle ones first: asked on the open
        // connection only, briefly, so that scaling never waits on a server it cannot reach.
        if let connection, connection.isOpen, let reply = try? await connection.request(.status, timeout: 2),
           case .status(let report) = reply {
            context.workerActivity = Dictionary(report.workers.map { ($0.name, $0.running) }, uniquingKeysWith: +)
        }
        try await provider.setWorkerNumber(
            context: context, container: container, hardware: configuration.workerHardware, workerNumber: number)
        do {
            _ = try await countWorkers()
        } catch {
            say("Could not read the worker numbers: \(error)")
        }
    }

    /// The expected, running and initializing worker numbers, asking the provider.
    ///
    /// A provider that cannot count its workers (its `workerNumbers` throws `.unsupported`) is
    /// answered for by the server: the worker slots connected to it are running, none are
    /// initializing, and none run while the server does not.
    public func workerNumbers() async throws -> WorkerNumbers {
        try await initializeProvider()
        return try await countWorkers()
    }

    /// Refreshes the server's status, restarts the server if it died (its durable store lets it
    /// resume, and it keeps its password and port, so that its workers and clients carry on),
    /// and re-deploys workers that died. A server stopped on purpose (``stopServer()``,
    /// `dockerparallel down`, from any process) is not restarted.
    public func update() async throws {
        try await update(restoringWorkers: true)
    }

    /// ``update()``, optionally leaving the worker number alone (a supervisor that does not own
    /// the cluster must not undo a `scale` made elsewhere), and optionally following the worker
    /// number asked of the server (HTTP API, `scale` in another process).
    package func update(restoringWorkers: Bool, followingRequests: Bool = false) async throws {
        let wasRunning = isServerRunning
        try await updateServerStatus()
        if (wasRunning || serverLost) && !isServerRunning {
            // Remembered until the server is back or known to be stopped on purpose, so that a
            // failed restart, or a failed look at the provider, is tried again.
            serverLost = true
            if try await wasStoppedOnPurpose() {
                serverLost = false
                say("The server was stopped on purpose; not restarting it")
                throw DockerParallelError(
                    .serverNotRunning, "The server of '\(configuration.jobQueueName)' was stopped: start the cluster again to use it")
            }
            say("The server had stopped; restarting it")
            try await startServer(isRestart: true)
            serverLost = false
        }
        if restoringWorkers {
            if followingRequests, let requested = await requestedWorkers(), requested != lastRequestedWorkers {
                // A number newly asked of the server (HTTP API, `scale` elsewhere) is adopted once.
                lastRequestedWorkers = requested
                if requested != configuration.expectedWorkerNumber {
                    say("The server asks for \(requested) worker(s)")
                    configuration.expectedWorkerNumber = requested
                }
            }
            try await setWorkerNumber(configuration.expectedWorkerNumber)
        }
    }

    /// The worker number asked of the running server, or `nil` when none was or the server does
    /// not answer within two seconds (the next turn asks again).
    private func requestedWorkers() async -> Int? {
        guard isServerRunning, let connection = try? await client(),
              case .status(let report)? = try? await connection.request(.status, timeout: 2) else { return nil }
        return report.desiredWorkers
    }

    /// Asks the server for `number` workers and deploys or stops them: the number is kept by
    /// the server, so that the cluster's supervisor (``supervise(every:restoringWorkers:)``,
    /// `dockerparallel supervise`), in this process or another, keeps it too.
    /// - Throws: `.invalidArgument` for a negative number; the server's error when it cannot be told.
    public func requestWorkerNumber(_ number: Int) async throws {
        guard number >= 0 else {
            throw DockerParallelError(.invalidArgument, "the worker number must be 0 or more, got \(number)")
        }
        if isServerRunning {
            _ = try await withServerRetry { try await $0.request(.setWorkers(count: number), timeout: 10) }
            lastRequestedWorkers = number
        }
        try await setWorkerNumber(number)
    }

    /// Keeps the cluster whole until the calling task is cancelled: every `interval` it
    /// calls ``update()``, which restarts a server that died and re-deploys workers that died.
    /// A failing update is reported as a message and tried again at the next turn.
    /// - Parameters:
    ///   - restoringWorkers: Whether it also re-deploys workers to the expected number (default);
    ///     `false` restarts only the server, for a process that uses a cluster another one owns.
    ///   - followingRequests: Whether it also adopts a worker number newly asked of the server
    ///     (`PUT /api/v1/workers`, ``requestWorkerNumber(_:)``, `scale` from any process), as
    ///     `dockerparallel supervise` does.
    public func supervise(
        every interval: Duration = .milliseconds(500), restoringWorkers: Bool = true, followingRequests: Bool = false
    ) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
                try await update(restoringWorkers: restoringWorkers, followingRequests: followingRequests)
            } catch is CancellationError {
                return
            } catch {
                say("Could not update the cluster: \(error)", level: 2)
            }
        }
    }

    /// Whether this cluster runs, here or on the platform.
    /// - Throws: `.unsupported` when the provider cannot tell and this handle knows no server.
    public func clusterExists() async throws -> Bool {
        if isServerRunning { return true }
        try await initializeProvider()
        return try await provider.clusterExists(context: context())
    }

    /// Adopts the running cluster with this handle's job queue name: restores its configuration,
    /// finds its server and counts its workers. Sets ``stopClusterOnExit`` to false.
    /// - Throws: `.clusterNotFound` when no such cluster runs; `.unsupported` when the provider
    ///   cannot reconnect.
    public func reconnect() async throws {
        try await initializeProvider()
        // A provider that cannot tell whether the cluster exists may still find it in reconnect.
        guard try await providerClusterExists() ?? true else {
            throw DockerParallelError(
                .clusterNotFound,
                "The cluster with the job queue name '\(configuration.jobQueueName)' is not running!")
        }
        let data = try await provider.reconnect(context: context())
        guard data.workerContainerName == workerContainer.name else {
            throw DockerParallelError(
                .invalidState,
                "The current worker container \(workerContainer.name) is different from the \(data.workerContainerName) on the cloud")
        }
        configuration = data.configuration
        if stopClusterOnExit {
            say("stopClusterOnExit will be set to false")
            stopClusterOnExit = false
        }
        runtime.serverEndpoints = try await provider.serverEndpoints(context: context())
        configuration.expectedWorkerNumber = try await countWorkers().total
        _ = try await client()
    }

    /// The configuration stored with the cluster's server when it last started, running or
    /// died; `nil` when none is stored (never started, stopped on purpose, or cleaned up), or
    /// when the provider keeps none.
    public func storedConfiguration() async throws -> ClusterConfiguration? {
        try await initializeProvider()
        return try await storedStaticData()?.configuration
    }

    /// Frees what the provider keeps for this cluster.
    /// - Throws: `.invalidState` while the server or workers still run.
    public func cleanup(deep: Bool = false) async throws {
        try await initializeProvider()
        if isServerRunning && !runtime.serverFromOtherSource {
            throw DockerParallelError(.invalidState, "The server is still running: stop the cluster first")
        }
        if try await countWorkers().total > 0 {
            throw DockerParallelError(.invalidState, "The workers are still running: set the worker number to 0 first")
        }
        try await provider.cleanup(context: context(), deep: deep)
    }

    /// Removes the cluster from its platform without its server, for one that cannot be reached
    /// (it died, or this client cannot see its address): the provider's cleanup stops what runs
    /// of the cluster and frees what it made, as `dockerparallel down` does as a last resort.
    package func removeWithoutServer(deep: Bool) async throws {
        connection?.close()
        connection = nil
        try await initializeProvider()
        try await provider.cleanup(context: context(), deep: deep)
        runtime.serverEndpoints = nil
    }

    /// Lets go of the cluster: stops it if ``stopClusterOnExit`` is set, else only disconnects.
    public func close() async {
        if stopClusterOnExit, providerInitialized {
            try? await stopCluster(ignoreErrors: true, cleanup: true)
        }
        connection?.close()
        connection = nil
    }

    /// Runs `body` with a started cluster, and closes it afterwards, whether `body` throws or not.
    public nonisolated func withStarted<Result: Sendable>(
        _ body: @Sendable (DockerCluster) async throws -> Result
    ) async throws -> Result {
        do {
            try await startCluster()
            let result = try await body(self)
            await close()
            return result
        } catch {
            await close()
            throw error
        }
    }
}
