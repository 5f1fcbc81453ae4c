import DequeModule
import Foundation

/// A worker connection's identity inside the broker.
public struct WorkerID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The number the broker gave the connection.
    public var rawValue: UInt64
    /// Creates an id.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "worker-\(rawValue)" }
}

/// Counts of a job's tasks by state.
public struct JobStatus: Sendable, Codable, Equatable {
    /// The job.
    public var jobID: String
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
    public init(jobID: String) { self.jobID = jobID }

    /// Tasks with a committed result.
    public var finished: Int { succeeded + failed + cancelled }
    /// Whether every task has a result.
    public var isComplete: Bool { finished == total }
}

/// The broker's queue as a pure state machine: submit, lease, heartbeat, complete, expire, cancel.
///
/// It performs no I/O and reads no clock: callers pass the time. Every task gets exactly one
/// committed ``TaskResult``; a late report for a finished task is counted and ignored.
public struct TaskQueue: Sendable {
    /// A task's identity.
    public struct Key: Hashable, Sendable {
        /// The job.
        public var jobID: String
        /// The task's index in the job.
        public var index: Int
        /// Creates a key.
        public init(jobID: String, index: Int) {
            self.jobID = jobID
            self.index = index
        }
    }

    private enum State: Equatable {
        case queued
        case leased(UInt64)
        case done
    }

    private struct Entry {
        var spec: TaskSpec
        var state: State = .queued
        var attempts = 0
        var failures = 0
        var lastError: String?
        var lastErrorOutput = Data()
    }

    private struct Job {
        var options: JobOptions
        var status: JobStatus
        var indices: [Int] = []
        var results: [Int: TaskResult] = [:]
    }

    private struct Lease {
        var key: Key
        var worker: WorkerID
        var deadline: Double
    }

    /// Seconds a lease lasts without a heartbeat.
    public let leaseDuration: Double
    private var jobs: [String: Job] = [:]
    private var entries: [Key: Entry] = [:]
    private var ready: Deque<Key> = []
    private var leases: [UInt64: Lease] = [:]
    private var leasesByWorker: [WorkerID: Set<UInt64>] = [:]
    private var nextLeaseID: UInt64 = 1
    /// Reports that arrived for tasks already finished (duplicates ignored).
    public private(set) var ignoredReports = 0

    /// Creates an empty queue.
    /// - Parameter leaseDuration: Seconds a lease lasts without a heartbeat.
    public init(leaseDuration: Double = 30) {
        self.leaseDuration = leaseDuration
    }

    // MARK: Submit

    /// Adds tasks to a job, creating the job if needed. Tasks already known by (job, index) are skipped.
    /// - Returns: How many tasks were new and how many were duplicates.
    public mutating func submit(jobID: String, options: JobOptions, tasks: [TaskSpec]) -> (accepted: Int, duplicates: Int) {
        var job = jobs[jobID] ?? Job(options: options, status: JobStatus(jobID: jobID))
        var accepted = 0
        for task in tasks {
            let key = Key(jobID: jobID, index: task.index)
            if entries[key] != nil { continue }
            entries[key] = Entry(spec: task)
            ready.append(key)
            job.indices.append(task.index)
            job.status.total += 1
            job.status.queued += 1
            accepted += 1
        }
        jobs[jobID] = job
        return (accepted, tasks.count - accepted)
    }

    // MARK: Lease

    /// Leases up to `limit` queued tasks to a worker, oldest first.
    public mutating func lease(to worker: WorkerID, limit: Int, now: Double) -> [Assignment] {
        var assignments: [Assignment] = []
        while assignments.count < limit, let key = ready.popFirst() {
            guard var entry = entries[key], entry.state == .queued, let options = jobs[key.jobID]?.options else { continue }
            let leaseID = nextLeaseID
            nextLeaseID += 1
            entry.state = .leased(leaseID)
            entry.attempts += 1
            entries[key] = entry
            leases[leaseID] = Lease(key: key, worker: worker, deadline: now + leaseDuration)
            leasesByWorker[worker, default: []].insert(leaseID)
            jobs[key.jobID]?.status.queued -= 1
            jobs[key.jobID]?.status.running += 1
            assignments.append(Assignment(
                leaseID: leaseID, jobID: key.jobID, task: entry.spec, attempt: entry.attempts, timeout: options.timeout))
        }
        return assignments
    }

    /// Whether any task waits for a worker.
    public var hasQueuedTasks: Bool {
        jobs.values.contains { $0.status.queued > 0 }
    }

    /// Extends the leases a worker holds.
    public mutating func heartbeat(from worker: WorkerID, leaseIDs: [UInt64], now: Double) {
        for id in leaseIDs where leases[id]?.worker == worker {
            leases[id]?.deadline = now + leaseDuration
        }
    }

