import DockerParallelCore
import DockerParallelWire
import Foundation
import NIOConcurrencyHelpers

extension DockerCluster {
    /// Runs a Swift task over every input on the cluster and returns the outputs in input order.
    ///
    /// The cluster must be started; a worker executable that registers `task` must be running.
    /// - Parameters:
    ///   - inputs: One task per input.
    ///   - task: The registered task type.
    ///   - options: Attempts, retries and time limit.
    ///   - chunkSize: Inputs per task (default 1). Tasks of microseconds run many times faster in
    ///     chunks: a chunk's inputs are leased, run one after another, retried and failed
    ///     together, and `options.timeout` limits a whole chunk.
    /// - Throws: ``TaskFailures`` naming each failed input; connection errors.
    public func map<Work: ParallelTask>(
        _ inputs: [Work.Input], using work: Work.Type, options: JobOptions = JobOptions(), chunkSize: Int = 1
    ) async throws -> [Work.Output] {
        guard chunkSize >= 1 else {
            throw DockerParallelError(.invalidArgument, "chunkSize must be at least 1, got \(chunkSize)")
        }
        let job = JobHandle(cluster: self, id: JobID.random(), count: inputs.count, of: work)
        if chunkSize == 1 {
            return try job.outputs(from: try await run(try Self.specs(inputs, using: work), jobID: job.id, options: options))
        }
        let specs = try Self.chunkSpecs(inputs, using: work, size: chunkSize)
        return try job.outputs(fromChunks: try await run(specs, jobID: job.id, options: options), size: chunkSize)
    }

    /// Runs a job to its end and returns its results by index; forgets it unless a task failed.
    private func run(_ specs: [TaskSpec], jobID: JobID, options: JobOptions) async throws -> [TaskResult] {
        if Self.fitsOneSubmit(specs), let results = try await runInOneRoundTrip(specs, jobID: jobID, options: options) {
            return results
        }
        // Submits are idempotent: a job the quick path sent already is not added twice.
        try await submit(specs, jobID: jobID, options: options)
        let results = try await collect(jobID: jobID)
        // A job with failed tasks stays, so that they can be retried.
        if results.allSatisfy({ $0.status == .succeeded }) { try? await forget(jobID: jobID) }
        return results
    }

    /// Runs a job that fits one submit with one `run` message, which submits and watches it;
    /// the server forgets the job itself once every task has succeeded: one round trip to the
    /// server instead of three.
    /// - Returns: The results by index, or `nil` when the connection failed on the way (the
    ///   caller then takes the path that waits for the server to come back).
    private func runInOneRoundTrip(_ specs: [TaskSpec], jobID: JobID, options: JobOptions) async throws -> [TaskResult]? {
        try options.validate()
        do {
            let connection = try await client()
            var results: [TaskResult] = []
            var received = Set<Int>()
            for try await reply in connection.stream(.run(jobID: jobID.rawValue, options: options, tasks: specs)) {
                switch reply {
                case .results(let batch):
                    for result in batch where received.insert(result.index).inserted { results.append(result) }
                case .job(let status) where received.count >= status.total:
                    return results.sorted { $0.index < $1.index }
                default:
                    break
                }
            }
            return nil
        } catch let error as DockerParallelError where Self.serverRetryCodes.contains(error.code) {
            return nil
        }
    }

    /// Encodes the inputs of a Swift task as task specifications.
    static func specs<Work: ParallelTask>(_ inputs: [Work.Input], using work: Work.Type) throws -> [TaskSpec] {
        var specs: [TaskSpec] = []
        specs.reserveCapacity(inputs.count)
        let encoder = JSONEncoder()
        for (index, input) in inputs.enumerated() {
            let data: Data
            do {
                data = try encoder.encode(input)
            } catch {
                throw DockerParallelError(.codingFailed, "input #\(index) could not be encoded: \(error)")
            }
            specs.append(TaskSpec(index: index, kind: .swift(name: Work.name), input: data))
        }
        return specs
    }

