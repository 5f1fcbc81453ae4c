import DockerParallel
import DockerParallelTestKit
import Foundation
import NIOPosix
import Testing

/// The example's task, declared here by name so the test can submit it.
struct Square: ParallelTask {
    static func run(_ input: Int) async throws -> Int { input * input }
}

/// A task the example executable does not register.
struct NotRegistered: ParallelTask {
    static func run(_ input: Int) async throws -> Int { input }
}

@Suite(.serialized, .timeLimit(.minutes(3))) struct MapTests {
    func withExampleCluster(workers: Int = 2, _ body: @Sendable (DockerCluster) async throws -> Void) async throws {
        try await withStateDirectory { state in
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.squaresExample),
                configuration: ClusterConfiguration(jobQueueName: "map-test", expectedWorkerNumber: workers, serverPort: 0),
                verbosity: 0)
            try await cluster.withStarted { try await body($0) }
            #expect(!(try await cluster.clusterExists()))
        }
    }

    @Test func mapsTenThousandInputsInOrder() async throws {
        try await withExampleCluster { cluster in
            // The Local provider's server listens on a unix socket in the cluster's folder too.
            let socket = await cluster.runtime.serverEndpoints?.privateEndpoint?.unixSocketPath
            #expect(socket.map { FileManager.default.fileExists(atPath: $0) } == true)
            let inputs = Array(0..<10_000)
            let outputs = try await cluster.map(inputs, using: Square.self)
            #expect(outputs == inputs.map { $0 * $0 })
        }
    }

    @Test func aFailingInputIsNamedInTheError() async throws {
        try await withExampleCluster { cluster in
            let failures = await #expect(throws: TaskFailures.self) {
                _ = try await cluster.map([1, 2, -3, 4], using: Square.self)
            }
            #expect(failures?.failures.map(\.index) == [2])
            #expect(failures?.description.contains("input #2") == true)
            #expect(failures?.description.contains("negative input -3") == true)
        }
    }

    /// A small map goes to the server as one `run`: the server forgets it once every task has
    /// succeeded, and keeps a job with a failed task, so that it can be retried.
    @Test func aSmallMapLeavesNothingBehindUnlessATaskFailed() async throws {
        try await withExampleCluster { cluster in
            for round in 0..<20 {
                #expect(try await cluster.map([round, round + 1], using: Square.self) == [round * round, (round + 1) * (round + 1)])
            }
            #expect(try await cluster.serverReport().jobs.isEmpty)

            await #expect(throws: TaskFailures.self) { _ = try await cluster.map([5, -6], using: Square.self) }
            let kept = try await cluster.serverReport().jobs
            #expect(kept.count == 1)
            #expect(kept.first.map { ($0.total, $0.succeeded, $0.failed) } ?? (0, 0, 0) == (2, 1, 1))
        }
    }

    /// A state folder too deep for a unix socket's path: the cluster runs over TCP alone.
    @Test func aDeepStateFolderRunsOverTCP() async throws {
        try await withStateDirectory { state in
            let deep = state + "/" + String(repeating: "d", count: 100)
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: deep)),
                workerContainer: LocalProcessContainer(executable: Binaries.squaresExample),
                configuration: ClusterConfiguration(jobQueueName: "deep", expectedWorkerNumber: 1, serverPort: 0),
                verbosity: 0)
            let (socket, squares) = try await cluster.withStarted { cluster in
                (await cluster.runtime.serverEndpoints?.privateEndpoint?.unixSocketPath,
                 try await cluster.map([3, 4], using: Square.self))
            }
            #expect(socket == nil)
            #expect(squares == [9, 16])
        }
    }

    /// Code that prefers the cluster's executor runs on the event loop of its connection, and
    /// its maps work there as anywhere.
    @Test func mapsWorkFromTheClustersEventLoop() async throws {
        try await withExampleCluster(workers: 1) { cluster in
            let outputs = try await withTaskExecutorPreference(cluster.taskExecutor) {
                #expect(MultiThreadedEventLoopGroup.currentEventLoop != nil)
                var outputs: [Int] = []
                for input in 0..<50 { outputs += try await cluster.map([input], using: Square.self) }
                outputs += try await cluster.map(Array(50..<5_000), using: Square.self)
                #expect(MultiThreadedEventLoopGroup.currentEventLoop != nil)
                return outputs
            }
            #expect(outputs == (0..<5_000).map { $0 * $0 })
        }
    }

    @Test func chunksReturnEveryOutputInOrder() async throws {
        try await withExampleCluster { cluster in
            // 10,001 inputs in chunks of 64: the last chunk is short.
            let inputs = Array(0...10_000)
            let outputs = try await cluster.map(inputs, using: Square.self, chunkSize: 64)
            #expect(outputs == inputs.map { $0 * $0 })
            #expect(try await cluster.map([Int](), using: Square.self, chunkSize: 8).isEmpty)
        }
    }

    @Test func aFailingInputFailsItsWholeChunkAndIsNamed() async throws {
        try await withExampleCluster { cluster in
            let failures = await #expect(throws: TaskFailures.self) {
                _ = try await cluster.map([1, 2, 3, 4, -5, 6, 7], using: Square.self, chunkSize: 3)
            }
            // Inputs 3, 4 and 5 share a chunk; the error names the one that threw.
            #expect(failures?.failures.map(\.index) == [3, 4, 5])
            #expect(failures?.total == 7)
            #expect(failures?.failures.first?.error.contains("input 2 of 3 in the chunk") == true)
            #expect(failures?.failures.first?.error.contains("negative input -5") == true)
        }
    }

    @Test func aChunkSizeBelowOneIsRefused() async throws {
        try await withExampleCluster(workers: 1) { cluster in
            let error = await #expect(throws: DockerParallelError.self) {
                _ = try await cluster.map([1, 2], using: Square.self, chunkSize: 0)
            }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains("chunkSize must be at least 1") == true)
        }
    }

    @Test func anUnknownTaskNameIsReportedWithTheKnownOnes() async throws {
        try await withExampleCluster(workers: 1) { cluster in
            let failures = await #expect(throws: TaskFailures.self) {
                _ = try await cluster.map([1], using: NotRegistered.self)
            }
            let message = failures?.failures.first?.error ?? ""
            #expect(message.contains("unknown task 'NotRegistered'"))
            #expect(message.contains("Square"))
            #expect(failures?.failures.first?.attempts == 1)
        }
    }

    @Test func anUndecodableInputFailsOnlyItsTask() async throws {
        try await withExampleCluster(workers: 1) { cluster in
            let job: JobID = "bad-input"
            try await cluster.submit([
                TaskSpec(index: 0, kind: .swift(name: "Square"), input: Data("7".utf8)),
                TaskSpec(index: 1, kind: .swift(name: "Square"), input: Data("\"seven\"".utf8)),
            ], jobID: job, options: JobOptions())
            let results = try await cluster.collect(jobID: job)
            #expect(results.map(\.status) == [.succeeded, .failed])
            #expect(results[0].output == Data("49".utf8))
            #expect(results[1].error?.contains("could not be decoded") == true)
        }
    }

    @Test func anotherHandleCollectsASubmittedJob() async throws {
        try await withStateDirectory { state in
            let provider = LocalProvider(configuration: .init(stateDirectory: state))
            let container = LocalProcessContainer(executable: Binaries.squaresExample)
            let first = try DockerCluster(
                provider: provider, workerContainer: container,
                configuration: ClusterConfiguration(jobQueueName: "collect", expectedWorkerNumber: 1, serverPort: 0),
                verbosity: 0, stopClusterOnExit: false)
            try await first.startCluster()
            let handle = try await first.submit([3, 4, 5], using: Square.self, jobID: "shared-job")
            await first.close()

            let second = try DockerCluster(
                provider: provider, workerContainer: container,
                configuration: ClusterConfiguration(jobQueueName: "collect"), verbosity: 0)
            try await second.reconnect()
            let outputs = try await JobHandle(cluster: second, id: handle.id, count: 3, of: Square.self).outputs()
            #expect(outputs == [9, 16, 25])
            try await second.stopCluster(cleanup: true)
            #expect(!(try await second.clusterExists()))
        }
    }

    @Test func cancellingAJobCommitsEveryTaskAsCancelled() async throws {
        try await withExampleCluster(workers: 1) { cluster in
            let job = try await cluster.submitCommands(try CommandTemplate(["sleep", "{}"]), inputs: ["30", "30", "30"])
            try await waitUntil("the first task runs") { try await cluster.jobStatus(jobID: job.id).running >= 1 }
            let status = try await cluster.cancel(jobID: job.id)
            #expect(status.cancelled == 3)
            let results = try await cluster.collect(jobID: job.id)
            #expect(results.allSatisfy { $0.status == .cancelled })
            // The worker was told to stop the running task, so it is free for new work at once.
            let started = ContinuousClock.now
            let next = try await cluster.submitCommands(try CommandTemplate(["echo", "{}"]), inputs: ["after"])
            let after = try await cluster.collect(jobID: next.id)
            #expect(after.first.map { String(decoding: $0.output, as: UTF8.self) } == "after\n")
            #expect(ContinuousClock.now - started < .seconds(20))
        }
    }

    @Test func aCommandJobHasTheSameOperationsAsASwiftJob() async throws {
        try await withExampleCluster(workers: 1) { cluster in
            let job = try await cluster.submitCommands(
                try CommandTemplate(["sh", "-c", "echo out {}; exit {}"]), inputs: ["0", "3"], options: JobOptions(maxAttempts: 1))
            // Outputs are the commands' results; a failed one is named, with its exit status.
            let failures = await #expect(throws: TaskFailures.self) { try await job.outputs() }
            #expect(failures?.jobID == job.id)
            #expect(failures?.failures.map(\.index) == [1])
            let status = try await job.status()
            #expect(status.failed == 1)
            #expect(status.jobID == job.id)
            // Its attempt log, its retry and its removal work through the same handle.
            let log = try await job.logs(index: 1)
            #expect(log.map(\.outcome) == [.failed])
            let retried = try await job.retryFailed()
            #expect(retried.failed == 0)
            let results = try await cluster.collect(jobID: job.id)
            #expect(results.map(\.exitCode) == [0, 3])
            #expect(String(decoding: results[0].output, as: UTF8.self) == "out 0\n")
            try await job.forget()
            await #expect(throws: DockerParallelError.self) { try await job.status() }
        }
    }
}