    // MARK: Complete

    /// Records a worker's report of an attempt.
    ///
    /// The first success commits; a failure commits when it is permanent or its retries are used
    /// up, and otherwise puts the task back. A report for a finished task is ignored.
    /// - Returns: The committed result, if this report committed one.
    public mutating func complete(
        from worker: WorkerID, leaseID: UInt64, jobID: String, index: Int, report: AttemptReport
    ) -> TaskResult? {
        let key = Key(jobID: jobID, index: index)
        if let lease = leases[leaseID], lease.worker == worker, lease.key == key {
            dropLease(leaseID)
        }
        guard var entry = entries[key], entry.state != .done, let options = jobs[jobID]?.options else {
            ignoredReports += 1
            return nil
        }
        let isCurrentLease = entry.state == .leased(leaseID)
        if report.succeeded {
            if case .leased(let other) = entry.state, other != leaseID { dropLease(other) }
            return commit(key, status: .succeeded, report: report)
        }
        guard isCurrentLease else {
            // A failure from a lease that was already given up: the task runs elsewhere.
            ignoredReports += 1
            return nil
        }
        entry.lastError = report.error
        entry.lastErrorOutput = report.errorOutput
        if report.permanent || entry.failures >= options.failureRetries {
            entries[key] = entry
            return commit(key, status: .failed, report: report)
        }
        entry.failures += 1
        entries[key] = entry
        requeue(key, atFront: false)
        return nil
    }

    /// Puts a worker's leased tasks back at the front of the queue without counting an attempt
    /// (a worker that drains on SIGTERM hands its tasks back).
    public mutating func release(from worker: WorkerID, leaseIDs: [UInt64]) {
        for id in leaseIDs {
            guard let lease = leases[id], lease.worker == worker else { continue }
            dropLease(id)
            entries[lease.key]?.attempts -= 1
            requeue(lease.key, atFront: true)
        }
    }

    /// Handles a worker that disconnected: its tasks go back to the queue, or fail when their
    /// attempts are used up.
    ///
    /// Every lease the worker held counts as an attempt, also one it had prefetched and perhaps
    /// not started: the server cannot tell them apart (a report of a finished task may still be
    /// on its way), and counting them is what makes a task that kills its worker fail in the end.
    /// - Returns: Results committed as failures.
    public mutating func workerLost(_ worker: WorkerID) -> [TaskResult] {
        let ids = leasesByWorker[worker] ?? []
        leasesByWorker[worker] = nil
        return ids.sorted().compactMap { loseLease($0, reason: "its worker disconnected") }
    }

    /// Takes back every lease whose deadline passed.
    /// - Returns: Results committed as failures.
    public mutating func expireLeases(now: Double) -> [TaskResult] {
        let expired = leases.filter { $0.value.deadline < now }.keys.sorted()
        return expired.compactMap { loseLease($0, reason: "its lease expired without a heartbeat") }
    }

    // MARK: Cancel and collect

    /// What a cancel did.
    public struct Cancellation: Sendable {
        /// The cancellation results committed.
        public var results: [TaskResult] = []
        /// Leases taken away from workers, which should stop running them.
        public var abortedLeases: [(worker: WorkerID, leaseID: UInt64)] = []
    }

    /// Cancels a job's unfinished tasks, or one task.
    public mutating func cancel(jobID: String, index: Int? = nil) -> Cancellation {
        var cancellation = Cancellation()
        guard let job = jobs[jobID] else { return cancellation }
        let indices = index.map { [$0] } ?? job.indices
        for index in indices {
            let key = Key(jobID: jobID, index: index)
            guard let entry = entries[key], entry.state != .done else { continue }
            if case .leased(let id) = entry.state, let lease = leases[id] {
                cancellation.abortedLeases.append((lease.worker, id))
                dropLease(id)
            }
            let report = AttemptReport(succeeded: false, error: "cancelled")
            if let result = commit(key, status: .cancelled, report: report) { cancellation.results.append(result) }
        }
        return cancellation
    }

