import DequeModule
import Foundation

extension TaskQueue {
    // MARK: Durability

    /// A task's attempt and failure counts, for the durable store.
    package func counters(jobID: String, index: Int) -> (attempts: Int, failures: Int)? {
        entries[Key(jobID: jobID, index: index)].map { ($0.attempts, $0.failures) }
    }

    /// Puts back a job read from the durable store: tasks with a result are finished, the others
    /// queued (a task that was leased when the server stopped runs again). Their payloads stay in
    /// the store until ``spilledKeysToLoad(limit:)`` asks for them.
    package mutating func restore(
        jobID: String, options: JobOptions, tasks: [(index: Int, attempts: Int, failures: Int)], results: [TaskResult]
    ) {
        var job = jobs.removeValue(forKey: jobID) ?? Job(options: options, status: JobStatus(jobID: JobID(jobID)))
        let finished = Dictionary(results.map { ($0.index, $0) }, uniquingKeysWith: { first, _ in first })
        for task in tasks.sorted(by: { $0.index < $1.index }) {
            let key = Key(jobID: jobID, index: task.index)
            guard entries[key] == nil else { continue }
            var entry = Entry()
            entry.attempts = task.attempts
            entry.failures = task.failures
            job.indices.append(task.index)
            job.status.total += 1
            if let result = finished[task.index] {
                entry.state = .done
                job.results[task.index] = result
                switch result.status {
                case .succeeded: job.status.succeeded += 1
                case .failed: job.status.failed += 1
                case .cancelled: job.status.cancelled += 1
                }
            } else {
                spilled.append(key)
                job.status.queued += 1
            }
            entries[key] = entry
        }
        jobs[jobID] = job
    }

    /// Continues lease numbering after the leases a store already knows, so that attempt-log
    /// entries stay unique across restarts.
    package mutating func resumeLeaseNumbering(after leaseID: UInt64) {
        nextLeaseID = max(nextLeaseID, leaseID + 1)
    }
}
