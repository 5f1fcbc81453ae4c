import Foundation

/// One unit of work as the broker stores and a worker runs it.
public struct TaskSpec: Sendable, Codable, Equatable {
    /// What to run.
    public enum Kind: Sendable, Codable, Equatable {
        /// Run a program: `argv[0]` is looked up on `PATH`.
        case command(argv: [String], environment: [String: String])
        /// Run the Swift task registered under this name, with ``TaskSpec/input`` as its encoded input.
        case swift(name: String)
        /// Run the Swift task registered under this name on each of several inputs, packed in
        /// ``TaskSpec/input`` by ``TaskChunk``; the output packs their outputs. The inputs are
        /// leased, retried and failed together.
        case swiftChunk(name: String)
        /// Run the task in a long-lived process the worker keeps between tasks (an R or Python
        /// interpreter, say), started from `argv` with `environment` added: ``TaskSpec/input`` is
        /// sent to it and its reply is the output (the frames: docs/http-api.md, persistent-process jobs).
        case process(argv: [String], environment: [String: String])
    }

    /// The task's position in its job; with the job id, its identity.
    public var index: Int
    /// What to run.
    public var kind: Kind
    /// The encoded input of a Swift task or a persistent process's task (empty for commands).
    public var input: Data

    /// Creates a task.
    public init(index: Int, kind: Kind, input: Data = Data()) {
        self.index = index
        self.kind = kind
        self.input = input
    }
}

/// How a job's tasks are retried and limited.
public struct JobOptions: Sendable, Codable, Equatable {
    /// Attempts a task gets when its worker dies or its lease expires, before it is failed.
    public var maxAttempts: Int
    /// Extra attempts after the task itself failed (non-zero exit, thrown error, timeout).
    public var failureRetries: Int
    /// How long a single attempt may run; `nil` for no limit.
    public var timeout: Duration?

    /// Creates options.
    /// - Parameters:
    ///   - maxAttempts: Attempts across lost workers (default 3).
    ///   - failureRetries: Retries after the task itself failed (default 0).
    ///   - timeout: How long one attempt may run (default no limit).
    public init(maxAttempts: Int = 3, failureRetries: Int = 0, timeout: Duration? = nil) {
        self.maxAttempts = maxAttempts
        self.failureRetries = failureRetries
        self.timeout = timeout
    }

    /// Checks the options are usable.
    /// - Throws: ``DockerParallelError`` `.invalidArgument` naming the bad option.
    public func validate() throws {
        guard maxAttempts >= 1 else {
            throw DockerParallelError(.invalidArgument, "maxAttempts must be at least 1, got \(maxAttempts)")
        }
        guard failureRetries >= 0 else {
            throw DockerParallelError(.invalidArgument, "failureRetries must not be negative, got \(failureRetries)")
        }
        if let timeout, !(timeout > .zero) || Duration(checkedSeconds: timeout.inSeconds) == nil {
            throw DockerParallelError(.invalidArgument, "timeout must be a positive duration of less than 10¹⁵ s, got \(timeout)")
        }
    }

    private enum CodingKeys: String, CodingKey {
        case maxAttempts, failureRetries, timeout
    }

    /// Decodes options; the timeout is a number of seconds, as stored and sent.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        maxAttempts = try container.decode(Int.self, forKey: .maxAttempts)
        failureRetries = try container.decode(Int.self, forKey: .failureRetries)
        timeout = try container.decodeIfPresent(Double.self, forKey: .timeout).map { seconds in
            guard let duration = Duration(checkedSeconds: seconds) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .timeout, in: container, debugDescription: "a timeout of \(seconds) s is out of range")
            }
            return duration
        }
    }

    /// Encodes options; the timeout as a number of seconds.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(maxAttempts, forKey: .maxAttempts)
        try container.encode(failureRetries, forKey: .failureRetries)
        try container.encodeIfPresent(timeout?.inSeconds, forKey: .timeout)
    }
}

/// A task handed to a worker under a lease.
package struct Assignment: Sendable, Codable, Equatable {
    /// The lease; the worker names it in heartbeats and its report.
    package var leaseID: LeaseID
    /// The job the task belongs to.
    package var jobID: String
    /// The task.
    package var task: TaskSpec
    /// Which attempt this is, from 1.
    package var attempt: Int
    /// Seconds the attempt may run, if limited.
    package var timeout: Double?

    /// Creates an assignment.
    package init(leaseID: LeaseID, jobID: String, task: TaskSpec, attempt: Int, timeout: Double?) {
        self.leaseID = leaseID
        self.jobID = jobID
        self.task = task
        self.attempt = attempt
        self.timeout = timeout
    }
}