    /// Puts a job's failed and cancelled tasks (or those of `indices` among them) back in the
    /// queue with fresh attempts; their results are dropped.
    /// - Returns: The indices queued again.
    public mutating func retry(jobID: String, indices: [Int]? = nil) -> [Int] {
        guard var job = jobs[jobID] else { return [] }
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
            ready.append(key)
            retried.append(index)
        }
        jobs[jobID] = job
        return retried
    }

    /// The results committed so far for a job, by index.
    public func results(jobID: String) -> [TaskResult] {
        guard let job = jobs[jobID] else { return [] }
        return job.results.values.sorted { $0.index < $1.index }
    }

    /// The counts of a job, or `nil` when the job is unknown.
    public func status(jobID: String) -> JobStatus? { jobs[jobID]?.status }

    /// The counts of every job.
    public var jobStatuses: [JobStatus] { jobs.values.map(\.status).sorted { $0.jobID < $1.jobID } }

    /// The number of leases outstanding.
    public var leaseCount: Int { leases.count }

    /// Removes a job and its results.
    public mutating func forget(jobID: String) {
        guard let job = jobs.removeValue(forKey: jobID) else { return }
        for index in job.indices {
            let key = Key(jobID: jobID, index: index)
            if case .leased(let id)? = entries[key]?.state { dropLease(id) }
            entries[key] = nil
        }
    }

    // MARK: Durability

    /// A task's attempt and failure counts, for the durable store.
    public func counters(jobID: String, index: Int) -> (attempts: Int, failures: Int)? {
        entries[Key(jobID: jobID, index: index)].map { ($0.attempts, $0.failures) }
    }

    /// Puts back a job read from the durable store: tasks with a result are finished, the others
    /// queued (a task that was leased when the server stopped runs again).
    public mutating func restore(
        jobID: String, options: JobOptions, tasks: [(spec: TaskSpec, attempts: Int, failures: Int)], results: [TaskResult]
    ) {
        var job = jobs[jobID] ?? Job(options: options, status: JobStatus(jobID: jobID))
        let finished = Dictionary(results.map { ($0.index, $0) }, uniquingKeysWith: { first, _ in first })
        for task in tasks.sorted(by: { $0.spec.index < $1.spec.index }) {
            let key = Key(jobID: jobID, index: task.spec.index)
            guard entries[key] == nil else { continue }
            var entry = Entry(spec: task.spec)
            entry.attempts = task.attempts
            entry.failures = task.failures
            job.indices.append(task.spec.index)
            job.status.total += 1
            if let result = finished[task.spec.index] {
                entry.state = .done
                entry.spec = TaskSpec(index: task.spec.index, kind: task.spec.kind)
                job.results[task.spec.index] = result
                switch result.status {
                case .succeeded: job.status.succeeded += 1
                case .failed: job.status.failed += 1
                case .cancelled: job.status.cancelled += 1
                }
            } else {
                ready.append(key)
                job.status.queued += 1
            }
            entries[key] = entry
        }
        jobs[jobID] = job
    }

    // MARK: Internals

    private mutating func dropLease(_ id: UInt64) {
        guard let lease = leases.removeValue(forKey: id) else { return }
        leasesByWorker[lease.worker]?.remove(id)
    }

    private mutating func requeue(_ key: Key, atFront: Bool) {
        guard var entry = entries[key] else { return }
        entry.state = .queued
        entries[key] = entry
        jobs[key.jobID]?.status.running -= 1
        jobs[key.jobID]?.status.queued += 1
        if atFront { ready.prepend(key) } else { ready.append(key) }
    }

    private mutating func loseLease(_ id: UInt64, reason: String) -> TaskResult? {
        guard let lease = leases[id] else { return nil }
        dropLease(id)
        guard let entry = entries[lease.key], entry.state == .leased(id),
              let options = jobs[lease.key.jobID]?.options else { return nil }
        if entry.attempts >= options.maxAttempts {
            let message = "task lost after \(entry.attempts) attempt(s): \(reason)"
            return commit(lease.key, status: .failed, report: AttemptReport(
                succeeded: false, errorOutput: entry.lastErrorOutput, error: message))
        }
        requeue(lease.key, atFront: true)
        return nil
    }

    private mutating func commit(_ key: Key, status: TaskStatus, report: AttemptReport) -> TaskResult? {
        guard var entry = entries[key], entry.state != .done, var job = jobs[key.jobID] else { return nil }
        switch entry.state {
        case .queued: job.status.queued -= 1
        case .leased: job.status.running -= 1
        case .done: break
        }
        switch status {
        case .succeeded: job.status.succeeded += 1
        case .failed: job.status.failed += 1
        case .cancelled: job.status.cancelled += 1
        }
        entry.state = .done
        let result = TaskResult(
            jobID: key.jobID, index: key.index, status: status, attempts: entry.attempts,
            exitCode: report.exitCode, output: report.output, errorOutput: report.errorOutput, error: report.error)
        job.results[key.index] = result
        if status == .succeeded {
            entry.spec = TaskSpec(index: key.index, kind: entry.spec.kind)  // the input is no longer needed
        }
        entries[key] = entry
        jobs[key.jobID] = job
        return result
    }
}
