import Foundation

extension BrokerStateMachine {
    /// Handles one message from an authenticated peer.
    mutating func handle(
        _ message: ClientMessage, requestID: UInt32, from id: PeerID, role: PeerRole, now: Duration
    ) -> BrokerActions {
        // Replies are written in order with results, after what they depend on is durable.
        let reply = { (message: ServerMessage) in BrokerActions(durable: [Output(peer: id, requestID: requestID, message: message)]) }
        let noJob = { (jobID: String) in
            reply(.error(code: .invalidArgument, message: "there is no job '\(jobID)' on this server"))
        }
        switch message {
        case .hello:
            return reply(.error(code: .protocolViolation, message: "hello was already sent on this connection"))

        case .submit(let jobID, let options, let tasks):
            // A job's later batches, or a submit sent again, are no new job.
            let known = queue.status(jobID: jobID) != nil
            if let refusal = Self.refusal(jobID: jobID, options: options) ?? (known ? nil : storageRefusal) {
                return reply(refusal)
            }
            let outcome = queue.submit(jobID: jobID, options: options, tasks: tasks, now: now.inSeconds)
            var actions = reply(.submitted(accepted: outcome.accepted, duplicates: outcome.duplicates))
            actions.changes.append(.submit(jobID: jobID, options: options, tasks: tasks))
            return actions + dispatch(now: now)

        case .run(let jobID, let options, let tasks):
            // A run sent again after a lost connection may find its job accepted already.
            let known = queue.status(jobID: jobID) != nil
            if let refusal = Self.refusal(jobID: jobID, options: options) ?? (known ? nil : storageRefusal) {
                return reply(refusal)
            }
            _ = queue.submit(jobID: jobID, options: options, tasks: tasks, now: now.inSeconds)
            recordRun(jobID, by: id)
            var actions = BrokerActions(changes: [.submit(jobID: jobID, options: options, tasks: tasks)])
            // A run sent again after a lost connection may find results already; a new one
            // hears nothing until its first results, which come with the job's status.
            actions += watch(jobID: jobID, peer: id, requestID: requestID, quietUntilResults: true)
            return actions + forgetFinishedRun(jobID) + dispatch(now: now)

        case .credit(let count):
            guard role == .worker else { return reply(.error(code: .protocolViolation, message: "only workers take tasks")) }
            addCredit(count, to: id)
            return dispatch(now: now)

        case .heartbeat(let leaseIDs):
            queue.heartbeat(from: id.worker, leaseIDs: leaseIDs, now: now.inSeconds)
            return BrokerActions()

        case .complete(let leaseID, let jobID, let index, let report):
            let completion = Completion(leaseID: leaseID, jobID: jobID, index: index, report: report)
            return complete([completion], from: id, now: now) + dispatch(now: now)

        case .completed(let completions, let credit):
            guard role == .worker else { return reply(.error(code: .protocolViolation, message: "only workers report tasks")) }
            let actions = complete(completions, from: id, now: now)
            addCredit(credit, to: id)
            return actions + dispatch(now: now)

        case .release(let leaseIDs):
            update(id) { peer in
                peer.leases.subtract(leaseIDs)
                // A worker that hands tasks back wants no more for now (it drains, or it
                // sends credit again).
                peer.credit = 0
            }
            let cancelled = queue.release(from: id.worker, leaseIDs: leaseIDs, now: now.inSeconds)
            return notify(cancelled) + dispatch(now: now)

        case .watch(let jobID):
            return watch(jobID: jobID, peer: id, requestID: requestID)

        case .cancel(let jobID, let index):
            guard queue.status(jobID: jobID) != nil else { return noJob(jobID) }
            let cancellation = queue.cancel(jobID: jobID, index: index, now: now.inSeconds)
            let status = queue.status(jobID: jobID) ?? JobStatus(jobID: JobID(jobID))
            var actions = notify(cancellation.results) + reply(.job(status))
            // Workers running a cancelled task stop it, and do not report it.
            for (holder, ids) in byHolder(cancellation.abortedLeases) {
                update(holder) { $0.leases.subtract(ids) }
                actions.now.append(Output(peer: holder, requestID: 0, message: .abort(leaseIDs: ids)))
            }
            return actions

        case .stopStarting(let jobID):
            guard queue.status(jobID: jobID) != nil else { return noJob(jobID) }
            let stopping = queue.stopStarting(jobID: jobID, now: now.inSeconds)
            let status = queue.status(jobID: jobID) ?? JobStatus(jobID: JobID(jobID))
            var actions = notify(stopping.results) + reply(.job(status))
            // Workers holding its tasks give back those they have not started.
            for (holder, ids) in byHolder(stopping.abortedLeases) {
                actions.now.append(Output(peer: holder, requestID: 0, message: .handBack(leaseIDs: ids)))
            }
            return actions

        case .forget(let jobID):
            forgetJob(jobID)
            var actions = reply(.done)
            actions.changes.append(.forget(jobID: jobID))
            return actions

        case .retry(let jobID, let indices):
            guard queue.status(jobID: jobID) != nil else { return noJob(jobID) }
            let retried = queue.retry(jobID: jobID, indices: indices)
            var actions = reply(.job(queue.status(jobID: jobID) ?? JobStatus(jobID: JobID(jobID))))
            if !retried.isEmpty { actions.changes.append(.retry(jobID: jobID, indices: retried)) }
            return actions + dispatch(now: now)

        case .attempts(let jobID, let index):
            guard queue.status(jobID: jobID) != nil else { return noJob(jobID) }
            return BrokerActions(afterWrite: [.sendAttempts(jobID: jobID, index: index, peer: id, requestID: requestID)])

        case .tasks(let jobID):
            guard queue.status(jobID: jobID) != nil else { return noJob(jobID) }
            return BrokerActions(afterWrite: [.sendTasks(jobID: jobID, peer: id, requestID: requestID)])

        case .status:
            return reply(.status(report(now: now)))

        case .setWorkers(let count):
            guard role == .client else { return reply(.error(code: .protocolViolation, message: "only clients set the worker number")) }
            guard (0...Self.maximumWorkerNumber).contains(count) else {
                return reply(.error(
                    code: .invalidArgument,
                    message: "the worker number must be between 0 and \(Self.maximumWorkerNumber), not \(count)"))
            }
            desiredWorkers = count
            return reply(.status(report(now: now)))
        }
    }

