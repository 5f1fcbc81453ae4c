import DockerParallel
import DockerParallelCore
import Foundation

/// The conformance kit for provider and container authors: the original DockerParallel's
/// 15-step cluster test, then a real parallel job whose results are checked, then a job during
/// which a worker is killed.
///
/// It works with any test framework: ``run(progress:)`` throws a ``ConformanceFailure`` that
/// names the failed step and what was seen.
///
/// ```swift
/// let kit = ConformanceKit(provider: MyProvider(), workerContainer: MyContainer())
/// try await kit.run()
/// ```
public struct ConformanceKit: Sendable {
    /// What the kit does.
    public struct Options: Sendable {
        /// Workers in the worker-number steps (the original uses 5).
        public var workerNumber: Int
        /// Whether to run the reconnect steps 10–15.
        public var testReconnect: Bool
        /// Whether to run the real parallel job and the killed-worker check.
        public var testJobs: Bool
        /// Inputs of the real parallel job.
        public var jobSize: Int
        /// How long to wait for the provider to reach a worker number.
        public var timeout: Duration
        /// The base configuration; the kit sets the worker number and hardware itself.
        public var configuration: ClusterConfiguration
        /// Kills the server of the cluster with this configuration the way the platform loses
        /// one (SIGKILL, `docker kill`): with it, step 18 checks that a new handle restarts the
        /// server with its identity and that its workers and job carry on. `nil` skips the step.
        public var killServer: (@Sendable (ClusterConfiguration) async throws -> Void)?

        /// Creates options.
        public init(
            workerNumber: Int = 5, testReconnect: Bool = true, testJobs: Bool = true, jobSize: Int = 200,
            timeout: Duration = .seconds(60),
            configuration: ClusterConfiguration = ClusterConfiguration(jobQueueName: "DockerParallelConformance"),
            killServer: (@Sendable (ClusterConfiguration) async throws -> Void)? = nil
        ) {
            self.killServer = killServer
            self.workerNumber = workerNumber
            self.testReconnect = testReconnect
            self.testJobs = testJobs
            self.jobSize = jobSize
            self.timeout = timeout
            self.configuration = configuration
        }
    }

    /// The provider under test.
    public let provider: any CloudProvider
    /// The worker container under test.
    public let workerContainer: any WorkerContainer
    /// What the kit does.
    public let options: Options

    /// Creates a kit.
    public init(provider: any CloudProvider, workerContainer: any WorkerContainer, options: Options = Options()) {
        self.provider = provider
        self.workerContainer = workerContainer
        self.options = options
    }

    /// Runs every step in order.
    /// - Parameter progress: Called with each step's description before it runs.
    /// - Throws: ``ConformanceFailure`` at the first step that fails.
    public func run(progress: @escaping @Sendable (String) -> Void = { _ in }) async throws {
        let run = StepRunner(progress: progress)
        try await phaseA(run)
        if options.testReconnect { try await phaseB(run) }
        if options.testJobs {
            try await realJob(run)
            try await killedWorker(run)
            if let killServer = options.killServer { try await killedServer(run, killServer) }
        }
    }

    // MARK: Phase A: one cluster through its lifecycle

