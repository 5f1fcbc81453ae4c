import DequeModule
import Foundation

/// A worker connection's identity inside the broker.
package struct WorkerID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The number the broker gave the connection.
    package var rawValue: UInt64
    /// Creates an id.
    package init(_ rawValue: UInt64) { self.rawValue = rawValue }
    package var description: String { "worker-\(rawValue)" }
}

/// The broker's queue as a pure state machine: submit, lease, heartbeat, complete, expire, cancel.
///
/// It performs no I/O and reads no clock: callers pass the time. Every task gets exactly one
/// committed ``TaskResult``; a late report for a finished task is logged as an attempt and
/// otherwise ignored.
///
/// With a `residentLimit`, at most about that many queued tasks keep their payload (kind and
/// input) in memory; the others are *spilled*: the caller keeps their payloads in its durable
/// store, loads them when ``spilledKeysToLoad(limit:)`` asks, and hands them back with
/// ``load(_:)``. A million queued tasks then cost their counters, not their inputs.
package struct TaskQueue: Sendable {
    /// A task's identity.
    ///
    /// The job id's hash is computed once, when the key is made: a task's key is looked up in
    /// several tables, and hashing the id each time cost a tenth of the server's time.
    package struct Key: Hashable, Sendable {
        /// The job.
        package let jobID: String
        /// The task's index in the job.
        package let index: Int
        let jobHash: Int

        /// Creates a key.
        package init(jobID: String, index: Int) {
            self.jobID = jobID
            self.index = index
            self.jobHash = jobID.hashValue
        }

        package static func == (left: Key, right: Key) -> Bool {
            left.index == right.index && left.jobHash == right.jobHash && left.jobID == right.jobID
        }

        package func hash(into hasher: inout Hasher) {
            hasher.combine(jobHash)
            hasher.combine(index)
        }
    }

    enum State: Equatable {
        case queued
        case leased(LeaseID)
        case done
    }

    /// A task's state, kept small: a million queued tasks cost a million of these.
    struct Entry {
        /// 0 while queued, `UInt64.max` once done, else the lease id.
        var raw: UInt64 = 0
        var attemptCount: Int32 = 0
        var failureCount: Int32 = 0
        /// When the task last became ready for a worker (seconds on the caller's clock), or
        /// negative when unknown (a task restored from the store).
        var queuedAt: Double = -1

        var state: State {
            get { raw == 0 ? .queued : raw == .max ? .done : .leased(LeaseID(raw)) }
            set {
                switch newValue {
                case .queued: raw = 0
                case .done: raw = .max
                case .leased(let id): raw = id.rawValue
                }
            }
        }
        var attempts: Int {
            get { Int(attemptCount) }
            set { attemptCount = Int32(clamping: newValue) }
        }
        var failures: Int {
            get { Int(failureCount) }
            set { failureCount = Int32(clamping: newValue) }
        }
    }

    struct Job {
        var options: JobOptions
        var status: JobStatus
        var indices: [Int] = []
        var results: [Int: TaskResult] = [:]
    }

    struct Lease {
        var key: Key
        var worker: WorkerID
        var workerName: String
        var attempt: Int
        var started: Double
        var deadline: Double
    }

    /// Seconds a lease lasts without a heartbeat.
    package let leaseDuration: Double
    var jobs: [String: Job] = [:]
    /// Jobs that start no more tasks (``stopStarting(jobID:now:)``): a task handed back is
    /// cancelled instead of queued again.
    var stoppedJobs: Set<String> = []
    var entries: [Key: Entry] = [:]
    /// Payloads in memory: of queued tasks in `ready`, leased tasks, and (without a store)
    /// failed ones, which may be retried.
    var payloads: [Key: TaskSpec] = [:]
    /// The last failure of tasks that failed and were put back.
    var lastFailures: [Key: (error: String?, output: Data)] = [:]
    /// Queued tasks whose payload is in memory, in dispatch order.
    var ready: Deque<Key> = []
    /// Queued tasks whose payload is only in the store, in dispatch order, after `ready`.
    var spilled: Deque<Key> = []
    /// Spilled tasks whose payloads are being loaded.
    var loading = 0
    /// Queued tasks that keep their payload in memory before new ones are spilled; `nil` for all.
    package let residentLimit: Int?
    /// Attempts started or ended since the last ``takeAttemptLog()``.
    var attemptLog: [AttemptRecord] = []
    var leases: [LeaseID: Lease] = [:]
    var leasesByWorker: [WorkerID: Set<LeaseID>] = [:]
    var nextLeaseID: UInt64 = 1
    /// Reports that arrived for tasks already finished (duplicates ignored).
    package private(set) var ignoredReports = 0
    /// Seconds each task leased since the last ``takeDispatchWaits()`` waited for its worker,
    /// from when it became ready (submitted, retried or handed back).
    var dispatchWaits: [Double] = []

    /// Creates an empty queue.
    /// - Parameters:
    ///   - leaseDuration: Seconds a lease lasts without a heartbeat.
    ///   - residentLimit: Queued tasks whose payload stays in memory; more are spilled to the
    ///     caller's store (`nil`, the default, keeps every payload in memory).
    package init(leaseDuration: Double = 30, residentLimit: Int? = nil) {
        self.leaseDuration = leaseDuration
        self.residentLimit = residentLimit.map { max($0, 1) }
    }

    // MARK: Submit

    /// Adds tasks to a job, creating the job if needed. Tasks already known by (job, index) are skipped.
    /// - Returns: How many tasks were new and how many were duplicates.
    /// - Parameter now: The time on the caller's clock, from which the tasks' waits for a worker
    ///   are measured (`nil`: not measured).
    package mutating func submit(
        jobID: String, options: JobOptions, tasks: [TaskSpec], now: Double? = nil
    ) -> (accepted: Int, duplicates: Int) {
        // Taken out while it changes, so that its arrays are not copied (written back below).
        var job = jobs.removeValue(forKey: jobID) ?? Job(options: options, status: JobStatus(jobID: JobID(jobID)))
        var accepted = 0
        for task in tasks {
            let key = Key(jobID: jobID, index: task.index)
            if entries[key] != nil { continue }
            let entry = Entry(queuedAt: now ?? -1)
            if let residentLimit, !spilled.isEmpty || loading > 0 || ready.count >= residentLimit {
                entries[key] = entry
                spilled.append(key)
            } else {
                entries[key] = entry
                payloads[key] = task
                ready.append(key)
            }
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
    /// - Parameter name: The worker's name, for the attempt log.
    package mutating func lease(to worker: WorkerID, name: String? = nil, limit: Int, now: Double) -> [Assignment] {
        var assignments: [Assignment] = []
        while assignments.count < limit, let key = ready.popFirst() {
            guard var entry = entries[key], entry.state == .queued, let spec = payloads[key],
                  let options = jobs[key.jobID]?.options else { continue }
            let leaseID = LeaseID(nextLeaseID)
            nextLeaseID += 1
            entry.state = .leased(leaseID)
            entry.attempts += 1
            entries[key] = entry
            if entry.queuedAt >= 0 { dispatchWaits.append(max(now - entry.queuedAt, 0)) }
            let lease = Lease(
                key: key, worker: worker, workerName: name ?? worker.description, attempt: entry.attempts,
                started: now, deadline: now + leaseDuration)
            leases[leaseID] = lease
            log(lease, leaseID: leaseID, outcome: .running)
            leasesByWorker[worker, default: []].insert(leaseID)
            jobs[key.jobID]?.status.queued -= 1
            jobs[key.jobID]?.status.running += 1
            assignments.append(Assignment(
                leaseID: leaseID, jobID: key.jobID, task: spec, attempt: entry.attempts, timeout: options.timeout?.inSeconds))
        }
        return assignments
    }

    /// Whether any task waits for a worker with its payload in memory.
    package var hasQueuedTasks: Bool {
        !ready.isEmpty && jobs.values.contains { $0.status.queued > 0 }
    }

    // MARK: Spilled payloads

    /// Spilled tasks whose payloads the caller should load from its store now, oldest first, or
    /// nothing when enough payloads are in memory or a load is under way. Call
    /// ``load(_:)`` with what was found.
    package mutating func spilledKeysToLoad(limit: Int) -> [Key] {
        guard loading == 0, !spilled.isEmpty else { return [] }
        let lowWater = max((residentLimit ?? 0) / 2, 1)
        guard ready.count < lowWater else { return [] }
        var keys: [Key] = []
        while keys.count < limit, let key = spilled.popFirst() {
            guard entries[key]?.state == .queued, payloads[key] == nil else { continue }
            keys.append(key)
        }
        loading = keys.count
        return keys
    }

    /// Gives loaded payloads to spilled tasks, which become ready. A task whose payload was not
    /// found (its submit is not stored yet) goes back to the front of the spilled tasks.
    package mutating func load(_ loaded: [(key: Key, spec: TaskSpec?)]) {
        loading = 0
        var missing: [Key] = []
        for (key, spec) in loaded {
            guard entries[key]?.state == .queued, payloads[key] == nil else { continue }
            guard let spec else {
                missing.append(key)
                continue
            }
            payloads[key] = spec
            ready.append(key)
        }
        for key in missing.reversed() { spilled.prepend(key) }
    }

    /// Queued tasks whose payload is only in the store.
    package var spilledCount: Int { spilled.count + loading }

    /// Whether a lease is still held (not ended, expired or taken back).
    package func isLeased(_ id: LeaseID) -> Bool { leases[id] != nil }

    // MARK: Attempt log

    /// How long each task leased since the last call waited for its worker, in seconds.
    package mutating func takeDispatchWaits() -> [Double] {
        guard !dispatchWaits.isEmpty else { return [] }
        defer { dispatchWaits = [] }
        return dispatchWaits
    }

    /// The attempts started or ended since the last call, in order, with times in the clock the
    /// caller passes as `now`.
    package mutating func takeAttemptLog() -> [AttemptRecord] {
        defer { attemptLog = [] }
        return attemptLog
    }

    /// Extends the leases a worker holds.
    package mutating func heartbeat(from worker: WorkerID, leaseIDs: [LeaseID], now: Double) {
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
    package mutating func complete(
        from worker: WorkerID, leaseID: LeaseID, jobID: String, index: Int, report: AttemptReport, now: Double = 0
    ) -> TaskResult? {
        let key = Key(jobID: jobID, index: index)
        var heldLease: Lease?
        if let lease = leases[leaseID], lease.worker == worker, lease.key == key {
            heldLease = lease
            dropLease(leaseID)
        }
        let logEnd = { (queue: inout TaskQueue, outcome: AttemptOutcome, error: String?) in
            if let heldLease {
                queue.log(heldLease, leaseID: leaseID, outcome: outcome, ended: now, error: error)
            } else {
                queue.attemptLog.append(AttemptRecord(
                    jobID: JobID(jobID), index: index, attempt: 0, leaseID: nil, worker: worker.description, started: now,
                    ended: now, outcome: outcome, error: error))
            }
        }
        guard var entry = entries[key], entry.state != .done, let options = jobs[jobID]?.options else {
            ignoredReports += 1
            if entries[key] != nil { logEnd(&self, .late, "the task already had its result") }
            return nil
        }
        let isCurrentLease = entry.state == .leased(leaseID)
        if report.succeeded {
            if case .leased(let other) = entry.state, other != leaseID {
                if let lease = leases[other] {
                    log(lease, leaseID: other, outcome: .lost, ended: now, error: "another attempt succeeded first")
                }
                dropLease(other)
            }
            // A success commits even after its lease was taken back (the result is as good).
            logEnd(&self, .succeeded, nil)
            return commit(key, status: .succeeded, report: report)
        }
        guard isCurrentLease else {
            // A failure from a lease that was already given up: the task runs elsewhere.
            ignoredReports += 1
            logEnd(&self, .late, report.error)
            return nil
        }
        logEnd(&self, .failed, report.error)
        lastFailures[key] = (report.error, report.errorOutput)
        if report.permanent || entry.failures >= options.failureRetries {
            entries[key] = entry
            return commit(key, status: .failed, report: report)
        }
        entry.failures += 1
        entries[key] = entry
        requeue(key, atFront: false, now: now)
        return nil
    }

    /// Puts a worker's leased tasks back at the front of the queue without counting an attempt
    /// (a worker that drains on SIGTERM hands its tasks back).
    /// - Returns: Cancellations committed: tasks of a job that starts no more are cancelled
    ///   instead of queued again.
    @discardableResult
    package mutating func release(from worker: WorkerID, leaseIDs: [LeaseID], now: Double = 0) -> [TaskResult] {
        var cancelled: [TaskResult] = []
        for id in leaseIDs {
            guard let lease = leases[id], lease.worker == worker else { continue }
            log(lease, leaseID: id, outcome: .released, ended: now)
            dropLease(id)
            entries[lease.key]?.attempts -= 1
            requeue(lease.key, atFront: true, now: now)
            if stoppedJobs.contains(lease.key.jobID) {
                cancelled += cancel(jobID: lease.key.jobID, index: lease.key.index, now: now).results
            }
        }
        return cancelled
    }

    /// Handles a worker that disconnected: its tasks go back to the queue, or fail when their
    /// attempts are used up.
    ///
    /// Every lease the worker held counts as an attempt, also one it had prefetched and perhaps
    /// not started: the server cannot tell them apart (a report of a finished task may still be
    /// on its way), and counting them is what makes a task that kills its worker fail in the end.
    /// - Returns: Results committed as failures.
    package mutating func workerLost(_ worker: WorkerID, now: Double = 0) -> [TaskResult] {
        let ids = leasesByWorker[worker] ?? []
        leasesByWorker[worker] = nil
        return ids.sorted().compactMap { loseLease($0, reason: "its worker disconnected", now: now) }
    }

    /// Takes back every lease whose deadline passed.
    /// - Returns: Results committed as failures.
    package mutating func expireLeases(now: Double) -> [TaskResult] {
        let expired = leases.filter { $0.value.deadline < now }.keys.sorted()
        return expired.compactMap { loseLease($0, reason: "its lease expired without a heartbeat", now: now) }
    }

    // MARK: Internals

    mutating func dropLease(_ id: LeaseID) {
        guard let lease = leases.removeValue(forKey: id) else { return }
        leasesByWorker[lease.worker]?.remove(id)
    }

    mutating func requeue(_ key: Key, atFront: Bool, now: Double) {
        guard var entry = entries[key] else { return }
        entry.state = .queued
        entry.queuedAt = now
        entries[key] = entry
        jobs[key.jobID]?.status.running -= 1
        jobs[key.jobID]?.status.queued += 1
        if atFront { ready.prepend(key) } else { ready.append(key) }
    }

    mutating func log(
        _ lease: Lease, leaseID: LeaseID, outcome: AttemptOutcome, ended: Double? = nil, error: String? = nil
    ) {
        attemptLog.append(AttemptRecord(
            jobID: JobID(lease.key.jobID), index: lease.key.index, attempt: lease.attempt, leaseID: leaseID,
            worker: lease.workerName, started: lease.started, ended: ended, outcome: outcome, error: error))
    }

    mutating func loseLease(_ id: LeaseID, reason: String, now: Double) -> TaskResult? {
        guard let lease = leases[id] else { return nil }
        log(lease, leaseID: id, outcome: .lost, ended: now, error: reason)
        dropLease(id)
        guard let entry = entries[lease.key], entry.state == .leased(id),
              let options = jobs[lease.key.jobID]?.options else { return nil }
        if entry.attempts >= options.maxAttempts {
            let message = "task lost after \(entry.attempts) attempt(s): \(reason)"
            return commit(lease.key, status: .failed, report: AttemptReport(
                succeeded: false, errorOutput: lastFailures[lease.key]?.output ?? Data(), error: message))
        }
        requeue(lease.key, atFront: true, now: now)
        return nil
    }

    mutating func commit(_ key: Key, status: TaskStatus, report: AttemptReport) -> TaskResult? {
        guard var entry = entries[key], entry.state != .done, var job = jobs.removeValue(forKey: key.jobID) else { return nil }
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
            jobID: JobID(key.jobID), index: key.index, status: status, attempts: entry.attempts,
            exitCode: report.exitCode, output: report.output, errorOutput: report.errorOutput, error: report.error)
        job.results[key.index] = result
        // The payload is no longer needed in memory; with a store it can be loaded again for a retry.
        if status == .succeeded || residentLimit != nil { payloads[key] = nil }
        lastFailures[key] = nil
        entries[key] = entry
        jobs[key.jobID] = job
        return result
    }
}
