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
}

/// A job as read back from the store.
struct StoredJob: Sendable {
    var jobID: String
    var options: JobOptions
    var tasks: [(spec: TaskSpec, attempts: Int, failures: Int)]
    var results: [TaskResult]
}

/// Where the broker keeps what must survive a restart.
///
/// `write` returns only once its changes are durable; the broker acknowledges submits and shows
/// results only after that.
protocol BrokerStore: Sendable {
    /// Reads every job back.
    func load() throws -> [StoredJob]
    /// Makes the changes durable, in order, atomically.
    func write(_ changes: [StoreChange]) throws
}