    private func phaseA(_ run: StepRunner) async throws {
        var configuration = options.configuration
        configuration.expectedWorkerNumber = 0
        configuration.workerHardware = Hardware(cpu: 256, memory: 512)
        let cluster = try await run.step(1, "a cluster handle can be made") {
            try makeCluster(configuration)
        }
        try await run.step(2, "a new cluster has no workers") {
            try await expectWorkers(cluster, total: 0)
        }
        try await run.step(3, "a new cluster's server is not running") {
            try check(!(await cluster.isServerRunning), "isServerRunning is true before startServer")
        }
        try await run.step(4, "the worker hardware is kept") {
            try await expectWorkers(cluster, total: 0)
            let hardware = await cluster.configuration.workerHardware
            try check(hardware.cpu == 256 && hardware.memory == 512, "worker hardware is \(hardware), expected 256 cpu / 512 MB")
        }
        try await run.step(5, "startServer starts the server") {
            try await cluster.startServer()
            try check(await cluster.isServerRunning, "isServerRunning is false after startServer")
        }
        try await run.step(6, "setWorkerNumber(\(options.workerNumber)) deploys the workers") {
            try await cluster.setWorkerNumber(options.workerNumber)
            try await waitForWorkers(cluster, total: options.workerNumber)
        }
        try await run.step(7, "a client connects to the server") {
            _ = try await cluster.serverReport()
        }
        try await run.step(8, "setWorkerNumber(0) removes the workers") {
            try await cluster.setWorkerNumber(0)
            try await waitForWorkers(cluster, total: 0)
        }
        try await run.step(9, "stopServer stops the server") {
            try await cluster.stopServer()
            try check(!(await cluster.isServerRunning), "isServerRunning is true after stopServer")
            await cluster.close()
        }
    }

    // MARK: Phase B: stop on exit and reconnect

    private func phaseB(_ run: StepRunner) async throws {
        var configuration = options.configuration
        configuration.expectedWorkerNumber = 1
        try await run.step(10, "startCluster starts a server and one worker") {
            let cluster = try makeCluster(configuration)
            try await cluster.startCluster()
            try check(await cluster.isServerRunning, "the server is not running after startCluster")
            try await waitForWorkers(cluster, total: 1)
            try await run.step(11, "closing a cluster with stopClusterOnExit stops it") {
                await cluster.setStopClusterOnExit(true)
                await cluster.close()
            }
        }
        try await run.step(12, "the stopped cluster no longer exists") {
            let cluster = try makeCluster(configuration)
            try check(!(try await cluster.clusterExists()), "clusterExists is true after the cluster was stopped")
        }
        try await run.step(13, "a cluster without stopClusterOnExit outlives its handle") {
            let cluster = try makeCluster(configuration)
            try await cluster.startCluster()
            try check(await cluster.isServerRunning, "the server is not running after startCluster")
            try await waitForWorkers(cluster, total: 1)
            await cluster.setStopClusterOnExit(false)
            await cluster.close()
        }
        try await run.step(14, "a new handle finds the cluster and reconnects") {
            let cluster = try makeCluster(configuration)
            try check(try await cluster.clusterExists(), "clusterExists is false for a running cluster")
            try await cluster.reconnect()
            try check(await cluster.isServerRunning, "the server is not running after reconnect")
            try await waitForWorkers(cluster, total: 1)
            try await run.step(15, "stopCluster stops the reconnected cluster") {
                try await cluster.stopCluster()
                try check(!(await cluster.isServerRunning), "the server is running after stopCluster")
                try await waitForWorkers(cluster, total: 0)
                await cluster.close()
            }
        }
    }

    // MARK: Jobs

    private func realJob(_ run: StepRunner) async throws {
        try await run.step(16, "a parallel job of \(options.jobSize) command tasks returns every result") {
            let cluster = try makeCluster(jobConfiguration())
            try await withStoppedCluster(cluster) {
                try await cluster.startCluster()
                let job = try await cluster.submitCommands(
                    try CommandTemplate(["sh", "-c", "echo $(( {} * {} ))"]), inputs: (1...options.jobSize).map(String.init))
                var seen = 0
                for try await result in try await job.results() {
                    let value = result.index + 1
                    let text = String(decoding: result.output, as: UTF8.self)
                    try check(result.status == .succeeded, "task \(result.index) \(result.status): \(result.error ?? "")")
                    try check(text == "\(value * value)\n", "task \(result.index) printed \(text.debugDescription), expected \(value * value)")
                    seen += 1
                }
                try check(seen == options.jobSize, "got \(seen) results for \(options.jobSize) tasks")
            }
        }
    }

