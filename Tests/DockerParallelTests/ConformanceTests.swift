import DockerParallel
import DockerParallelTestKit
import Testing

@Suite(.timeLimit(.minutes(5))) struct ConformanceTests {
    @Test func theLocalProviderPassesTheConformanceKit() async throws {
        try await withStateDirectory { state in
            let kit = ConformanceKit(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                options: .init(workerNumber: 3, configuration: ClusterConfiguration(jobQueueName: "conformance", serverPort: 0)))
            let started = ContinuousClock.now
            try await kit.run { step in
                // Shown in the test log, so that a slow or stuck step can be told apart.
                print("conformance (+\(ContinuousClock.now - started)): \(step)")
            }
        }
    }

    @Test func theKitCatchesAProviderThatDoesNotStartWorkers() async throws {
        try await withStateDirectory { state in
            let kit = ConformanceKit(
                provider: NoWorkersProvider(base: LocalProvider(configuration: .init(stateDirectory: state))),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                options: .init(workerNumber: 2, testReconnect: false, testJobs: false, timeout: 1,
                               configuration: ClusterConfiguration(jobQueueName: "broken", serverPort: 0)))
            let failure = await #expect(throws: ConformanceFailure.self) { try await kit.run() }
            #expect(failure?.step == 6)
            try? await LocalProvider(configuration: .init(stateDirectory: state)).stopServer(context: .init(
                configuration: ClusterConfiguration(jobQueueName: "broken"), runtime: ClusterRuntime(),
                staticData: StaticData(configuration: ClusterConfiguration(), workerContainerName: "", workerImage: "", maxWorkersPerContainer: 1, verbosity: 0),
                stopClusterOnExit: false, verbosity: 0, logger: .init(label: "test")))
        }
    }
}

/// A broken provider: everything works except that workers are never started.
struct NoWorkersProvider: CloudProvider {
    let base: LocalProvider

    func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws {
        try await base.runServer(context: context, container: container, hardware: hardware)
    }
    func stopServer(context: ClusterContext) async throws { try await base.stopServer(context: context) }
    func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints { try await base.serverEndpoints(context: context) }
    func setWorkerNumber(context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int) async throws {}
    func workerNumbers(context: ClusterContext) async throws -> (initializing: Int, running: Int) { (0, 0) }
}
