import DockerParallelCore

/// A change to the broker's state that must survive a restart.
enum StoreChange: Sendable {
    /// Tasks were submitted (storing them again is a no-op).
    case submit(jobID: String, options: JobOptions, tasks: [TaskSpec])
    /// A task's attempt and failure counts changed.
    case counters(jobID: String, index: Int, attempts: Int, failures: Int)
    /// A task's one result was committed.
    case result(TaskResult)
    /// A job and its results were removed.
    case forget(jobID: String)
    /// These tasks were queued again: their results are gone and their counts start afresh.
    case retry(jobID: String, indices: [Int])
    /// An attempt started, or ended (the same lease's entry is updated).
    case attempt(AttemptRecord)
}

/// A job as read back from the store.
struct StoredJob: Sendable {
    var jobID: String
    var options: JobOptions
    var tasks: [(index: Int, attempts: Int, failures: Int)]
    var results: [TaskResult]
}

/// Where the broker keeps what must survive a restart.
///
/// `write` returns only once its changes are durable; the broker acknowledges submits and shows
/// results only after that.
protocol BrokerStore: Sendable {
    /// Reads every job back, without the tasks' payloads. Attempts that were running when the
    /// server stopped are marked lost.
    func load() throws -> [StoredJob]
    /// The highest lease id in the attempt log (0 when it is empty).
    func lastLeaseID() throws -> UInt64
    /// The payloads of these tasks (`nil` for one that is not stored).
    func payloads(_ keys: [TaskQueue.Key]) throws -> [(key: TaskQueue.Key, spec: TaskSpec?)]
    /// A job's attempt log, or one task's, oldest first.
    func attempts(jobID: String, index: Int?) throws -> [AttemptRecord]
    /// Makes the changes durable, in order, atomically.
    func write(_ changes: [StoreChange]) throws
}
