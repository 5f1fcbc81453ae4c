import DockerParallelCore
import DockerParallelWire
import Foundation

/// A submitted job, of Swift tasks or of commands: its outputs can be awaited now or collected
/// later, also from another process that knows the job's ``id``.
///
/// Every operation waits for a restarting server, up to the cluster's
/// ``DockerCluster/serverRecoveryTimeout``, as the rest of the client does.
///
/// ```swift
/// let job = try await cluster.submit(inputs, using: Simulate.self)
/// print(job.id)                         // collect it later, from anywhere
/// let outputs = try await job.outputs() // [Simulate.Output], in input order
/// ```
public struct JobHandle<Output: Sendable>: Sendable {
    /// The cluster the job runs on.
    public let cluster: DockerCluster
    /// The job's id.
    public let id: JobID
    /// The number of inputs.
    public let count: Int
    /// Turns the job's results, by task index, into outputs by input.
    private let decode: @Sendable (_ results: [TaskResult], _ handle: JobHandle<Output>) throws -> [Output]

    private init(
        cluster: DockerCluster, id: JobID, count: Int,
        decode: @escaping @Sendable (_ results: [TaskResult], _ handle: JobHandle<Output>) throws -> [Output]
    ) {
        self.cluster = cluster
        self.id = id
        self.count = count
        self.decode = decode
    }

    /// Waits for every task and returns the outputs in input order.
    /// - Parameter progress: Called with the job's counts as results arrive.
    /// - Throws: ``TaskFailures`` naming every input that failed.
    public func outputs(progress: @escaping @Sendable (JobStatus) -> Void = { _ in }) async throws -> [Output] {
        try decode(try await cluster.collect(jobID: id, progress: progress), self)
    }

    /// Streams the tasks' results as they are committed (in any order), ending when every task
    /// has one.
    /// - Parameter progress: Called with the job's counts after each batch of results.
    public func results(
        progress: @escaping @Sendable (JobStatus) -> Void = { _ in }
    ) async throws -> AsyncThrowingStream<TaskResult, any Error> {
        try await cluster.results(jobID: id, progress: progress)
    }

    /// The job's counts.
    /// - Throws: `.invalidArgument` when the server does not know the job.
    public func status() async throws -> JobStatus {
        try await cluster.jobStatus(jobID: id)
    }

    /// Cancels the job's unfinished tasks, or one task.
    /// - Returns: The job's counts afterwards.
    @discardableResult
    public func cancel(index: Int? = nil) async throws -> JobStatus {
        try await cluster.cancel(jobID: id, index: index)
    }

    /// Queues the job's failed and cancelled tasks again, with fresh attempts.
    /// - Parameter indices: Only these tasks (default: every failed or cancelled one).
    /// - Returns: The job's counts afterwards.
    @discardableResult
    public func retryFailed(indices: [Int]? = nil) async throws -> JobStatus {
        try await cluster.retryFailed(jobID: id, indices: indices)
    }

    /// Removes the job and its results from the server.
    public func forget() async throws {
        try await cluster.forget(jobID: id)
    }

    /// The job's attempt log, or one task's: who ran each attempt, when, and how it ended.
    /// - Throws: `.invalidArgument` when the server keeps no store.
    public func logs(index: Int? = nil) async throws -> [AttemptRecord] {
        try await cluster.attemptLog(jobID: id, index: index)
    }
}

extension JobHandle {
    /// A handle on a job of Swift tasks, one task per input (as ``DockerCluster/submit(_:using:options:jobID:)`` makes).
    /// - Parameters:
    ///   - cluster: The cluster the job runs on.
    ///   - id: The job's id.
    ///   - count: The number of inputs.
    ///   - work: The task type the job runs.
    public init<Work: ParallelTask>(cluster: DockerCluster, id: JobID, count: Int, of work: Work.Type) where Output == Work.Output {
        self.init(cluster: cluster, id: id, count: count) { results, handle in
            try handle.outputs(from: results)
        }
    }

    /// A handle on a job of Swift tasks whose inputs were packed `size` to a task.
    init<Work: ParallelTask>(cluster: DockerCluster, id: JobID, count: Int, of work: Work.Type, chunkSize size: Int)
    where Output == Work.Output {
        self.init(cluster: cluster, id: id, count: count) { results, handle in
            try handle.outputs(fromChunks: results, size: size)
        }
    }

