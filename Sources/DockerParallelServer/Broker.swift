import DockerParallelCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// The broker's shared state: the task queue, the connected peers and who watches which job.
///
/// Each event runs under one lock and returns the frames to write, which are written after the
/// lock is released.
final class Broker: Sendable {
    struct Peer {
        var channel: any Channel
        var role: PeerRole
        var name: String
        var slots: Int
        var credit = 0
        var leases: Set<UInt64> = []
    }

    struct Watcher {
        var peer: UInt64
        var channel: any Channel
        var requestID: UInt32
    }

    struct State {
        var queue: TaskQueue
        var peers: [UInt64: Peer] = [:]
        var workerOrder: [UInt64] = []
        var watchers: [String: [Watcher]] = [:]
        /// Jobs sent with `run`, and the peer that sent each: forgotten once all their tasks
        /// succeed, unless that peer has gone (its client then collects the job another way).
        var runs: [String: UInt64] = [:]
        var nextPeerID: UInt64 = 1
    }

    typealias Output = (channel: any Channel, frame: Frame)

    /// Work done after the changes before it are stored.
    enum AfterWrite {
        /// Read from the connection again (a submit was stored: backpressure on submits).
        case resumeReading(any Channel)
        /// Load spilled tasks' payloads from the store and hand them to the queue.
        case loadPayloads([TaskQueue.Key])
        /// Send a job's attempt log.
        case sendAttempts(jobID: String, index: Int?, channel: any Channel, requestID: UInt32)

        var readsAttempts: Bool {
            if case .sendAttempts = self { true } else { false }
        }
    }

    /// What one event asks for: frames to write now, changes to store, and frames to write (and
    /// work to do) only once those changes are durable (acknowledgements and results).
    struct Effects {
        var now: [Output] = []
        var changes: [StoreChange] = []
        var durable: [Output] = []
        var afterWrite: [AfterWrite] = []

        static func + (left: Effects, right: Effects) -> Effects {
            Effects(
                now: left.now + right.now, changes: left.changes + right.changes, durable: left.durable + right.durable,
                afterWrite: left.afterWrite + right.afterWrite)
        }
    }

    /// Tasks a worker may lease ahead of its slots, at most.
    static let maximumPrefetch = 1024

    /// Spilled payloads loaded per read of the store.
    static let payloadBatch = 4096

    let configuration: ServerConfiguration
    /// Stores the events' changes in the order the events happened.
    let committer: GroupCommitter
    private let state: NIOLockedValueBox<State>
    private let started = ContinuousClock.now
    /// The wall-clock time at `started`, for the attempt log.
    private let startedWall = Date().timeIntervalSince1970

    /// Creates a broker.
    /// - Parameters:
    ///   - store: Where changes are kept (`nil`: in memory only).
    ///   - onStoreFailure: Called when a write fails; the server should stop.
    init(
        configuration: ServerConfiguration, queue: TaskQueue, store: (any BrokerStore)?,
        onStoreFailure: @escaping @Sendable (any Error) -> Void
    ) {
        self.configuration = configuration
        self.state = NIOLockedValueBox(State(queue: queue))
        self.committer = GroupCommitter(store: store, onFailure: onStoreFailure)
        committer.onLoaded { [unowned self] payloads in self.loaded(payloads) }
    }

    /// Runs one event under the lock. Its changes are queued for the store while the lock is
    /// held, so the store sees them in the order the events happened; the frames it writes at
    /// once are written after the lock is released.
    private func event(_ body: (inout State) -> Effects) {
        let (now, immediate) = state.withLockedValue { state -> ([Output], GroupCommitter.Immediate) in
            let effects = finish(&state, body(&state))
            return (effects.now, committer.enqueue(effects))
        }
        GroupCommitter.perform(now)
        committer.perform(immediate)
    }

