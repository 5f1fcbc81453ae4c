/// A change to the broker's state that must survive a restart.
package enum StoreChange: Sendable, Equatable {
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

    /// Whether the change only records that a lease started (a running attempt, a task's counts),
    /// so that it may wait a moment: a short task's end usually makes it redundant. A crash
    /// loses such an attempt from the log and from the task's count alike (the committer writes
    /// a task's waiting changes together with its next lasting one); lease ids never repeat.
    package var mayWait: Bool {
        switch self {
        case .counters: true
        case .attempt(let record): record.outcome == .running
        case .submit, .result, .forget, .retry: false
        }
    }

    /// The task the change is about, if it is about one task.
    package var taskKey: TaskQueue.Key? {
        switch self {
        case .counters(let jobID, let index, _, _): TaskQueue.Key(jobID: jobID, index: index)
        case .attempt(let record): TaskQueue.Key(jobID: record.jobID.rawValue, index: record.index)
        case .result(let result): TaskQueue.Key(jobID: result.jobID.rawValue, index: result.index)
        case .submit, .forget, .retry: nil
        }
    }

    /// Whether the change removes or resets stored rows, so that everything before it must be
    /// written first.
    package var isBarrier: Bool {
        switch self {
        case .forget, .retry: true
        case .submit, .counters, .result, .attempt: false
        }
    }

    /// The positions of the changes that a later change does not make redundant: an attempt's
    /// later entry replaces its earlier ones, and a task's later counts or its result replace
    /// its earlier counts. Barriers keep everything before them.
    package static func needed(_ changes: [StoreChange]) -> [Int] {
        var laterAttempt: Set<LeaseID> = []
        var laterCounts: Set<TaskQueue.Key> = []
        var kept: [Int] = []
        kept.reserveCapacity(changes.count)
        for position in changes.indices.reversed() {
            switch changes[position] {
            case .attempt(let record):
                if let lease = record.leaseID, !laterAttempt.insert(lease).inserted { continue }
            case .counters(let jobID, let index, _, _):
                if !laterCounts.insert(TaskQueue.Key(jobID: jobID, index: index)).inserted { continue }
            case .result(let result):
                laterCounts.insert(TaskQueue.Key(jobID: result.jobID.rawValue, index: result.index))
            case .forget, .retry:
                laterAttempt.removeAll()
                laterCounts.removeAll()
            case .submit:
                break
            }
            kept.append(position)
        }
        return kept.reversed()
    }
}
