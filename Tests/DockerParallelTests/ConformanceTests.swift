#if canImport(Glibc)
import Glibc
#endif
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

@Suite(.timeLimit(.minutes(5))) struct ConformanceTests {
    @Test func theLocalProviderPassesTheConformanceKit() async throws {
        try await withStateDirectory { state in
            let kit = ConformanceKit(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                options: .init(
                    workerNumber: 3, configuration: ClusterConfiguration(jobQueueName: "conformance", serverPort: 0),
                    killServer: { configuration in
                        let file = "\(state)/\(configuration.jobQueueName)/server.pid"
                        let pid = try #require(Int32(try String(contentsOfFile: file, encoding: .utf8)))
                        kill(pid, SIGKILL)
                    }))
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
                options: .init(workerNumber: 2, testReconnect: false, testJobs: false, timeout: .seconds(1),
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

/// The minimum provider the design allows: run and stop the server, its endpoints, and the
/// worker number; every other requirement keeps its default.
struct MinimumProvider: CloudProvider {
    let base: LocalProvider

    func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws {
        try await base.runServer(context: context, container: container, hardware: hardware)
    }
    func stopServer(context: ClusterContext) async throws { try await base.stopServer(context: context) }
    func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints { try await base.serverEndpoints(context: context) }
    func setWorkerNumber(context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int) async throws {
        try await base.setWorkerNumber(context: context, container: container, hardware: hardware, workerNumber: workerNumber)
    }
}

@Suite(.timeLimit(.minutes(5))) struct MinimumProviderTests {
    /// Worker numbers come from the server's connected slots, so the kit's worker steps and jobs
    /// still check something real.
    @Test func aMinimumProviderPassesTheKitWithoutReconnecting() async throws {
        try await withStateDirectory { state in
            let kit = ConformanceKit(
                provider: MinimumProvider(base: LocalProvider(configuration: .init(stateDirectory: state))),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                options: .init(workerNumber: 2, testReconnect: false, jobSize: 20,
                               configuration: ClusterConfiguration(jobQueueName: "minimum", serverPort: 0)))
            try await kit.run()
        }
    }

    @Test func theKitReportsAnUnsupportedOptionalRequirementByName() async throws {
        try await withStateDirectory { state in
            let kit = ConformanceKit(
                provider: MinimumProvider(base: LocalProvider(configuration: .init(stateDirectory: state))),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                options: .init(workerNumber: 1, testJobs: false,
                               configuration: ClusterConfiguration(jobQueueName: "minimum-reconnect", serverPort: 0)))
            let failure = await #expect(throws: ConformanceFailure.self) { try await kit.run() }
            #expect(failure?.step == 12)
            #expect(failure?.isUnsupportedRequirement == true)
            #expect(failure?.description.contains("MinimumProvider does not implement clusterExists(context:)") == true, "\(String(describing: failure))")
            #expect(failure?.description.contains("testReconnect") == true)
        }
    }

    @Test func defaultsThatOnlyThePlatformCanAnswerThrowUnsupported() async throws {
        let provider = MinimumProvider(base: LocalProvider())
        let context = ClusterContext(
            configuration: ClusterConfiguration(jobQueueName: "defaults"), runtime: ClusterRuntime(),
            staticData: StaticData(configuration: ClusterConfiguration(), workerContainerName: "", workerImage: "", maxWorkersPerContainer: 1, verbosity: 0),
            stopClusterOnExit: false, verbosity: 0, logger: .init(label: "test"))
        let numbers = await #expect(throws: DockerParallelError.self) { try await provider.workerNumbers(context: context) }
        #expect(numbers?.code == .unsupported)
        #expect(numbers?.message.contains("MinimumProvider does not implement workerNumbers(context:)") == true)
        let exists = await #expect(throws: DockerParallelError.self) { try await provider.clusterExists(context: context) }
        #expect(exists?.code == .unsupported)
        let names = await #expect(throws: DockerParallelError.self) { try await provider.clusterNames() }
        #expect(names?.message.contains("clusterNames()") == true)
        let reconnect = await #expect(throws: DockerParallelError.self) { try await provider.reconnect(context: context) }
        #expect(reconnect?.code == .unsupported)
        // The one default kept, as the original documents it.
        #expect(try await provider.serverStatus(context: context) == .running)
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
    func workerNumbers(context: ClusterContext) async throws -> WorkerNumbers {
        WorkerNumbers(expected: context.configuration.expectedWorkerNumber, initializing: 0, running: 0)
    }
}