    private func killedWorker(_ run: StepRunner) async throws {
        try await run.step(17, "a job whose worker is killed mid-task still completes, and update() replaces the worker") {
            let configuration = jobConfiguration()
            let cluster = try makeCluster(configuration)
            try await withStoppedCluster(cluster) {
                try await cluster.startCluster()
                try await waitForWorkers(cluster, total: configuration.expectedWorkerNumber)
                // Task 3's first attempt kills the worker running it.
                let script = "if [ {} = 3 ] && [ \"$DOCKERPARALLEL_ATTEMPT\" = 1 ]; then kill -9 $PPID; sleep 5; fi; echo {}"
                let job = try await cluster.submitCommands(try CommandTemplate(["sh", "-c", script]), inputs: (0..<20).map(String.init))
                var outputs: [Int: String] = [:]
                var attemptsOfKilled = 0
                for try await result in try await job.results() {
                    try check(result.status == .succeeded, "task \(result.index) \(result.status): \(result.error ?? "")")
                    try check(outputs[result.index] == nil, "task \(result.index) has two results")
                    outputs[result.index] = String(decoding: result.output, as: UTF8.self)
                    if result.index == 3 { attemptsOfKilled = result.attempts }
                }
                try check(outputs.count == 20, "got \(outputs.count) results for 20 tasks")
                try check(attemptsOfKilled >= 2, "the killed task reports \(attemptsOfKilled) attempt(s), expected at least 2")
                // A platform may take a moment to see the worker gone: update() as a supervisor would.
                try await waitForWorkers(cluster, total: configuration.expectedWorkerNumber, updating: true)
            }
        }
    }

    private func killedServer(_ run: StepRunner, _ killServer: @escaping @Sendable (ClusterConfiguration) async throws -> Void) async throws {
        try await run.step(18, "a server killed mid-job restarts from a new handle with its password and port; its workers and job carry on") {
            let configuration = jobConfiguration()
            let cluster = try makeCluster(configuration)
            try await withStoppedCluster(cluster) {
                try await cluster.startCluster()
                try await waitForWorkers(cluster, total: configuration.expectedWorkerNumber)
                let before = await cluster.configuration
                let endpoints = await cluster.runtime.serverEndpoints
                let count = 40
                let job = try await cluster.submitCommands(
                    try CommandTemplate(["sh", "-c", "sleep 0.05; echo {}"]), inputs: (0..<count).map(String.init))
                try await waitUntil("some tasks are done", timeout: options.timeout.inSeconds) { try await job.status().finished >= 4 }
                try await killServer(before)
                // A new handle with a new password, as `dockerparallel up` makes one, restarts it.
                var fresh = before
                fresh.serverPassword = .random()
                let restarter = try makeCluster(fresh)
                try await waitUntil("the provider sees the server stopped", timeout: options.timeout.inSeconds) {
                    try await !restarter.clusterExists()
                }
                try await restarter.startServer()
                try check(
                    await restarter.configuration.serverPassword == before.serverPassword,
                    "the restarted server has a new password: its workers and clients cannot connect")
                let after = await restarter.runtime.serverEndpoints
                try check(after?.publicEndpoint?.port == endpoints?.publicEndpoint?.port, "the server moved from \(String(describing: endpoints)) to \(String(describing: after))")
                var seen: Set<Int> = []
                for try await result in try await job.results() {
                    try check(result.status == .succeeded, "task \(result.index) \(result.status): \(result.error ?? "")")
                    try check(seen.insert(result.index).inserted, "task \(result.index) has two results")
                }
                try check(seen.count == count, "got \(seen.count) results for \(count) tasks")
                // The workers reconnected by themselves: none was started again.
                try await expectWorkers(cluster, total: configuration.expectedWorkerNumber)
                let report = try await cluster.serverReport()
                try check(report.workerSlots == configuration.expectedWorkerNumber, "\(report.workerSlots) worker slots reconnected, expected \(configuration.expectedWorkerNumber)")
                try check(report.restarts >= 1, "the server reports \(report.restarts) restarts")
            }
        }
    }

    // MARK: Helpers

    private func jobConfiguration() -> ClusterConfiguration {
        var configuration = options.configuration
        configuration.expectedWorkerNumber = max(2, min(options.workerNumber, 4))
        return configuration
    }

