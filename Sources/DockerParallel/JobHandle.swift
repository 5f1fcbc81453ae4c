import DockerParallelCore
import Foundation

/// A submitted job of Swift tasks, whose outputs can be awaited now or collected later,
/// also from another process that knows the job's ``id``.
public struct JobHandle<Task: ParallelTask>: Sendable {
    /// The cluster the job runs on.
    public let cluster: DockerCluster
    /// The job's id.
    public let id: String
    /// The number of tasks.
    public let count: Int

    /// Creates a handle on an existing job.
    public init(cluster: DockerCluster, id: String, count: Int) {
        self.cluster = cluster
        self.id = id
        self.count = count
    }

    /// Waits for every task and returns the outputs in input order.
    /// - Throws: ``TaskFailures`` naming every input that failed.
    public func outputs(progress: @escaping @Sendable (JobStatus) -> Void = { _ in }) async throws -> [Task.Output] {
        try outputs(from: try await cluster.collect(jobID: id, progress: progress))
    }

    /// Decodes a job's results, ordered by index, as outputs.
    /// - Throws: ``TaskFailures`` naming every input that failed.
    func outputs(from results: [TaskResult]) throws -> [Task.Output] {
        var outputs: [Task.Output] = []
        outputs.reserveCapacity(results.count)
        var failures: [TaskFailures.Failure] = []
        let decoder = JSONDecoder()
        for result in results {
            guard result.status == .succeeded else {
                failures.append(.init(result: result))
                continue
            }
            do {
                outputs.append(try decoder.decode(Task.Output.self, from: result.output))
            } catch {
                var broken = result
                broken.status = .failed
                broken.error = "its output could not be decoded as \(Task.Output.self): \(error)"
                failures.append(.init(result: broken))
            }
        }
        guard failures.isEmpty else { throw TaskFailures(jobID: id, total: results.count, failures: failures) }
        return outputs
    }

    /// Decodes the results of a job of chunks (``DockerCluster/map(_:using:options:chunkSize:)``),
    /// ordered by index, as one output per input. A failed chunk fails each of its inputs.
    /// - Throws: ``TaskFailures`` naming every input that failed.
    func outputs(fromChunks results: [TaskResult], size: Int) throws -> [Task.Output] {
        var outputs: [Task.Output] = []
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
                for part in parts { outputs.append(try decoder.decode(Task.Output.self, from: part)) }
            } catch {
                var broken = result
                broken.status = .failed
                broken.error = "its chunk's output could not be decoded as \(Task.Output.self): \(error)"
                fail(broken)
            }
        }
        guard failures.isEmpty else { throw TaskFailures(jobID: id, total: count, failures: failures) }
        return outputs
    }

    /// The job's counts.
    /// - Throws: `.invalidArgument` when the server does not know the job.
    public func status() async throws -> JobStatus {
        try await cluster.jobStatus(jobID: id)
    }

    /// Cancels the job's unfinished tasks.
    public func cancel() async throws {
        try await cluster.cancel(jobID: id)
    }
}

/// A submitted job of command tasks.
public struct CommandJob: Sendable {
    /// The cluster the job runs on.
    public let cluster: DockerCluster
    /// The job's id.
    public let id: String
    /// The number of tasks.
    public let count: Int

    /// Streams results as they come.
    public func results(progress: @escaping @Sendable (JobStatus) -> Void = { _ in }) async throws -> AsyncThrowingStream<TaskResult, any Error> {
        try await cluster.results(jobID: id, progress: progress)
    }

    /// Cancels the job's unfinished tasks.
    public func cancel() async throws {
        try await cluster.cancel(jobID: id)
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
    public var jobID: String
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