    /// Decodes a job's results, ordered by index, as outputs.
    /// - Throws: ``TaskFailures`` naming every input that failed.
    func outputs(from results: [TaskResult]) throws -> [Output] where Output: Decodable {
        var outputs: [Output] = []
        outputs.reserveCapacity(results.count)
        var failures: [TaskFailures.Failure] = []
        let decoder = JSONDecoder()
        for result in results {
            guard result.status == .succeeded else {
                failures.append(.init(result: result))
                continue
            }
            do {
                outputs.append(try decoder.decode(Output.self, from: result.output))
            } catch {
                var broken = result
                broken.status = .failed
                broken.error = "its output could not be decoded as \(Output.self): \(error)"
                failures.append(.init(result: broken))
            }
        }
        guard failures.isEmpty else { throw TaskFailures(jobID: id, total: results.count, failures: failures) }
        return outputs
    }

    /// Decodes the results of a job of chunks, ordered by index, as one output per input. A
    /// failed chunk fails each of its inputs.
    /// - Throws: ``TaskFailures`` naming every input that failed.
    func outputs(fromChunks results: [TaskResult], size: Int) throws -> [Output] where Output: Decodable {
        var outputs: [Output] = []
        outputs.reserveCapacity(count)
        var failures: [TaskFailures.Failure] = []
        let decoder = JSONDecoder()
        for result in results {
            let first = result.index * size
            let inputs = first..<min(first + size, count)
            func fail(_ result: TaskResult) {
                for index in inputs {
                    var failed = result
                    failed.index = index
                    failures.append(.init(result: failed))
                }
            }
            guard result.status == .succeeded else {
                fail(result)
                continue
            }
            do {
                let parts = try TaskChunk.unpack(result.output)
                guard parts.count == inputs.count else {
                    throw DockerParallelError(.codingFailed, "the chunk has \(parts.count) outputs for \(inputs.count) inputs")
                }
                for part in parts { outputs.append(try decoder.decode(Output.self, from: part)) }
            } catch {
                var broken = result
                broken.status = .failed
                broken.error = "its chunk's output could not be decoded as \(Output.self): \(error)"
                fail(broken)
            }
        }
        guard failures.isEmpty else { throw TaskFailures(jobID: id, total: count, failures: failures) }
        return outputs
    }
}

extension JobHandle where Output == TaskResult {
    /// A handle on a job of command tasks (as ``DockerCluster/submitCommands(_:inputs:environment:options:jobID:)``
    /// makes): its outputs are the commands' results, with standard output, standard error and
    /// exit status.
    /// - Parameters:
    ///   - cluster: The cluster the job runs on.
    ///   - id: The job's id.
    ///   - count: The number of inputs.
    public init(cluster: DockerCluster, id: JobID, count: Int) {
        self.init(cluster: cluster, id: id, count: count) { results, handle in
            let failures = results.filter { $0.status != .succeeded }.map(TaskFailures.Failure.init(result:))
            guard failures.isEmpty else { throw TaskFailures(jobID: handle.id, total: results.count, failures: failures) }
            return results
        }
    }
}

/// Some tasks of a job did not succeed; each failure names its input's index and its error.
public struct TaskFailures: Error, Sendable, CustomStringConvertible {
    /// One failed task.
    public struct Failure: Sendable, CustomStringConvertible {
        /// The failed input's index.
        public var index: Int
        /// Failed or cancelled.
        public var status: TaskStatus
        /// Why.
        public var error: String
        /// The last lines of standard error.
        public var lastLines: String
        /// Attempts started.
        public var attempts: Int

        init(result: TaskResult) {
            index = result.index
            status = result.status
            error = result.error ?? "failed"
            lastLines = result.lastErrorLines()
            attempts = result.attempts
        }

        public var description: String {
            let lines = lastLines.isEmpty ? "" : "; last output: \(lastLines)"
            return "input #\(index) \(status == .cancelled ? "was cancelled" : "failed") after \(attempts) attempt(s): \(error)\(lines)"
        }
    }

    /// The job.
    public var jobID: JobID
    /// Tasks in the job.
    public var total: Int
    /// Each failed task, by index.
    public var failures: [Failure]

    public var description: String {
        let shown = failures.prefix(10).map { "  \($0)" }.joined(separator: "\n")
        let more = failures.count > 10 ? "\n  … and \(failures.count - 10) more" : ""
        return "\(failures.count) of \(total) tasks of job \(jobID) did not succeed:\n\(shown)\(more)"
    }
}
