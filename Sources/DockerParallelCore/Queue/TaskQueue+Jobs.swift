import DequeModule
import Foundation

extension TaskQueue {
    // MARK: Cancel and collect

    /// What a cancel did.
    package struct Cancellation: Sendable {
        /// The cancellation results committed.
        package var results: [TaskResult] = []
        /// Leases taken away from workers, which should stop running them.
        package var abortedLeases: [(worker: WorkerID, leaseID: LeaseID)] = []
    }

    /// Cancels a job's unfinished tasks, or one task.
    package mutating func cancel(jobID: String, index: Int? = nil, now: Double = 0) -> Cancellation {
        var cancellation = Cancellation()
        guard let job = jobs[jobID] else { return cancellation }
        let indices = index.map { [$0] } ?? job.indices
        for index in indices {
            let key = Key(jobID: jobID, index: index)
            guard let entry = entries[key], entry.state != .done else { continue }
            if case .leased(let id) = entry.state, let lease = leases[id] {
                cancellation.abortedLeases.append((lease.worker, id))
                log(lease, leaseID: id, outcome: .cancelled, ended: now)
                dropLease(id)
            }
            let report = AttemptReport(succeeded: false, error: "cancelled")
            if let result = commit(key, status: .cancelled, report: report) { cancellation.results.append(result) }
        }
        return cancellation
    }

    /// Starts no more of a job's tasks (GNU parallel's `--halt soon`): queued ones are cancelled,
    /// leased ones are left to their workers, which hand back those they have not started
    /// (cancelled then, see ``release(from:leaseIDs:now:)``).
    /// - Returns: The cancellations, and the leases whose workers are asked to hand them back.
    package mutating func stopStarting(jobID: String, now: Double = 0) -> Cancellation {
        guard let job = jobs[jobID] else { return Cancellation() }
        stoppedJobs.insert(jobID)
        var stopping = Cancellation()
        for index in job.indices {
            switch entries[Key(jobID: jobID, index: index)]?.state {
            case .queued?:
                stopping.results += cancel(jobID: jobID, index: index, now: now).results
            case .leased(let id)?:
                if let lease = leases[id] { stopping.abortedLeases.append((lease.worker, id)) }
            default:
                break
            }
        }
        return stopping
    }

    /// Puts a job's failed and cancelled tasks (or those of `indices` among them) back in the
    /// queue with fresh attempts; their results are dropped.
    /// - Returns: The indices queued again.
    package mutating func retry(jobID: String, indices: [Int]? = nil) -> [Int] {
        guard var job = jobs.removeValue(forKey: jobID) else { return [] }
        // A job queued again starts tasks again.
        stoppedJobs.remove(jobID)
        var retried: [Int] = []
        for index in indices ?? job.indices {
            let key = Key(jobID: jobID, index: index)
            guard var entry = entries[key], entry.state == .done, let result = job.results[index],
                  result.status != .succeeded else { continue }
            switch result.status {
            case .failed: job.status.failed -= 1
            case .cancelled: job.status.cancelled -= 1
            case .succeeded: break
            }
            job.results[index] = nil
            job.status.queued += 1
            entry.state = .queued
            entry.attempts = 0
            entry.failures = 0
            entries[key] = entry
            if payloads[key] == nil { spilled.append(key) } else { ready.append(key) }
            retried.append(index)
        }
        jobs[jobID] = job
        return retried
    }

    /// The results committed so far for a job, by index.
    package func results(jobID: String) -> [TaskResult] {
        guard let job = jobs[jobID] else { return [] }
        return job.results.values.sorted { $0.index < $1.index }
    }

    /// The counts of a job, or `nil` when the job is unknown.
    package func status(jobID: String) -> JobStatus? { jobs[jobID]?.status }

    /// The counts of every job.
    package var jobStatuses: [JobStatus] { jobs.values.map(\.status).sorted { $0.jobID.rawValue < $1.jobID.rawValue } }

    /// The number of leases outstanding.
    package var leaseCount: Int { leases.count }

    /// Removes a job and its results.
    package mutating func forget(jobID: String) {
        stoppedJobs.remove(jobID)
        guard let job = jobs.removeValue(forKey: jobID) else { return }
        for index in job.indices {
            let key = Key(jobID: jobID, index: index)
            if case .leased(let id)? = entries[key]?.state { dropLease(id) }
            entries[key] = nil
            payloads[key] = nil
            lastFailures[key] = nil
        }
    }
}
