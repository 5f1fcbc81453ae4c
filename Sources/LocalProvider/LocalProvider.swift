#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import DockerParallelCore
import Foundation

/// The embedded default provider: the server and the workers are processes on this machine.
///
/// Each cluster has a state folder, `<stateDirectory>/<jobQueueName>`, holding the processes' ids,
/// their logs, the server's endpoint and the static data (mode 0600: it holds the password).
/// Processes run in their own sessions, so a named cluster outlives the program that started it;
/// with `stopClusterOnExit` they watch the starting process and exit when it is gone.
public actor LocalProvider: CloudProvider {
    /// Where state lives and how long to wait.
    public struct Configuration: Sendable {
        /// The folder holding one folder per cluster.
        public var stateDirectory: String
        /// The address the server binds and workers dial.
        public var host: String
        /// How long to wait for the server to listen.
        public var startTimeout: Duration
        /// How long a stopped worker or server gets to exit before it is killed.
        public var stopGracePeriod: Duration
        /// Whether the server keeps tasks and results in its SQLite store (default); `false` keeps
        /// them in memory only (faster, lost with the server).
        public var durable: Bool

        /// Creates a configuration.
        /// - Parameters:
        ///   - stateDirectory: Default `~/.dockerparallel/clusters`.
        ///   - host: Default `127.0.0.1`.
        ///   - startTimeout: Default 15 s.
        ///   - stopGracePeriod: Default 10 s.
        ///   - durable: Keep tasks in the SQLite store (default `true`).
        public init(
            stateDirectory: String = LocalProvider.defaultStateDirectory, host: String = "127.0.0.1",
            startTimeout: Duration = .seconds(15), stopGracePeriod: Duration = .seconds(10), durable: Bool = true
        ) {
            self.durable = durable
            self.stateDirectory = stateDirectory
            self.host = host
            self.startTimeout = startTimeout
            self.stopGracePeriod = stopGracePeriod
        }
    }

    /// `~/.dockerparallel/clusters`.
    public static var defaultStateDirectory: String {
        FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".dockerparallel/clusters").path
    }

    /// The provider's configuration.
    public let configuration: Configuration
    private var nextWorkerNumber = 0

    /// Creates a provider.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// The state folder of a cluster.
    public nonisolated func clusterDirectory(for jobQueueName: String) -> String {
        (configuration.stateDirectory as NSString).appendingPathComponent(jobQueueName)
    }

    /// The server's log file of a cluster.
    public nonisolated func serverLog(for jobQueueName: String) -> String {
        (clusterDirectory(for: jobQueueName) as NSString).appendingPathComponent("server.log")
    }

    // MARK: CloudProvider

    public func initialize(context: ClusterContext) async throws {
        try ClusterConfiguration.validate(jobQueueName: context.configuration.jobQueueName)
        try FileManager.default.createDirectory(
            atPath: configuration.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    public func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws {
        let name = context.configuration.jobQueueName
        let files = ClusterFiles(directory: clusterDirectory(for: name))
        try files.create()
        // Under the cluster's lock, so that two processes restarting it at once start one server.
        try files.withLock {
            if let pid = files.serverPID, ProcessControl.isAlive(pid) { return }
            if context.isRestart, try files.storedStaticData() == nil {
                throw DockerParallelError(
                    .serverNotRunning, "the server of '\(name)' was stopped on purpose while it was being restarted")
            }
            try files.writeStaticData(context.staticData)
            var environment = container.environment
            // A restarted server asks for the port it had, so that peers find it where it was.
            if context.configuration.serverPort == 0, let previous = files.serverEndpoint?.port {
                environment[EnvironmentKey.preferredPort] = String(previous)
            }
            files.remove(files.endpoint)
            environment[EnvironmentKey.host] = configuration.host
            environment[EnvironmentKey.endpointFile] = files.endpoint
            environment[EnvironmentKey.unixSocketPath] = files.socket ?? ""
            environment[EnvironmentKey.storePath] = configuration.durable ? files.store : ""
            if context.stopClusterOnExit { environment[EnvironmentKey.ownerProcessID] = String(getpid()) }
            // What `ps` shows: which process this is, and of which cluster (never the password).
            let pid = try ProcessControl.spawnDetached(
                executable: container.image, arguments: ["server", "--name", name], environment: environment,
                logFile: files.serverLog)
            try files.write(String(pid), to: files.serverPIDFile)
            context.logger.debug("started the server process", metadata: ["pid": "\(pid)"])
        }
    }

    /// Stops the server on purpose: its static data goes first, so that nothing restarts it,
    /// then the server and its workers.
    public func stopServer(context: ClusterContext) async throws {
        let files = ClusterFiles(directory: clusterDirectory(for: context.configuration.jobQueueName))
        guard FileManager.default.fileExists(atPath: files.directory) else { return }
        let pid = try files.withLock { () -> pid_t? in
            files.remove(files.staticDataFile)
            return files.serverPID
        }
        if let pid { await ProcessControl.terminate(pid, grace: configuration.stopGracePeriod.inSeconds) }
        files.remove(files.serverPIDFile)
        files.remove(files.endpoint)
        // Workers cannot do anything without their server.
        for worker in files.workers() {
            await ProcessControl.terminate(worker.pid, grace: 0)
            files.remove(worker.pidFile)
            files.remove(worker.readyFile)
        }
    }

    public func serverStatus(context: ClusterContext) async throws -> ServerStatus {
        let files = ClusterFiles(directory: clusterDirectory(for: context.configuration.jobQueueName))
        guard let pid = files.serverPID, ProcessControl.isAlive(pid) else { return .stopped }
        return files.serverEndpoint == nil ? .initializing : .running
    }

    public func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints {
        let files = ClusterFiles(directory: clusterDirectory(for: context.configuration.jobQueueName))
        let deadline = ContinuousClock.now + configuration.startTimeout
        while true {
            if let endpoint = files.serverEndpoint {
                return ServerEndpoints(publicEndpoint: endpoint, privateEndpoint: endpoint)
            }
            guard let pid = files.serverPID, ProcessControl.isAlive(pid) else {
                throw DockerParallelError(
                    .serverStartFailed,
                    "the server of '\(context.configuration.jobQueueName)' is not running. Its log says:\n\(files.tail(of: files.serverLog))")
            }
            if ContinuousClock.now > deadline {
                throw DockerParallelError(
                    .timedOut,
                    "the server of '\(context.configuration.jobQueueName)' did not start listening within \(configuration.startTimeout); see \(files.serverLog)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    public func setWorkerNumber(
        context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int
    ) async throws {
        let files = ClusterFiles(directory: clusterDirectory(for: context.configuration.jobQueueName))
        try files.create()
        var live = files.workers().filter { worker in
            if ProcessControl.isAlive(worker.pid) { return true }
            files.remove(worker.pidFile)
            files.remove(worker.readyFile)
            return false
        }
        let plan = ScalingPlan(
            current: live.map { ScalingPlan.Container(id: String($0.number), slots: $0.slots, order: Int64($0.number)) },
            slotsPerContainer: container.maxWorkersPerContainer, wantedWorkers: workerNumber)
        for slots in plan.sizesToStart {
            let number = max(nextWorkerNumber, (live.map(\.number).max() ?? 0) + 1)
            nextWorkerNumber = number + 1
            let worker = ClusterFiles.WorkerProcess(directory: files.workersDirectory, number: number, pid: 0, slots: slots)
            files.remove(worker.readyFile)
            var environment = container.environment
            environment[EnvironmentKey.slots] = String(slots)
            environment[EnvironmentKey.readyFile] = worker.readyFile
            // A restarted server may listen elsewhere: workers look here before each reconnect.
            environment[EnvironmentKey.endpointFile] = files.endpoint
            let workerName = "\(context.configuration.jobQueueName)-worker-\(number)"
            environment[EnvironmentKey.workerName] = workerName
            if context.stopClusterOnExit { environment[EnvironmentKey.ownerProcessID] = String(getpid()) }
            let pid = try ProcessControl.spawnDetached(
                executable: container.image, arguments: ["worker", "--name", workerName], environment: environment,
                logFile: worker.logFile)
            try files.write("\(pid) \(slots)", to: worker.pidFile)
            live.append(.init(directory: files.workersDirectory, number: number, pid: pid, slots: slots))
        }
        // The newest workers whose slots fit in the excess; they drain and hand their tasks back.
        for id in plan.idsToStop {
            guard let worker = live.first(where: { String($0.number) == id }) else { continue }
            ProcessControl.signal(worker.pid, SIGTERM)
            files.remove(worker.pidFile)
            files.remove(worker.readyFile)
        }
    }

    public func workerNumbers(context: ClusterContext) async throws -> WorkerNumbers {
        let files = ClusterFiles(directory: clusterDirectory(for: context.configuration.jobQueueName))
        var initializing = 0
        var running = 0
        for worker in files.workers() where ProcessControl.isAlive(worker.pid) {
            if FileManager.default.fileExists(atPath: worker.readyFile) {
                running += worker.slots
            } else {
                initializing += worker.slots
            }
        }
        return WorkerNumbers(
            expected: context.configuration.expectedWorkerNumber, initializing: initializing, running: running)
    }

    /// The names of the clusters that have a state folder, running or not.
    public nonisolated func clusterNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: configuration.stateDirectory)) ?? []).sorted()
    }

    public func clusterExists(context: ClusterContext) async throws -> Bool {
        let files = ClusterFiles(directory: clusterDirectory(for: context.configuration.jobQueueName))
        guard let pid = files.serverPID else { return false }
        return ProcessControl.isAlive(pid)
    }

    public func reconnect(context: ClusterContext) async throws -> StaticData {
        let name = context.configuration.jobQueueName
        let files = ClusterFiles(directory: clusterDirectory(for: name))
        guard try await clusterExists(context: context), let data = files.staticData else {
            throw DockerParallelError(
                .clusterNotFound,
                "The cluster with the job queue name '\(name)' is not running. Start it with `dockerparallel up --name \(name)`.")
        }
        return data
    }

    public func storedStaticData(context: ClusterContext) async throws -> StaticData? {
        try ClusterFiles(directory: clusterDirectory(for: context.configuration.jobQueueName)).storedStaticData()
    }

    public func cleanup(context: ClusterContext, deep: Bool) async throws {
        let files = ClusterFiles(directory: clusterDirectory(for: context.configuration.jobQueueName))
        if let pid = files.serverPID, ProcessControl.isAlive(pid) { return }
        guard !files.workers().contains(where: { ProcessControl.isAlive($0.pid) }) else { return }
        try? FileManager.default.removeItem(atPath: files.directory)
    }
}