    /// Encodes the inputs of a Swift task as chunks of `size` inputs, one task each.
    static func chunkSpecs<Work: ParallelTask>(_ inputs: [Work.Input], using work: Work.Type, size: Int) throws -> [TaskSpec] {
        let encoded = try specs(inputs, using: work)
        return stride(from: 0, to: encoded.count, by: size).enumerated().map { chunk, start in
            let parts = encoded[start..<min(start + size, encoded.count)].map(\.input)
            return TaskSpec(index: chunk, kind: .swiftChunk(name: Work.name), input: TaskChunk.pack(parts))
        }
    }

    /// Tasks per submit frame, at most.
    static let submitBatchCount = 4096
    /// Input bytes per submit frame, about, at most.
    static let submitBatchBytes = 4 * 1024 * 1024

    static func fitsOneSubmit(_ specs: [TaskSpec]) -> Bool {
        specs.count <= submitBatchCount && specs.reduce(0) { $0 + $1.input.count + 64 } <= submitBatchBytes
    }

    /// Submits a Swift task over every input and returns at once with a handle on the job.
    /// - Parameters:
    ///   - jobID: The job's id; a retried submit with the same id adds nothing twice. Default: a new id.
    public func submit<Work: ParallelTask>(
        _ inputs: [Work.Input], using work: Work.Type, options: JobOptions = JobOptions(), jobID: JobID = .random()
    ) async throws -> JobHandle<Work.Output> {
        try await submit(try Self.specs(inputs, using: work), jobID: jobID, options: options)
        return JobHandle(cluster: self, id: jobID, count: inputs.count, of: work)
    }

    /// Submits one command per input, GNU parallel style, and returns at once with a handle.
    /// - Parameters:
    ///   - command: The argv template (`{}` is the input).
    ///   - inputs: One task per input.
    ///   - environment: Extra environment for every command.
    public func submitCommands(
        _ command: CommandTemplate, inputs: [String], environment: [String: String] = [:],
        options: JobOptions = JobOptions(), jobID: JobID = .random()
    ) async throws -> JobHandle<TaskResult> {
        let specs = inputs.enumerated().map { index, input in
            TaskSpec(index: index, kind: .command(argv: command.argv(input: input, number: index + 1), environment: environment))
        }
        try await submit(specs, jobID: jobID, options: options)
        return JobHandle(cluster: self, id: jobID, count: inputs.count)
    }

    /// Submits one command per argument list, as GNU parallel builds and runs them (a shell
    /// command line with the arguments quoted in it, or the quoted words as they are), and
    /// returns at once with a handle. Each command sees its number as `PARALLEL_SEQ`.
    /// - Parameters:
    ///   - command: The command's words and how they run.
    ///   - arguments: One task per argument list.
    ///   - numbers: The commands' numbers (`{#}`, `PARALLEL_SEQ`); default 1, 2, 3 …
    ///   - environment: Extra environment for every command.
    public func submitCommandLines(
        _ command: ShellCommandLine, arguments: [[String]], numbers: [Int]? = nil, environment: [String: String] = [:],
        options: JobOptions = JobOptions(), jobID: JobID = .random()
    ) async throws -> JobHandle<TaskResult> {
        let specs = try Self.commandLineTasks(command, arguments: arguments, numbers: numbers, environment: environment)
        try await submit(specs, jobID: jobID, options: options)
        return JobHandle(cluster: self, id: jobID, count: arguments.count)
    }

    /// The tasks ``submitCommandLines(_:arguments:numbers:environment:options:jobID:)`` submits,
    /// indexed from `firstIndex`, for a caller that submits them itself (a few at a time, or
    /// added to a job).
    public static func commandLineTasks(
        _ command: ShellCommandLine, arguments: [[String]], numbers: [Int]? = nil, environment: [String: String] = [:],
        firstIndex: Int = 0
    ) throws -> [TaskSpec] {
        let numbers = numbers ?? arguments.indices.map { $0 + 1 }
        guard numbers.count == arguments.count else {
            throw DockerParallelError(.invalidArgument, "\(numbers.count) command numbers for \(arguments.count) commands")
        }
        return arguments.enumerated().map { offset, arguments in
            var environment = environment
            environment["PARALLEL_SEQ"] = String(numbers[offset])
            return TaskSpec(
                index: firstIndex + offset, kind: .command(argv: command.argv(arguments: arguments, number: numbers[offset]), environment: environment))
        }
    }