    /// The most workers a cluster can be asked for.
    package static let maximumWorkerNumber = 100_000

    /// What the server reports of itself: its uptime and restarts, workers and jobs.
    package func report(now: Duration) -> ServerReport {
        var report = ServerReport(
            jobQueueName: configuration.jobQueueName, uptime: now, restarts: configuration.restarts,
            firstStarted: configuration.firstStarted.map(Date.init(timeIntervalSince1970:)), workers: workerReports,
            jobs: queue.jobStatuses)
        report.desiredWorkers = desiredWorkers
        return report
    }

    /// Why no new job can be taken while the store's disk is full, or `nil`.
    private var storageRefusal: ServerMessage? {
        storageFull.map { reason in
            .error(
                code: .storageFull,
                message: "the server's disk is full (\(reason)), so it takes no new tasks: free space where it keeps its store, then submit again. The tasks it already took run on and lose nothing.")
        }
    }

    /// Why a submit or run cannot be taken, or `nil`.
    private static func refusal(jobID: String, options: JobOptions) -> ServerMessage? {
        do {
            try options.validate()
        } catch let error as DockerParallelError {
            return .error(code: error.code, message: error.message)
        } catch {
            return .error(code: .invalidArgument, message: "\(error)")
        }
        return jobID.isEmpty ? .error(code: .invalidArgument, message: "a job needs a non-empty id") : nil
    }

    /// Slots plus the worker's prefetch, which it raises for short tasks (up to 256 by default).
    /// A count from the wire is clamped first, so that no sum overflows.
    private mutating func addCredit(_ count: Int, to id: PeerID) {
        update(id) { peer in
            let cap = max(peer.slots, 1) * 4 + Self.maximumPrefetch
            peer.credit = max(0, min(peer.credit + min(max(count, -cap), cap), cap))
        }
    }

    /// Commits workers' reports; the results of one batch reach each watcher in one message.
    /// A late or duplicate report commits nothing; its counts are stored as they are.
    private mutating func complete(_ completions: [Completion], from id: PeerID, now: Duration) -> BrokerActions {
        var results: [TaskResult] = []
        var actions = BrokerActions()
        let seconds = now.inSeconds
        update(id) { peer in
            for completion in completions { peer.leases.remove(completion.leaseID) }
        }
        for completion in completions {
            if let result = queue.complete(
                from: id.worker, leaseID: completion.leaseID, jobID: completion.jobID, index: completion.index,
                report: completion.report, now: seconds)
            {
                results.append(result)
            } else if let counters = queue.counters(jobID: completion.jobID, index: completion.index) {
                actions.changes.append(.counters(
                    jobID: completion.jobID, index: completion.index, attempts: counters.attempts, failures: counters.failures))
            }
        }
        return actions + notify(results)
    }

    /// Leases grouped by the connected worker that holds them, in the order the workers first
    /// appear.
    private func byHolder(_ leases: [(worker: WorkerID, leaseID: LeaseID)]) -> [(PeerID, [LeaseID])] {
        var order: [WorkerID] = []
        var grouped: [WorkerID: [LeaseID]] = [:]
        for (worker, leaseID) in leases {
            if grouped[worker] == nil { order.append(worker) }
            grouped[worker, default: []].append(leaseID)
        }
        return order.compactMap { worker in
            let holder = PeerID(worker.rawValue)
            guard peer(holder) != nil, let ids = grouped[worker] else { return nil }
            return (holder, ids)
        }
    }
}
