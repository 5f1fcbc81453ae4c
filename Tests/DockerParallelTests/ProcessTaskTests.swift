import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// Tasks for a long-lived process that each worker slot keeps (an R or Python interpreter): the
/// process is reused between tasks, what it prints is the task's log, and a crash, a hang, a
/// failed start or a reply too large is a clear failure that does not break the worker.
@Suite(.timeLimit(.minutes(3))) struct ProcessTaskTests {
    /// A persistent process in Python speaking PersistentProcessProtocol's frames on fds 3 and 4.
    static let responder = """
        import os, struct, sys, time
        def read(n):
            data = b''
            while len(data) < n:
                chunk = os.read(3, n - len(data))
                if not chunk: sys.exit(0)
                data += chunk
            return data
        def send(kind, payload=b''):
            sys.stdout.flush(); sys.stderr.flush()
            os.write(4, struct.pack('>I', len(payload) + 1) + kind + payload)
        send(b'H')
        while True:
            length, = struct.unpack('>I', read(4))
            frame = read(length)
            attempt, index, id_length = struct.unpack('>IIH', frame[1:11])
            job = frame[11:11 + id_length].decode()
            task = frame[11 + id_length:]
            if task == b'pid':
                send(b'R', str(os.getpid()).encode())
            elif task.startswith(b'echo:'):
                print('log of task', index, 'attempt', attempt, 'of', job)
                send(b'R', task[5:])
            elif task == b'fail':
                send(b'F', b'\\x00asked to fail')
            elif task == b'never':
                send(b'F', b'\\x01this can never work')
            elif task == b'crash':
                print('about to crash', file=sys.stderr)
                os._exit(3)
            elif task.startswith(b'sleep:'):
                time.sleep(float(task[6:]))
                send(b'R', b'slept')
            elif task == b'big':
                os.write(4, struct.pack('>I', 40 * 1024 * 1024) + b'R' + b'x' * 1000)
                time.sleep(30)
            elif task == b'binary':
                send(b'R', bytes(range(256)))
        """

    static let program = TaskSpec.Kind.process(argv: ["python3", "-c", responder], environment: ["PYTHONUNBUFFERED": "1"])

    func withCluster(_ name: String, workers: Int = 1, slots: Int = 1, _ body: @escaping @Sendable (DockerCluster) async throws -> Void) async throws {
        try await withStateDirectory { state in
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel, maxWorkersPerContainer: slots),
                configuration: ClusterConfiguration(jobQueueName: name, expectedWorkerNumber: workers, serverPort: 0),
                verbosity: 0)
            try await cluster.withStarted { try await body($0) }
        }
    }

    func run(_ cluster: DockerCluster, _ inputs: [String], kind: TaskSpec.Kind = program, options: JobOptions = JobOptions()) async throws -> [TaskResult] {
        let job = JobID.random()
        let tasks = inputs.enumerated().map { TaskSpec(index: $0.offset, kind: kind, input: Data($0.element.utf8)) }
        try await cluster.submit(tasks, jobID: job, options: options)
        var results: [TaskResult] = []
        for try await result in try await cluster.results(jobID: job) { results.append(result) }
        return results.sorted { $0.index < $1.index }
    }

    @Test func oneProcessServesEveryTaskOfItsSlotAndItsPrintsAreTheLog() async throws {
        try await withCluster("process-reuse") { cluster in
            let results = try await run(cluster, (0..<40).map { $0 % 2 == 0 ? "pid" : "echo:\($0)" })
            #expect(results.allSatisfy { $0.status == .succeeded }, "\(results.compactMap(\.error))")
            // One worker of one slot: one process answered all forty.
            let pids = Set(results.filter { $0.index % 2 == 0 }.map { String(decoding: $0.output, as: UTF8.self) })
            #expect(pids.count == 1)
            let echo = try #require(results.first { $0.index == 3 })
            #expect(String(decoding: echo.output, as: UTF8.self) == "3")
            #expect(String(decoding: echo.errorOutput, as: UTF8.self).contains("log of task 3 attempt 1 of"))
        }
    }

    @Test func failuresAreClearAndTheWorkerGoesOn() async throws {
        try await withCluster("process-failures") { cluster in
            let results = try await run(
                cluster, ["fail", "never", "crash", "sleep:30", "big", "echo:after"],
                options: JobOptions(maxAttempts: 1, failureRetries: 0, timeout: .seconds(2)))
            func error(_ index: Int) -> String { results[index].error ?? "" }
            #expect(results.map(\.status) == [.failed, .failed, .failed, .failed, .failed, .succeeded])
            #expect(error(0) == "asked to fail")
            #expect(error(1) == "this can never work")
            #expect(error(2).contains("the process running the task exited with status 3"), "\(error(2))")
            #expect(String(decoding: results[2].errorOutput, as: UTF8.self).contains("about to crash"))
            #expect(error(3).contains("timed out after 2.0 s"), "\(error(3))")
            #expect(error(4).contains("result too large"), "\(error(4))")
            #expect(String(decoding: results[5].output, as: UTF8.self) == "after")
        }
    }

    @Test func aFailedTaskIsRetriedInANewProcessAfterACrash() async throws {
        try await withCluster("process-retry") { cluster in
            let before = try await run(cluster, ["pid"])
            let crashed = try await run(cluster, ["crash"], options: JobOptions(failureRetries: 2))
            #expect(crashed[0].status == .failed)
            #expect(crashed[0].attempts == 3)
            let after = try await run(cluster, ["pid"])
            #expect(after[0].status == .succeeded)
            #expect(after[0].output != before[0].output, "a crashed process is replaced")
        }
    }

    @Test func aProgramThatCannotStartFailsItsTasksForGoodWithItsReason() async throws {
        try await withCluster("process-start") { cluster in
            let broken = TaskSpec.Kind.process(
                argv: ["python3", "-c", "import sys; sys.stderr.write('no interpreter here\\n'); sys.exit(2)"], environment: [:])
            let results = try await run(cluster, ["a"], kind: broken)
            #expect(results[0].status == .failed)
            #expect(results[0].attempts == 1, "a start that failed is not retried")
            #expect(results[0].error?.contains("exited with status 2 before it was ready: no interpreter here") == true, "\(results[0].error ?? "")")
            let missing = TaskSpec.Kind.process(argv: ["no-such-interpreter"], environment: [:])
            let none = try await run(cluster, ["a"], kind: missing)
            #expect(none[0].error?.contains("program not found: 'no-such-interpreter' is not on the worker's PATH") == true)
        }
    }

    /// A task waiting behind a long one on a busy worker goes to an idle worker instead.
    @Test func aTaskDoesNotWaitBehindALongOneWhileAnotherWorkerIsIdle() async throws {
        try await withCluster("process-prefetch", workers: 2) { cluster in
            let results = try await run(cluster, ["sleep:5", "sleep:5"])
            #expect(results.allSatisfy { $0.status == .succeeded })
            // Each ran to its end on a worker of its own, not one after the other on the first.
            let log = try await cluster.attemptLog(jobID: results[0].jobID)
            let ranOn = Set(log.filter { $0.outcome == .succeeded }.map(\.worker))
            #expect(ranOn.count == 2, "\(log)")
        }
    }

    /// Inputs and outputs are bytes over HTTP too, in base64.
    @Test func theHTTPAPIRunsProcessJobsWithBinaryInputsAndResults() async throws {
        try await withCluster("process-http") { cluster in
            let endpoint = try #require(await cluster.runtime.serverEndpoints?.publicEndpoint)
            let base = "http://127.0.0.1:\(endpoint.port)"
            let auth = ["-H", "Authorization: Bearer \(await cluster.configuration.serverPassword.value)"]
            let body = try JSONSerialization.data(withJSONObject: [
                "id": "bytes", "process": ["python3", "-c", Self.responder],
                "inputs": [Data("binary".utf8).base64EncodedString(), Data("echo:\u{0}\u{1}".utf8).base64EncodedString()],
                "inputEncoding": "base64",
            ])
            let submitted = try await curl(auth + ["-d", String(decoding: body, as: UTF8.self), "\(base)/api/v1/jobs"])
            #expect(submitted.status == 201, "\(submitted.body)")
            let results = try await curl(auth + ["\(base)/api/v1/jobs/bytes/results?encoding=base64"])
            let lines = results.body.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(lines.count == 2)
            #expect((lines.first??["output"] as? String).flatMap { Data(base64Encoded: $0) } == Data((0...255).map { UInt8($0) }))
            #expect((lines.last??["output"] as? String).flatMap { Data(base64Encoded: $0) } == Data([0, 1]))

            let both = try await curl(auth + ["-d", #"{"command": ["echo"], "process": ["python3"], "inputs": ["a"]}"#, "\(base)/api/v1/jobs"])
            #expect(both.status == 400)
            #expect(both.body.contains("either \\\"command\\\" or \\\"process\\\""), "\(both.body)")
            let badBase64 = try await curl(auth + ["-d", #"{"process": ["python3"], "inputs": ["b2s=", "%%%"], "inputEncoding": "base64"}"#, "\(base)/api/v1/jobs"])
            #expect(badBase64.status == 400)
            #expect(badBase64.body.contains("input 1 is not base64"), "\(badBase64.body)")
        }
    }
}