    /// Submits task specifications in batches; returns once the server has stored them all.
    public func submit(_ tasks: [TaskSpec], jobID: JobID, options: JobOptions) async throws {
        try options.validate()
        guard !jobID.rawValue.isEmpty else { throw DockerParallelError(.invalidArgument, "a job id must not be empty") }
        var start = 0
        repeat {
            var end = start
            var bytes = 0
            while end < tasks.count, end - start < Self.submitBatchCount, bytes < Self.submitBatchBytes {
                bytes += tasks[end].input.count + 64
                end += 1
            }
            // Submits are idempotent, so a batch whose acknowledgement was lost is simply sent again.
            let batch = Array(tasks[start..<end])
            let reply = try await withServerRetry { try await $0.request(.submit(jobID: jobID.rawValue, options: options, tasks: batch)) }
            guard case .submitted = reply else {
                throw DockerParallelError(.protocolViolation, "the server answered submit with \(reply)")
            }
            start = end
        } while start < tasks.count
        say("Submitted \(tasks.count) tasks as job \(jobID)", level: 2)
    }

    /// Streams a job's results as they are committed, ending when every task has one.
    /// - Parameter progress: Called with the job's counts after each batch of results.
    public func results(
        jobID: JobID, progress: @escaping @Sendable (JobStatus) -> Void = { _ in }
    ) async throws -> AsyncThrowingStream<TaskResult, any Error> {
        // Fails now, not in the stream, when there is no server to come back.
        _ = try await withServerRetry { $0 }
        let received = NIOLockedValueBox(Set<Int>())
        return AsyncThrowingStream { continuation in
            let reader = Task {
                do {
                    // Watching is idempotent: after a lost connection the server sends every
                    // result again, and those already seen are skipped.
                    try await self.withServerRetry { connection in
                        // Frames from different workers' completions may arrive in any order, so
                        // the stream ends when every task has a result, not on a status alone.
                        var total: Int?
                        for try await reply in connection.stream(.watch(jobID: jobID.rawValue)) {
                            switch reply {
                            case .results(let results):
                                for result in results where received.withLockedValue({ $0.insert(result.index).inserted }) {
                                    continuation.yield(result)
                                }
                            case .job(let status):
                                total = status.total
                                progress(status)
                            default:
                                break
                            }
                            if let total, received.withLockedValue({ $0.count }) >= total { return }
                        }
                        throw DockerParallelError(.connectionFailed, "the server closed the connection before job \(jobID) finished")
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in reader.cancel() }
        }
    }

    /// The results a job has now, ordered by index, without waiting for the rest.
    public func finishedResults(jobID: JobID) async throws -> [TaskResult] {
        try await withServerRetry { connection in
            var results: [TaskResult] = []
            for try await reply in connection.stream(.watch(jobID: jobID.rawValue)) {
                switch reply {
                case .results(let batch): results += batch
                case .job: return results.sorted { $0.index < $1.index }
                default: break
                }
            }
            throw DockerParallelError(.connectionFailed, "the server closed the connection")
        }
    }

    /// The attempt log of a job, or of one task: every lease a task was given, who ran it, when,
    /// and how it ended, oldest first per task.
    /// - Throws: `.invalidArgument` when the job is unknown or the server keeps no store.
    public func attemptLog(jobID: JobID, index: Int? = nil) async throws -> [AttemptRecord] {
        try await withServerRetry { connection in
            var records: [AttemptRecord] = []
            for try await reply in connection.stream(.attempts(jobID: jobID.rawValue, index: index)) {
                switch reply {
                case .attempts(let batch): records += batch
                case .done: return records
                default: break
                }
            }
            throw DockerParallelError(.connectionFailed, "the server closed the connection")
        }
    }

    /// A job's tasks as they were submitted, by index: what each command runs. The server keeps
    /// them in its store (a server without one cannot answer).
    public func tasks(jobID: JobID) async throws -> [TaskSpec] {
        try await withServerRetry { connection in
            var tasks: [TaskSpec] = []
            for try await reply in connection.stream(.tasks(jobID: jobID.rawValue)) {
                switch reply {
                case .tasks(let batch): tasks += batch
                case .done: return tasks
                default: break
                }
            }
            throw DockerParallelError(.connectionFailed, "the server closed the connection")
        }
    }

    /// Waits for every result of a job, ordered by index.
    public func collect(jobID: JobID, progress: @escaping @Sendable (JobStatus) -> Void = { _ in }) async throws -> [TaskResult] {
        var results: [TaskResult] = []
        for try await result in try await self.results(jobID: jobID, progress: progress) { results.append(result) }
        return results.sorted { $0.index < $1.index }
    }

    /// Cancels a job's unfinished tasks, or one task.
    /// - Returns: The job's counts afterwards.
    @discardableResult
    public func cancel(jobID: JobID, index: Int? = nil) async throws -> JobStatus {
        let reply = try await withServerRetry { try await $0.request(.cancel(jobID: jobID.rawValue, index: index)) }
        guard case .job(let status) = reply else {
            throw DockerParallelError(.protocolViolation, "the server answered cancel with \(reply)")
        }
        return status
    }

    /// Starts no more of a job's tasks, as GNU parallel's `--halt soon` does: queued tasks are
    /// cancelled, and so are those workers hold but have not started; running ones finish.
    /// ``retryFailed(jobID:indices:)`` lets the job start tasks again.
    /// - Returns: The job's counts afterwards (tasks handed back are cancelled a moment later).
    @discardableResult
    public func stopStarting(jobID: JobID) async throws -> JobStatus {
        let reply = try await withServerRetry { try await $0.request(.stopStarting(jobID: jobID.rawValue)) }
        guard case .job(let status) = reply else {
            throw DockerParallelError(.protocolViolation, "the server answered stopStarting with \(reply)")
        }
        return status
    }

    /// Queues a job's failed and cancelled tasks again, with fresh attempts.
    /// - Parameter indices: Only these tasks (default: every failed or cancelled one).
    /// - Returns: The job's counts afterwards.
    @discardableResult
    public func retryFailed(jobID: JobID, indices: [Int]? = nil) async throws -> JobStatus {
        let reply = try await withServerRetry { try await $0.request(.retry(jobID: jobID.rawValue, indices: indices)) }
        guard case .job(let status) = reply else {
            throw DockerParallelError(.protocolViolation, "the server answered retry with \(reply)")
        }
        return status
    }

    /// Removes a job and its results from the server.
    public func forget(jobID: JobID) async throws {
        _ = try await withServerRetry { try await $0.request(.forget(jobID: jobID.rawValue)) }
    }

    /// What the server reports: connected workers and jobs.
    /// - Parameter waitingForServer: Wait for a restarting server, as job operations do
    ///   (default: fail at once, as `status` output wants).
    public func serverReport(waitingForServer: Bool = false) async throws -> ServerReport {
        let reply = waitingForServer
            ? try await withServerRetry { try await $0.request(.status, timeout: 10) }
            : try await client().request(.status, timeout: 10)
        guard case .status(let report) = reply else {
            throw DockerParallelError(.protocolViolation, "the server answered status with \(reply)")
        }
        return report
    }

    /// The counts of one job.
    /// - Throws: `.invalidArgument` when the server does not know the job.
    public func jobStatus(jobID: JobID) async throws -> JobStatus {
        guard let status = try await serverReport(waitingForServer: true).jobs.first(where: { $0.jobID == jobID }) else {
            throw DockerParallelError(.invalidArgument, "there is no job '\(jobID)' on the server of '\(configuration.jobQueueName)'")
        }
        return status
    }
}
