import DockerParallel
import DockerParallelServer
import DockerParallelWire
import DockerParallelTestKit
import Foundation
import Logging
import Testing

/// Runs a broker with a store until `body` returns, then stops it.
func withStoredServer<T: Sendable>(store: String, _ body: @Sendable (Endpoint) async throws -> T) async throws -> T {
    try await withServer(storePath: store, body)
}

@Suite(.timeLimit(.minutes(2))) struct StoreTests {
    func commands(_ count: Int) -> [TaskSpec] {
        (0..<count).map { TaskSpec(index: $0, kind: .command(argv: ["echo", "\($0)"], environment: [:]), input: Data("in-\($0)".utf8)) }
    }

    @Test func aRestartedServerKeepsQueuedTasksAndCommittedResults() async throws {
        try await withStateDirectory { folder in
            let store = "\(folder)/broker.sqlite"
            // First life: submit three tasks; a worker finishes task 0 and holds task 1 when the server stops.
            try await withStoredServer(store: store) { endpoint in
                let client = try await client(endpoint)
                guard case .submitted(3, 0) = try await client.request(.submit(jobID: "job", options: JobOptions(), tasks: commands(3))) else {
                    Issue.record("submit was not acknowledged")
                    return
                }
                let worker = try await PeerConnection.connect(
                    to: endpoint, hello: Hello(role: .worker, password: "right-password", name: "w", slots: 2))
                worker.send(.credit(count: 2))
                var pushes = worker.pushes.makeAsyncIterator()
                guard case .assign(let assignments)? = await pushes.next() else { Issue.record("no tasks"); return }
                #expect(assignments.map(\.task.index) == [0, 1])
                worker.send(.complete(
                    leaseID: assignments[0].leaseID, jobID: "job", index: 0,
                    report: AttemptReport(succeeded: true, exitCode: 0, output: Data("zero\n".utf8))))
                // The result is shown to a watcher only once it is stored; wait for it.
                var shown: [Int] = []
                for try await message in client.stream(.watch(jobID: "job")) {
                    if case .results(let results) = message { shown += results.map(\.index) }
                    if !shown.isEmpty { break }
                }
                #expect(shown == [0])
            }
            // Second life on the same file.
            try await withStoredServer(store: store) { endpoint in
                let client = try await client(endpoint)
                guard case .status(let report) = try await client.request(.status) else { return }
                let job = try #require(report.jobs.first)
                #expect(job.total == 3)
                #expect(job.succeeded == 1)
                #expect(job.queued == 2)
                // Submitting again adds nothing.
                guard case .submitted(0, 3) = try await client.request(.submit(jobID: "job", options: JobOptions(), tasks: commands(3))) else {
                    Issue.record("a repeated submit was not idempotent")
                    return
                }
                let worker = try await PeerConnection.connect(
                    to: endpoint, hello: Hello(role: .worker, password: "right-password", name: "w2", slots: 5))
                worker.send(.credit(count: 5))
                var pushes = worker.pushes.makeAsyncIterator()
                guard case .assign(let assignments)? = await pushes.next() else { Issue.record("no tasks"); return }
                #expect(assignments.map(\.task.index) == [1, 2])
                #expect(assignments.map(\.task.input) == [Data("in-1".utf8), Data("in-2".utf8)])
                // Task 1 was leased when the server stopped: this is its second attempt.
                #expect(assignments.map(\.attempt) == [2, 1])
                for assignment in assignments {
                    worker.send(.complete(
                        leaseID: assignment.leaseID, jobID: "job", index: assignment.task.index,
                        report: AttemptReport(succeeded: true, exitCode: 0, output: Data("done\n".utf8))))
                }
                var collected: [Int: TaskResult] = [:]
                for try await message in client.stream(.watch(jobID: "job")) {
                    if case .results(let results) = message { for result in results { collected[result.index] = result } }
                    if collected.count == 3 { break }
                }
                #expect(collected[0]?.output == Data("zero\n".utf8))
                #expect(collected[1]?.attempts == 2)
                guard case .done = try await client.request(.forget(jobID: "job")) else { return }
            }
            // Third life: the forgotten job is gone.
            try await withStoredServer(store: store) { endpoint in
                let client = try await client(endpoint)
                guard case .status(let report) = try await client.request(.status) else { return }
                #expect(report.jobs.isEmpty)
            }
        }
    }

    @Test func anUnwritableStoreIsAClearError() async throws {
        let server = BrokerServer(
            configuration: ServerConfiguration(port: 0, password: ServerPassword("p"), storePath: "/nonexistent-folder/broker.sqlite"),
            logger: Logger(label: "test"))
        let error = await #expect(throws: DockerParallelError.self) { try await server.run() }
        #expect(error?.message.contains("cannot open the broker's database at /nonexistent-folder/broker.sqlite") == true)
    }
}