    /// Seconds since the broker started.
    var now: Double {
        let elapsed = ContinuousClock.now - started
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    // MARK: Peers

    /// Registers an authenticated peer and returns its id.
    func connect(_ hello: Hello, channel: any Channel) -> UInt64 {
        state.withLockedValue { state in
            let id = state.nextPeerID
            state.nextPeerID += 1
            state.peers[id] = Peer(channel: channel, role: hello.role, name: hello.name, slots: hello.slots)
            if hello.role == .worker { state.workerOrder.append(id) }
            return id
        }
    }

    /// Forgets a peer; a worker's tasks go back to the queue.
    func disconnect(_ peerID: UInt64) {
        event { state in
            guard let peer = state.peers.removeValue(forKey: peerID) else { return Effects() }
            for (job, list) in state.watchers {
                state.watchers[job] = list.filter { $0.peer != peerID }
            }
            state.runs = state.runs.filter { $0.value != peerID }
            guard peer.role == .worker else { return Effects() }
            state.workerOrder.removeAll { $0 == peerID }
            let failed = state.queue.workerLost(WorkerID(peerID), now: now)
            return Self.notify(&state, failed) + dispatch(&state)
        }
    }

    // MARK: Messages

    /// Handles one message from an authenticated peer.
    func handle(_ message: ClientMessage, requestID: UInt32, from peerID: UInt64) {
        event { state in
            var effects = handle(message, requestID: requestID, from: peerID, state: &state)
            if message.isSubmit, committer.isDurable, let channel = state.peers[peerID]?.channel {
                // The connection stopped reading at this submit (backpressure); it reads on once
                // the submit is stored, or refused.
                effects.afterWrite.append(.resumeReading(channel))
            }
            return effects
        }
    }

    private func handle(_ message: ClientMessage, requestID: UInt32, from peerID: UInt64, state: inout State) -> Effects {
            guard let peer = state.peers[peerID] else { return Effects() }
            // Replies are written in order with results, after what they depend on is durable.
            let reply = { (message: ServerMessage) -> Effects in
                Effects(durable: [(peer.channel, Self.frame(message, requestID: requestID))])
            }
            switch message {
            case .hello:
                return reply(.error(code: .protocolViolation, message: "hello was already sent on this connection"))

            case .submit(let jobID, let options, let tasks):
                if let refusal = Self.refusal(jobID: jobID, options: options) { return reply(refusal) }
                let outcome = state.queue.submit(jobID: jobID, options: options, tasks: tasks)
                var effects = reply(.submitted(accepted: outcome.accepted, duplicates: outcome.duplicates))
                effects.changes.append(.submit(jobID: jobID, options: options, tasks: tasks))
                return effects + dispatch(&state)

            case .run(let jobID, let options, let tasks):
                if let refusal = Self.refusal(jobID: jobID, options: options) { return reply(refusal) }
                _ = state.queue.submit(jobID: jobID, options: options, tasks: tasks)
                state.runs[jobID] = peerID
                var effects = Effects(changes: [.submit(jobID: jobID, options: options, tasks: tasks)])
                // A run sent again after a lost connection may find results already; a new one
                // hears nothing until its first results, which come with the job's status.
                effects = effects + watch(jobID: jobID, peerID: peerID, requestID: requestID, quietUntilResults: true, state: &state)
                return effects + Self.forgetFinishedRun(jobID, state: &state) + dispatch(&state)

            case .credit(let count):
                guard peer.role == .worker else { return reply(.error(code: .protocolViolation, message: "only workers take tasks")) }
                addCredit(count, to: peerID, state: &state)
                return dispatch(&state)

            case .heartbeat(let leaseIDs):
                state.queue.heartbeat(from: WorkerID(peerID), leaseIDs: leaseIDs, now: now)
                return Effects()

            case .complete(let leaseID, let jobID, let index, let report):
                let completion = Completion(leaseID: leaseID, jobID: jobID, index: index, report: report)
                return complete([completion], from: peerID, state: &state) + dispatch(&state)

            case .completed(let completions, let credit):
                guard peer.role == .worker else { return reply(.error(code: .protocolViolation, message: "only workers report tasks")) }
                let effects = complete(completions, from: peerID, state: &state)
                addCredit(credit, to: peerID, state: &state)
                return effects + dispatch(&state)

            case .release(let leaseIDs):
                for id in leaseIDs { state.peers[peerID]?.leases.remove(id) }
                state.queue.release(from: WorkerID(peerID), leaseIDs: leaseIDs, now: now)
                state.peers[peerID]?.credit = 0
                return dispatch(&state)

            case .watch(let jobID):
                return watch(jobID: jobID, peerID: peerID, requestID: requestID, state: &state)

            case .cancel(let jobID, let index):
                guard state.queue.status(jobID: jobID) != nil else {
                    return reply(.error(code: .invalidArgument, message: "there is no job '\(jobID)' on this server"))
                }
                let cancellation = state.queue.cancel(jobID: jobID, index: index, now: now)
                let status = state.queue.status(jobID: jobID) ?? JobStatus(jobID: jobID)
                var effects = Self.notify(&state, cancellation.results) + reply(.job(status))
                for (worker, leases) in Dictionary(grouping: cancellation.abortedLeases, by: \.worker) {
                    guard let holder = state.peers[worker.rawValue] else { continue }
                    let ids = leases.map(\.leaseID)
                    state.peers[worker.rawValue]?.leases.subtract(ids)
                    effects.now.append((holder.channel, Self.frame(.abort(leaseIDs: ids), requestID: 0)))
                }
                return effects

            case .forget(let jobID):
                state.queue.forget(jobID: jobID)
                state.watchers[jobID] = nil
                state.runs[jobID] = nil
                var effects = reply(.done)
                effects.changes.append(.forget(jobID: jobID))
                return effects

            case .retry(let jobID, let indices):
                guard state.queue.status(jobID: jobID) != nil else {
                    return reply(.error(code: .invalidArgument, message: "there is no job '\(jobID)' on this server"))
                }
                let retried = state.queue.retry(jobID: jobID, indices: indices)
                var effects = reply(.job(state.queue.status(jobID: jobID) ?? JobStatus(jobID: jobID)))
                if !retried.isEmpty { effects.changes.append(.retry(jobID: jobID, indices: retried)) }
                return effects + dispatch(&state)

            case .attempts(let jobID, let index):
                guard state.queue.status(jobID: jobID) != nil else {
                    return reply(.error(code: .invalidArgument, message: "there is no job '\(jobID)' on this server"))
                }
                return Effects(afterWrite: [.sendAttempts(jobID: jobID, index: index, channel: peer.channel, requestID: requestID)])

            case .status:
                let workers = state.workerOrder.compactMap { id -> ServerReport.Worker? in
                    guard let peer = state.peers[id] else { return nil }
                    return ServerReport.Worker(name: peer.name, slots: peer.slots, running: peer.leases.count)
                }
                return reply(.status(ServerReport(
                    jobQueueName: configuration.jobQueueName, uptime: now, workers: workers,
                    jobs: state.queue.jobStatuses)))
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

    /// Sends a job's results so far and its status, and adds the peer to its watchers.
    /// - Parameter quietUntilResults: Send nothing while the job has no result and is not
    ///   complete (a job with no tasks is): its first results bring the status.
    private func watch(
        jobID: String, peerID: UInt64, requestID: UInt32, quietUntilResults: Bool = false, state: inout State
    ) -> Effects {
        guard let peer = state.peers[peerID] else { return Effects() }
        let reply = { (message: ServerMessage) -> Effects in
            Effects(durable: [(peer.channel, Self.frame(message, requestID: requestID))])
        }
        guard let status = state.queue.status(jobID: jobID) else {
            return reply(.error(code: .invalidArgument, message: "there is no job '\(jobID)' on this server"))
        }
        state.watchers[jobID, default: []].append(Watcher(peer: peerID, channel: peer.channel, requestID: requestID))
        var effects = Effects()
        let results = state.queue.results(jobID: jobID)
        if quietUntilResults && results.isEmpty && !status.isComplete { return effects }
        for start in stride(from: 0, to: results.count, by: 512) {
            effects = effects + reply(.results(Array(results[start..<min(start + 512, results.count)])))
        }
        return effects + reply(.job(status))
    }

    /// Forgets a job sent with `run` once every one of its tasks has succeeded.
    private static func forgetFinishedRun(_ jobID: String, state: inout State) -> Effects {
        guard state.runs[jobID] != nil, let status = state.queue.status(jobID: jobID),
              status.isComplete, status.succeeded == status.total else { return Effects() }
        state.queue.forget(jobID: jobID)
        state.watchers[jobID] = nil
        state.runs[jobID] = nil
        return Effects(changes: [.forget(jobID: jobID)])
    }

    /// Slots plus the worker's prefetch, which it raises for short tasks (up to 256 by default).
    private func addCredit(_ count: Int, to peerID: UInt64, state: inout State) {
        guard let peer = state.peers[peerID] else { return }
        state.peers[peerID]?.credit = max(0, min(count + peer.credit, max(peer.slots, 1) * 4 + Self.maximumPrefetch))
    }

    /// Commits workers' reports; the results of one batch reach each watcher in one frame.
    private func complete(_ completions: [Completion], from peerID: UInt64, state: inout State) -> Effects {
        var results: [TaskResult] = []
        var effects = Effects()
        let now = self.now
        for completion in completions {
            state.peers[peerID]?.leases.remove(completion.leaseID)
            if let result = state.queue.complete(
                from: WorkerID(peerID), leaseID: completion.leaseID, jobID: completion.jobID, index: completion.index,
                report: completion.report, now: now)
            {
                results.append(result)
            } else {
                effects = effects + Self.counters(state.queue, jobID: completion.jobID, indices: [completion.index])
            }
        }
        return effects + Self.notify(&state, results)
    }

    /// Takes back expired leases.
    func expireLeases() {
        event { state in
            let failed = state.queue.expireLeases(now: now)
            return Self.notify(&state, failed) + dispatch(&state)
        }
    }

    /// Hands payloads loaded from the store to the queue and dispatches them.
    func loaded(_ payloads: [(key: TaskQueue.Key, spec: TaskSpec?)]) {
        event { state in
            state.queue.load(payloads)
            return dispatch(&state)
        }
    }

    // MARK: Internals

    /// Adds what every event ends with: the attempt log's new entries, to store, and a load of
    /// spilled payloads when the queue runs low.
    private func finish(_ state: inout State, _ effects: Effects) -> Effects {
        var effects = effects
        for var record in state.queue.takeAttemptLog() {
            record.started += startedWall
            record.ended = record.ended.map { $0 + startedWall }
            effects.changes.append(.attempt(record))
        }
        let keys = state.queue.spilledKeysToLoad(limit: Self.payloadBatch)
        if !keys.isEmpty { effects.afterWrite.append(.loadPayloads(keys)) }
        return effects
    }

    /// Hands queued tasks to workers with credit, in turn.
    private func dispatch(_ state: inout State) -> Effects {
        guard state.queue.hasQueuedTasks else { return Effects() }
        var effects = Effects()
        let now = self.now
        for id in state.workerOrder {
            guard let peer = state.peers[id], peer.credit > 0 else { continue }
            let assignments = state.queue.lease(to: WorkerID(id), name: peer.name, limit: peer.credit, now: now)
            guard !assignments.isEmpty else { break }
            state.peers[id]?.credit -= assignments.count
            state.peers[id]?.leases.formUnion(assignments.map(\.leaseID))
            effects.now.append((peer.channel, Self.frame(.assign(assignments), requestID: 0)))
            for assignment in assignments {
                let failures = state.queue.counters(jobID: assignment.jobID, index: assignment.task.index)?.failures ?? 0
                effects.changes.append(.counters(
                    jobID: assignment.jobID, index: assignment.task.index, attempts: assignment.attempt, failures: failures))
            }
        }
        // Rotate so the next dispatch starts with another worker.
        if state.workerOrder.count > 1 { state.workerOrder.append(state.workerOrder.removeFirst()) }
        return effects
    }

    private static func counters(_ queue: TaskQueue, jobID: String, indices: [Int]) -> Effects {
        var effects = Effects()
        for index in indices {
            guard let counters = queue.counters(jobID: jobID, index: index) else { continue }
            effects.changes.append(.counters(jobID: jobID, index: index, attempts: counters.attempts, failures: counters.failures))
        }
        return effects
    }

    /// Stores committed results and shows them to the job's watchers once stored.
    private static func notify(_ state: inout State, _ results: [TaskResult]) -> Effects {
        guard !results.isEmpty else { return Effects() }
        var effects = Effects(changes: results.map { .result($0) })
        for (jobID, jobResults) in Dictionary(grouping: results, by: \.jobID) {
            guard let watchers = state.watchers[jobID], !watchers.isEmpty,
                  let status = state.queue.status(jobID: jobID) else { continue }
            let resultsBody = frameBody(.results(jobResults))
            let statusBody = frameBody(.job(status))
            for watcher in watchers {
                effects.durable.append((watcher.channel, Frame(requestID: watcher.requestID, body: resultsBody)))
                effects.durable.append((watcher.channel, Frame(requestID: watcher.requestID, body: statusBody)))
            }
            effects = effects + forgetFinishedRun(jobID, state: &state)
        }
        return effects
    }

    static func frame(_ message: ServerMessage, requestID: UInt32) -> Frame {
        Frame(requestID: requestID, body: frameBody(message))
    }

    private static func frameBody(_ message: ServerMessage) -> Data {
        (try? MessageCoding.encode(message)) ?? Data()
    }
}
