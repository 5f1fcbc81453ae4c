/// Counts of a job's tasks by state.
public struct JobStatus: Sendable, Codable, Equatable {
    /// The job.
    public var jobID: JobID
    /// Tasks submitted.
    public var total: Int = 0
    /// Tasks waiting for a worker.
    public var queued: Int = 0
    /// Tasks under a lease.
    public var running: Int = 0
    /// Tasks that succeeded.
    public var succeeded: Int = 0
    /// Tasks that failed.
    public var failed: Int = 0
    /// Tasks that were cancelled.
    public var cancelled: Int = 0

    /// Creates empty counts.
    public init(jobID: JobID) { self.jobID = jobID }

    /// Tasks with a committed result.
    public var finished: Int { succeeded + failed + cancelled }
    /// Whether every task has a result.
    public var isComplete: Bool { finished == total }
}