    private func makeCluster(_ configuration: ClusterConfiguration) throws -> DockerCluster {
        try DockerCluster(
            provider: provider, workerContainer: workerContainer, configuration: configuration, verbosity: 0,
            stopClusterOnExit: true)
    }

    private func withStoppedCluster(_ cluster: DockerCluster, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let limit = options.timeout * 2
        do {
            // A job that never finishes is a failure of its step, not a hang of the kit.
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await body()
                    return true
                }
                group.addTask {
                    try await Task.sleep(for: limit)
                    return false
                }
                defer { group.cancelAll() }
                guard try await group.next() == true else {
                    throw ConformanceFailure(step: 0, description: "", problem: "the job did not finish within \(limit)")
                }
            }
        } catch {
            try? await cluster.stopCluster(ignoreErrors: true, cleanup: true)
            throw error
        }
        try await cluster.stopCluster(cleanup: true)
    }

    private func expectWorkers(_ cluster: DockerCluster, total: Int) async throws {
        let numbers = try await cluster.workerNumbers()
        try check(numbers.running + numbers.initializing == total, "worker numbers are \(numbers), expected \(total) in all")
    }

    private func waitForWorkers(_ cluster: DockerCluster, total: Int, updating: Bool = false) async throws {
        var numbers = try await cluster.workerNumbers()
        do {
            try await waitUntil("there are \(total) workers", timeout: options.timeout.inSeconds, interval: updating ? 0.3 : 0.05) {
                if updating { try await cluster.update() }
                numbers = try await cluster.workerNumbers()
                return numbers.running + numbers.initializing == total
            }
        } catch is WaitTimedOut {
            throw ConformanceFailure(
                step: 0, description: "waiting for workers",
                problem: "worker numbers are \(numbers) after \(options.timeout), expected \(total) in all")
        }
    }
}

/// A conformance step that failed.
public struct ConformanceFailure: Error, Sendable, CustomStringConvertible {
    /// The step's number (1–15 are the original's steps).
    public var step: Int
    /// What the step checks.
    public var checked: String
    /// What went wrong.
    public var problem: String
    /// Whether the step failed because the provider does not implement an optional requirement
    /// (it threw `.unsupported`), rather than because it answered wrongly.
    public var isUnsupportedRequirement: Bool

    init(step: Int, description: String, problem: String, isUnsupportedRequirement: Bool = false) {
        self.step = step
        self.checked = description
        self.problem = problem
        self.isUnsupportedRequirement = isUnsupportedRequirement
    }

    public var description: String {
        isUnsupportedRequirement
            ? "conformance step \(step) (\(checked)) needs an optional requirement the provider does not implement: \(problem)"
            : "conformance step \(step) (\(checked)) failed: \(problem)"
    }
}

private struct CheckFailed: Error, CustomStringConvertible {
    var description: String
}

private func check(_ condition: Bool, _ problem: @autoclosure () -> String) throws {
    if !condition { throw CheckFailed(description: problem()) }
}

private struct StepRunner {
    let progress: @Sendable (String) -> Void

    func step<Value>(_ number: Int, _ description: String, _ body: () async throws -> Value) async throws -> Value {
        progress("step \(number): \(description)")
        do {
            return try await body()
        } catch let failure as ConformanceFailure {
            if failure.step == 0 {
                throw ConformanceFailure(
                    step: number, description: description, problem: failure.problem,
                    isUnsupportedRequirement: failure.isUnsupportedRequirement)
            }
            throw failure
        } catch let error as DockerParallelError where error.code == .unsupported {
            throw ConformanceFailure(
                step: number, description: description,
                problem: (10...15).contains(number)
                    ? "\(error.message) (steps 10–15 test reconnecting; without it, set Options.testReconnect to false)"
                    : error.message,
                isUnsupportedRequirement: true)
        } catch {
            throw ConformanceFailure(step: number, description: description, problem: "\(error)")
        }
    }
}
