import DockerParallel
import DockerParallelCore
@testable import DockerParallelServer
import DockerParallelWire
import DockerParallelTestKit
import Foundation
import Logging
import Testing

/// Runs a broker with a store until `body` returns, then stops it.
func withStoredServer<T: Sendable>(
    store: String, residentTaskLimit: Int = 50_000, _ body: @Sendable (Endpoint) async throws -> T
) async throws -> T {
    try await withServer(storePath: store, residentTaskLimit: residentTaskLimit, body)
}

/// A job's attempt log, as a client reads it.
func attemptLog(_ client: PeerConnection, jobID: String, index: Int? = nil) async throws -> [AttemptRecord] {
    var records: [AttemptRecord] = []
    for try await message in client.stream(.attempts(jobID: jobID, index: index)) {
        if case .attempts(let batch) = message { records += batch }
        if case .done = message { break }
    }
    return records
}

@Suite(.timeLimit(.minutes(2))) struct StoreTests {
    func commands(_ count: Int) -> [TaskSpec] {
        (0..<count).map { TaskSpec(index: $0, kind: .command(argv: ["echo", "\($0)"], environment: [:]), input: Data("in-\($0)".utf8)) }
    }

    /// A worker connected with `slots` slots and credit for them, and the first tasks it is given.
    func worker(_ name: String, slots: Int, at endpoint: Endpoint) async throws -> (PeerConnection, [Assignment]) {
        let worker = try await PeerConnection.connect(
            to: endpoint, hello: Hello(role: .worker, password: "right-password", name: name, slots: slots))
        worker.send(.credit(count: slots))
        var pushes = worker.pushes.makeAsyncIterator()
        guard case .assign(let assignments)? = await pushes.next() else { throw DockerParallelError(.protocolViolation, "no tasks") }
        return (worker, assignments)
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
                let (worker, assignments) = try await worker("w", slots: 2, at: endpoint)
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
                let (worker, assignments) = try await worker("w2", slots: 5, at: endpoint)
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
                // Every attempt is in the log, the one cut short by the stop as well.
                let log = try await attemptLog(client, jobID: "job")
                #expect(log.map(\.index) == [0, 1, 1, 2])
                #expect(log.map(\.outcome) == [.succeeded, .lost, .succeeded, .succeeded])
                #expect(log.map(\.attempt) == [1, 1, 2, 1])
                // The stop closed the worker's connection, or cut the attempt short.
                #expect(["the server stopped while it ran", "its worker disconnected"].contains(log[1].error ?? ""))
                #expect(log.map(\.worker) == ["w", "w", "w2", "w2"])
                #expect(log.allSatisfy { ($0.ended ?? 0) >= $0.started && $0.started > 1_700_000_000 })
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

    /// A lease's start may wait a moment before it is written, but a read of the attempt log
    /// writes it first: a running attempt shows at once.
    @Test func theAttemptLogShowsARunningAttemptAtOnce() async throws {
        try await withStateDirectory { folder in
            try await withStoredServer(store: "\(folder)/broker.sqlite") { endpoint in
                let client = try await client(endpoint)
                guard case .submitted(2, 0) = try await client.request(.submit(jobID: "job", options: JobOptions(), tasks: commands(2))) else {
                    Issue.record("submit was not acknowledged")
                    return
                }
                let (worker, assignments) = try await worker("w", slots: 2, at: endpoint)
                worker.send(.complete(
                    leaseID: assignments[0].leaseID, jobID: "job", index: 0,
                    report: AttemptReport(succeeded: true, exitCode: 0, output: Data("zero\n".utf8))))
                try await waitUntil("task 0 is stored") {
                    guard case .status(let report) = try await client.request(.status) else { return false }
                    return report.jobs.first?.succeeded == 1
                }
                let log = try await attemptLog(client, jobID: "job")
                #expect(log.map(\.index) == [0, 1])
                #expect(log.map(\.outcome) == [.succeeded, .running])
                #expect(log.map(\.leaseID) == assignments.map(\.leaseID))
            }
        }
    }

    /// A job's tasks as submitted come back from the store, done or not, also after a restart;
    /// a server without a store says it cannot answer.
    @Test func aJobsTasksComeBackAsSubmitted() async throws {
        @Sendable func tasks(_ client: PeerConnection, _ jobID: String) async throws -> [TaskSpec] {
            var tasks: [TaskSpec] = []
            for try await message in client.stream(.tasks(jobID: jobID)) {
                if case .tasks(let batch) = message { tasks += batch }
                if case .done = message { break }
            }
            return tasks
        }
        try await withStateDirectory { folder in
            let store = "\(folder)/broker.sqlite"
            try await withStoredServer(store: store) { endpoint in
                let client = try await client(endpoint)
                guard case .submitted(3, 0) = try await client.request(.submit(jobID: "job", options: JobOptions(), tasks: commands(3))) else {
                    Issue.record("submit was not acknowledged")
                    return
                }
                let (worker, assignments) = try await worker("w", slots: 1, at: endpoint)
                worker.send(.complete(
                    leaseID: assignments[0].leaseID, jobID: "job", index: assignments[0].task.index,
                    report: AttemptReport(succeeded: true, exitCode: 0, output: Data("done\n".utf8))))
                try await waitUntil("one task is done") {
                    guard case .status(let report) = try await client.request(.status) else { return false }
                    return report.jobs.first?.succeeded == 1
                }
                #expect(try await tasks(client, "job") == commands(3))
                do {
                    _ = try await tasks(client, "nope")
                    Issue.record("a missing job was not an error")
                } catch {
                    #expect("\(error)".contains("there is no job 'nope'"))
                }
            }
            try await withStoredServer(store: store) { endpoint in
                let stored = try await tasks(try await client(endpoint), "job")
                #expect(stored == commands(3))
            }
        }
        try await withServer { endpoint in
            let client = try await client(endpoint)
            _ = try await client.request(.submit(jobID: "job", options: JobOptions(), tasks: commands(1)))
            do {
                _ = try await tasks(client, "job")
                Issue.record("a server without a store answered")
            } catch {
                #expect("\(error)".contains("start it with a store"))
            }
        }
    }

    /// With a small resident limit, most queued payloads wait on disk; workers still get every
    /// task, in order, with its input, also after a restart.
    @Test func queuedPayloadsBeyondTheResidentLimitWaitOnDisk() async throws {
        try await withStateDirectory { folder in
            let store = "\(folder)/broker.sqlite"
            let count = 1000
            @Sendable func work(_ endpoint: Endpoint, upTo limit: Int = .max) async throws -> [Assignment] {
                let worker = try await PeerConnection.connect(
                    to: endpoint, hello: Hello(role: .worker, password: "right-password", name: "w", slots: 8))
                defer { worker.close() }
                worker.send(.credit(count: 32))
                var done: [Assignment] = []
                for await push in worker.pushes {
                    guard case .assign(let assignments) = push else { continue }
                    for assignment in assignments {
                        worker.send(.complete(
                            leaseID: assignment.leaseID, jobID: "big", index: assignment.task.index,
                            report: AttemptReport(succeeded: true, output: assignment.task.input)))
                    }
                    done += assignments
                    worker.send(.credit(count: assignments.count))
                    if done.count >= limit { break }
                }
                return done
            }
            let first = try await withStoredServer(store: store, residentTaskLimit: 10) { endpoint in
                let client = try await client(endpoint)
                for start in stride(from: 0, to: count, by: 100) {
                    let tasks = commands(count)[start..<start + 100]
                    guard case .submitted(100, 0) = try await client.request(.submit(jobID: "big", options: JobOptions(), tasks: Array(tasks))) else {
                        Issue.record("submit was not acknowledged")
                        return [Assignment]()
                    }
                }
                return try await work(endpoint, upTo: 400)
            }
            // Each task once, the oldest first as far as frames written from two threads keep order.
            #expect(Set(first.map(\.task.index)).count == first.count)
            #expect(first.map(\.task.index).max()! < first.count + 64)
            let second = try await withStoredServer(store: store, residentTaskLimit: 10) { endpoint in
                let worker = Task { try await work(endpoint) }
                let client = try await client(endpoint)
                var results: [Int: TaskResult] = [:]
                for try await message in client.stream(.watch(jobID: "big")) {
                    if case .results(let batch) = message { for result in batch { results[result.index] = result } }
                    if results.count == count { break }
                }
                #expect(results.values.allSatisfy { $0.output == Data("in-\($0.index)".utf8) })
                worker.cancel()
                return try await worker.value
            }
            // Tasks leased but unreported when the first server stopped run again; none is skipped.
            let indices = Set((first + second).map(\.task.index))
            #expect(indices == Set(0..<count))
            let wrong = (first + second).filter { $0.task.input != Data("in-\($0.task.index)".utf8) }
            #expect(wrong.isEmpty, "\(wrong.prefix(3))")
            #expect((first + second).allSatisfy { $0.task.kind == .command(argv: ["echo", "\($0.task.index)"], environment: [:]) })
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

/// The store keeps task kinds in a layout of its own, and still reads the rows that stores of
/// wire protocol 2 wrote in the wire's layout.
@Suite struct StoredTaskKindTests {
    @Test(arguments: [
        TaskSpec.Kind.swift(name: "Square"),
        .swiftChunk(name: "Ünïcode"),
        .command(argv: ["sh", "-c", "echo {}"], environment: ["A": "1", "B": "é"]),
        .command(argv: [""], environment: [:]),
        .swift(name: ""),
    ])
    func kindsRoundTrip(kind: TaskSpec.Kind) throws {
        #expect(try StoredTaskKind.decode(StoredTaskKind.encode(kind)) == kind)
        // A kind cut anywhere is an error, never a crash.
        let stored = StoredTaskKind.encode(kind)
        if case .command = kind {
            for cut in 1..<stored.count { #expect(throws: DockerParallelError.self) { try StoredTaskKind.decode(stored.prefix(cut)) } }
        }
    }

    @Test func kindsTakeATagByteAndTheirParts() throws {
        #expect(StoredTaskKind.encode(.swift(name: "Sq")) == Data([0x01, 0x53, 0x71]))
        #expect(StoredTaskKind.encode(.command(argv: ["true"], environment: [:])) == Data([0x03, 0, 0, 0, 1, 0, 0, 0, 4] + Array("true".utf8) + [0, 0, 0, 0]))
        // Rows that the first stores kept as JSON are read.
        let json = try JSONEncoder().encode(TaskSpec.Kind.command(argv: ["echo", "1"], environment: [:]))
        #expect(try StoredTaskKind.decode(json) == .command(argv: ["echo", "1"], environment: [:]))
    }

    @Test func rowsInTheWiresOldLayoutAreStillRead() throws {
        // index 0, kind tag 1 (Swift), name "Sq", empty input: as stores of protocol 2 wrote them.
        #expect(try StoredTaskKind.decode(Data([0x00, 0x01, 0x02, 0x53, 0x71, 0x00])) == .swift(name: "Sq"))
        let error = #expect(throws: DockerParallelError.self) { try StoredTaskKind.decode(Data([0x7F])) }
        #expect(error?.code == .codingFailed)
        #expect(throws: DockerParallelError.self) { try StoredTaskKind.decode(Data()) }
    }
}
