import DockerParallelCore

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
    /// A job's tasks as submitted, by index.
    func tasks(jobID: String) throws -> [TaskSpec]
    /// Makes the changes durable, in order, atomically.
    func write(_ changes: [StoreChange]) throws
    /// Whether `write` failed because the disk is full: nothing was written, and the same write
    /// may succeed once there is space.
    func isFull(_ error: any Error) -> Bool
}
