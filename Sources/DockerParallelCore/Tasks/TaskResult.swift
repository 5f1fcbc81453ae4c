import Foundation

/// What a worker reports after running one attempt.
package struct AttemptReport: Sendable, Codable, Equatable {
    /// Whether the attempt succeeded.
    package var succeeded: Bool
    /// Whether retrying cannot help (unknown task, command not found, undecodable input).
    package var permanent: Bool
    /// The command's exit code, if a command ran to its end.
    package var exitCode: Int32?
    /// The command's standard output, or the Swift task's encoded output.
    package var output: Data
    /// The command's standard error.
    package var errorOutput: Data
    /// Why the attempt failed, if it did.
    package var error: String?

    /// Creates a report.
    package init(
        succeeded: Bool, permanent: Bool = false, exitCode: Int32? = nil, output: Data = Data(),
        errorOutput: Data = Data(), error: String? = nil
    ) {
        self.succeeded = succeeded
        self.permanent = permanent
        self.exitCode = exitCode
        self.output = output
        self.errorOutput = errorOutput
        self.error = error
    }
}

/// A worker's report of one attempt under its lease.
package struct Completion: Sendable, Codable, Equatable {
    /// The lease the attempt ran under.
    package var leaseID: LeaseID
    /// The job.
    package var jobID: String
    /// The task's index in the job.
    package var index: Int
    /// How the attempt went.
    package var report: AttemptReport

    /// Creates a completion.
    package init(leaseID: LeaseID, jobID: String, index: Int, report: AttemptReport) {
        self.leaseID = leaseID
        self.jobID = jobID
        self.index = index
        self.report = report
    }
}

/// The final state of a task.
public enum TaskStatus: String, Sendable, Codable {
    case succeeded
    case failed
    case cancelled
}

/// A task's committed result: exactly one per task.
public struct TaskResult: Sendable, Codable, Equatable {
    /// The job.
    public var jobID: JobID
    /// The task's index in the job.
    public var index: Int
    /// How it ended.
    public var status: TaskStatus
    /// How many attempts were started.
    public var attempts: Int
    /// The exit code of a command that ran to its end.
    public var exitCode: Int32?
    /// Standard output, or a Swift task's encoded output.
    public var output: Data
    /// Standard error.
    public var errorOutput: Data
    /// Why it failed or was cancelled.
    public var error: String?

    /// Creates a result.
    public init(
        jobID: JobID, index: Int, status: TaskStatus, attempts: Int, exitCode: Int32? = nil,
        output: Data = Data(), errorOutput: Data = Data(), error: String? = nil
    ) {
        self.jobID = jobID
        self.index = index
        self.status = status
        self.attempts = attempts
        self.exitCode = exitCode
        self.output = output
        self.errorOutput = errorOutput
        self.error = error
    }

    /// The last lines of standard error, for error messages.
    public func lastErrorLines(_ count: Int = 5) -> String {
        let text = String(decoding: errorOutput, as: UTF8.self)
        return text.split(separator: "\n", omittingEmptySubsequences: true).suffix(count).joined(separator: "\n")
    }
}

/// How one attempt at a task ended, as the broker's attempt log records it.
public enum AttemptOutcome: String, Sendable, Codable {
    /// The attempt is still under its lease.
    case running
    /// It succeeded and its result was committed.
    case succeeded
    /// The task failed (non-zero exit, thrown error, timeout).
    case failed
    /// Its worker disconnected or its lease expired without a heartbeat.
    case lost
    /// Its worker handed it back unstarted (draining on SIGTERM); it does not count.
    case released
    /// The job or task was cancelled while it ran.
    case cancelled
    /// A report that came after the task already had its result, or after its lease was taken
    /// back: recorded, never committed as a second result.
    case late
}

/// One attempt at a task: who ran it, when, and how it ended.
public struct AttemptRecord: Sendable, Codable, Equatable {
    /// The job.
    public var jobID: JobID
    /// The task's index in the job.
    public var index: Int
    /// The attempt's number, from 1 (0 for a late report whose lease was already gone).
    public var attempt: Int
    /// The lease it ran under, if it still had one.
    public var leaseID: LeaseID?
    /// The worker that ran it.
    public var worker: String
    /// When it was leased, in seconds since 1970.
    public var started: Double
    /// When it ended, if it did.
    public var ended: Double?
    /// How it ended.
    public var outcome: AttemptOutcome
    /// Why it failed or was lost.
    public var error: String?

    /// Creates a record.
    public init(
        jobID: JobID, index: Int, attempt: Int, leaseID: LeaseID?, worker: String, started: Double,
        ended: Double? = nil, outcome: AttemptOutcome, error: String? = nil
    ) {
        self.jobID = jobID
        self.index = index
        self.attempt = attempt
        self.leaseID = leaseID
        self.worker = worker
        self.started = started
        self.ended = ended
        self.outcome = outcome
        self.error = error
    }
}
