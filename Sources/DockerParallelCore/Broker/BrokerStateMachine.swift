/// The broker as a pure state machine: connections and their hello, workers' credit and
/// leases, dispatch in turn, watches of jobs, cancel, and the changes to store.
///
/// It performs no I/O and reads no clock. The executor (the server's `Broker`) feeds it events
/// with the time since the broker started, and performs the ``BrokerActions`` it returns:
/// writing messages to connections, storing changes, and reading the store.
package struct BrokerStateMachine: Sendable {
    /// What the machine needs to know of its server.
    package struct Configuration: Sendable {
        /// The cluster's name, reported in status and in a refused hello.
        package var jobQueueName: String
        /// The password every connection must present.
        package var password: ServerPassword
        /// How long a lease lasts without a heartbeat (sent to peers in `welcome`).
        package var leaseDuration: Duration
        /// Whether changes are stored: a submit then holds its connection until it is durable.
        package var isDurable: Bool
        /// The wall-clock time (seconds since 1970) at which the broker's time 0 was, for the
        /// attempt log.
        package var wallClockAtStart: Double
        /// How many times a server started on this store before this one (reported in status).
        package var restarts = 0
        /// When a server first started on this store (seconds since 1970), if it has one.
        package var firstStarted: Double?

        package init(
            jobQueueName: String, password: ServerPassword, leaseDuration: Duration, isDurable: Bool,
            wallClockAtStart: Double
        ) {
            self.jobQueueName = jobQueueName
            self.password = password
            self.leaseDuration = leaseDuration
            self.isDurable = isDurable
            self.wallClockAtStart = wallClockAtStart
        }
    }

    /// An authenticated connection.
    package struct Peer: Sendable, Equatable {
        package var role: PeerRole
        package var name: String
        package var slots: Int
        /// Tasks the worker may still be sent.
        package var credit = 0
        /// Leases the worker holds.
        package var leases: Set<LeaseID> = []
        /// The credit of a worker gone silent (its leases expired), set aside until it speaks again.
        package var creditWhileSilent: Int?
    }

    /// A peer watching a job, and the request its results answer.
    private struct Watcher: Sendable {
        var peer: PeerID
        var requestID: UInt32
    }

    /// Tasks a worker may lease ahead of its slots, at most.
    package static let maximumPrefetch = 1024
    /// Slots one worker connection may have, at most.
    package static let maximumSlots = 1 << 20
    /// Spilled payloads loaded per read of the store.
    package static let payloadBatch = 4096
    /// Results per `results` message when a watch starts.
    static let resultsPerMessage = 512
    /// Bytes of inputs or outputs per message, at most (unless one item alone is bigger): well
    /// within a frame's 64 MiB.
    static let bytesPerMessage = 16 * 1024 * 1024

    /// Splits items into messages of at most `count` items and ``bytesPerMessage`` bytes.
    static func byteBatches<Item>(_ items: [Item], count: Int = .max, bytes: (Item) -> Int) -> [[Item]] {
        // The common case, small items: the array as it is, not copied.
        if items.count <= count {
            var total = 0
            for item in items {
                total += bytes(item)
                if total > bytesPerMessage { break }
            }
            if total <= bytesPerMessage { return [items] }
        }
        var batches: [[Item]] = []
        var current: [Item] = []
        var size = 0
        for item in items {
            let itemSize = bytes(item)
            if !current.isEmpty && (current.count >= count || size + itemSize > bytesPerMessage) {
                batches.append(current)
                current = []
                size = 0
            }
            current.append(item)
            size += itemSize
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }

    package let configuration: Configuration
    package internal(set) var queue: TaskQueue
    /// The worker number last asked for (``ClientMessage/setWorkers(count:)``).
    package internal(set) var desiredWorkers: Int?
    /// Connections opened whose first message, a hello with the password, has not come yet.
    private var awaitingHello: Set<PeerID> = []
    /// Authenticated connections. Peers are changed in place (`peers[id]?.…`): a copy of one
    /// would copy its set of leases, a thousand entries for a worker with a deep prefetch.
    private var peers: [PeerID: Peer] = [:]
    /// Connections refused and being closed: nothing they send is read (an authenticated one
    /// keeps its entry in ``peers`` until it closes, so that its leases go back then).
    private var refused: Set<PeerID> = []
    /// Workers in dispatch order; rotated after each dispatch.
    private var workerOrder: [PeerID] = []
    private var watchers: [String: [Watcher]] = [:]
    /// Jobs sent with `run`, and the peer that sent each: forgotten once all their tasks succeed,
    /// unless that peer has gone (its client then collects the job another way).
    private var runs: [String: PeerID] = [:]
    private var nextPeer: UInt64 = 1
    /// Why the store cannot write (its disk is full), while it cannot: no new job is taken then.
    package private(set) var storageFull: String?

    /// Creates a machine over a queue (restored from the store, or empty).
    package init(configuration: Configuration, queue: TaskQueue) {
        self.configuration = configuration
        self.queue = queue
    }

    /// An authenticated peer, if `id` is one.
    package func peer(_ id: PeerID) -> Peer? {
        refused.contains(id) ? nil : peers[id]
    }

    // MARK: Connections

    /// A connection opened; it gets an id and must send a hello first.
    package mutating func connectionOpened() -> PeerID {
        let id = PeerID(nextPeer)
        nextPeer += 1
        awaitingHello.insert(id)
        return id
    }

    /// A connection sent something that cannot be read: it is told why and closed. Other
    /// peers are not touched (and an authenticated peer's leases go back when it closes).
    package mutating func unreadable(
        from id: PeerID, requestID: UInt32, code: DockerParallelError.Code, message: String
    ) -> BrokerActions {
        guard awaitingHello.remove(id) != nil || peers[id] != nil, refused.insert(id).inserted else {
            return BrokerActions()
        }
        // A worker being closed gets no more tasks; what it holds goes back when it closes.
        peers[id]?.credit = 0
        return BrokerActions(now: [Output(peer: id, requestID: requestID, message: .error(code: code, message: message))], close: [id])
    }

    /// A connection closed: its watches end, and a worker's leases go back to the queue (their
    /// attempts count as lost).
    package mutating func connectionClosed(_ id: PeerID, now: Duration) -> BrokerActions {
        awaitingHello.remove(id)
        refused.remove(id)
        guard let peer = peers.removeValue(forKey: id) else { return BrokerActions() }
        for (job, list) in watchers {
            watchers[job] = list.filter { $0.peer != id }
        }
        runs = runs.filter { $0.value != id }
        guard peer.role == .worker else { return BrokerActions() }
        workerOrder.removeAll { $0 == id }
        let failed = queue.workerLost(id.worker, now: now.inSeconds)
        return finish(notify(failed) + dispatch(now: now))
    }

    /// The store's disk filled up (`reason` says how), or has space again (`nil`). While it is
    /// full, submits and new runs are refused with `.storageFull`; what was taken runs on, and
    /// its changes wait in memory until they can be written.
    package mutating func storageChanged(full reason: String?) {
        storageFull = reason
    }

    /// Leases whose time is up go back to the queue (or fail, out of attempts).
    ///
    /// A worker whose leases expired has gone silent (a partition, a stopped process): it keeps
    /// none of them and gets no more tasks until it speaks again; its credit waits until then.
    package mutating func expireLeases(now: Duration) -> BrokerActions {
        let leased = queue.leaseCount
        let failed = queue.expireLeases(now: now.inSeconds)
        if queue.leaseCount < leased {
            for id in workerOrder {
                guard let held = peers[id]?.leases, !held.isEmpty else { continue }
                let expired = held.filter { !queue.isLeased($0) }
                guard !expired.isEmpty else { continue }
                update(id) { peer in
                    peer.leases.subtract(expired)
                    peer.creditWhileSilent = (peer.creditWhileSilent ?? 0) + peer.credit
                    peer.credit = 0
                }
            }
        }
        return finish(notify(failed) + dispatch(now: now))
    }

    /// Spilled payloads the store returned (after a ``BrokerActions/Deferred/loadPayloads(_:)``).
    package mutating func loaded(_ payloads: [(key: TaskQueue.Key, spec: TaskSpec?)], now: Duration) -> BrokerActions {
        queue.load(payloads)
        return finish(dispatch(now: now))
    }

    /// A message from a connection.
    package mutating func received(
        _ message: ClientMessage, requestID: UInt32, from id: PeerID, now: Duration
    ) -> BrokerActions {
        if refused.contains(id) { return BrokerActions() }
        if awaitingHello.contains(id) { return hello(message, requestID: requestID, from: id) }
        guard let role = peers[id]?.role else { return BrokerActions() }
        if let saved = peers[id]?.creditWhileSilent {
            // A silent worker speaks again: its credit comes back.
            update(id) { peer in
                peer.credit += saved
                peer.creditWhileSilent = nil
            }
        }
        var actions = handle(message, requestID: requestID, from: id, role: role, now: now)
        if message.isSubmit, configuration.isDurable {
            // The connection reads nothing more until this submit is stored, or refused.
            actions.pauseReading.append(id)
            actions.afterWrite.append(.resumeReading(id))
        }
        return finish(actions)
    }

    private mutating func hello(_ message: ClientMessage, requestID: UInt32, from id: PeerID) -> BrokerActions {
        guard case .hello(let hello) = message else {
            return unreadable(from: id, requestID: requestID, code: .protocolViolation, message: "the first message must be hello")
        }
        guard configuration.password.matches(hello.password) else {
            return unreadable(
                from: id, requestID: requestID, code: .authenticationFailed,
                message: "wrong cluster password for '\(configuration.jobQueueName)': use the password of the cluster you connect to")
        }
        guard (0...Self.maximumSlots).contains(hello.slots) else {
            return unreadable(
                from: id, requestID: requestID, code: .invalidArgument,
                message: "a worker runs 0 to \(Self.maximumSlots) slots, not \(hello.slots): start it with fewer")
        }
        guard hello.protocolVersion == Hello.currentProtocolVersion else {
            return unreadable(
                from: id, requestID: requestID, code: .protocolViolation,
                message: "protocol version \(hello.protocolVersion) is not supported (the server speaks \(Hello.currentProtocolVersion)); use the same DockerParallel version for server, workers and client")
        }
        awaitingHello.remove(id)
        peers[id] = Peer(role: hello.role, name: hello.name, slots: hello.slots)
        if hello.role == .worker { workerOrder.append(id) }
        let welcome = ServerMessage.welcome(leaseDuration: configuration.leaseDuration.inSeconds)
        return BrokerActions(now: [Output(peer: id, requestID: requestID, message: welcome)])
    }

    // MARK: Shared steps

    package typealias Output = BrokerActions.Output

    /// Adds what every event ends with: the attempt log's new entries, to store, and a load of
    /// spilled payloads when the queue runs low.
    private mutating func finish(_ actions: BrokerActions) -> BrokerActions {
        var actions = actions
        for var record in queue.takeAttemptLog() {
            record.started += configuration.wallClockAtStart
            record.ended = record.ended.map { $0 + configuration.wallClockAtStart }
            actions.changes.append(.attempt(record))
        }
        let keys = queue.spilledKeysToLoad(limit: Self.payloadBatch)
        if !keys.isEmpty { actions.afterWrite.append(.loadPayloads(keys)) }
        return actions
    }

    /// Hands queued tasks to workers with credit, in turn.
    mutating func dispatch(now: Duration) -> BrokerActions {
        guard queue.hasQueuedTasks else { return BrokerActions() }
        var actions = BrokerActions()
        let seconds = now.inSeconds
        for id in workerOrder {
            guard let credit = peers[id]?.credit, credit > 0, let name = peers[id]?.name else { continue }
            let assignments = queue.lease(to: id.worker, name: name, limit: credit, now: seconds)
            guard !assignments.isEmpty else { break }
            peers[id]?.credit -= assignments.count
            peers[id]?.leases.formUnion(assignments.lazy.map(\.leaseID))
            // Several messages when the inputs are large, each well within a frame.
            for batch in Self.byteBatches(assignments, bytes: { $0.task.input.count + 256 }) {
                actions.now.append(Output(peer: id, requestID: 0, message: .assign(batch)))
            }
            for assignment in assignments {
                let failures = queue.counters(jobID: assignment.jobID, index: assignment.task.index)?.failures ?? 0
                actions.changes.append(.counters(
                    jobID: assignment.jobID, index: assignment.task.index, attempts: assignment.attempt, failures: failures))
            }
        }
        // Rotate so the next dispatch starts with another worker.
        if workerOrder.count > 1 { workerOrder.append(workerOrder.removeFirst()) }
        return actions
    }

    /// How long each task leased since the last call waited for its worker, in seconds.
    package mutating func takeDispatchWaits() -> [Double] {
        queue.takeDispatchWaits()
    }

    /// Changes a peer's state in place.
    mutating func update(_ id: PeerID, _ body: (inout Peer) -> Void) {
        guard peers[id] != nil else { return }
        body(&peers[id, default: Peer(role: .client, name: "", slots: 0)])
    }

    /// Stores committed results and shows them to the job's watchers once stored.
    mutating func notify(_ results: [TaskResult]) -> BrokerActions {
        guard !results.isEmpty else { return BrokerActions() }
        var actions = BrokerActions(changes: results.map { .result($0) })
        var order: [String] = []
        var byJob: [String: [TaskResult]] = [:]
        for result in results {
            if byJob[result.jobID.rawValue] == nil { order.append(result.jobID.rawValue) }
            byJob[result.jobID.rawValue, default: []].append(result)
        }
        for jobID in order {
            guard let jobResults = byJob[jobID], let watchers = watchers[jobID], !watchers.isEmpty,
                  let status = queue.status(jobID: jobID) else { continue }
            let batches = Self.byteBatches(jobResults, bytes: { $0.output.count + $0.errorOutput.count + 256 })
            for watcher in watchers {
                for batch in batches {
                    actions.durable.append(Output(peer: watcher.peer, requestID: watcher.requestID, message: .results(batch)))
                }
                actions.durable.append(Output(peer: watcher.peer, requestID: watcher.requestID, message: .job(status)))
            }
            actions += forgetFinishedRun(jobID)
        }
        return actions
    }

    /// Sends a job's results so far and its status, and adds the peer to its watchers.
    /// - Parameter quietUntilResults: Send nothing while the job has no result and is not
    ///   complete (a job with no tasks is): its first results bring the status.
    mutating func watch(jobID: String, peer id: PeerID, requestID: UInt32, quietUntilResults: Bool = false) -> BrokerActions {
        let reply = { (message: ServerMessage) in BrokerActions(durable: [Output(peer: id, requestID: requestID, message: message)]) }
        guard let status = queue.status(jobID: jobID) else {
            return reply(.error(code: .invalidArgument, message: "there is no job '\(jobID)' on this server"))
        }
        watchers[jobID, default: []].append(Watcher(peer: id, requestID: requestID))
        let results = queue.results(jobID: jobID)
        if quietUntilResults && results.isEmpty && !status.isComplete { return BrokerActions() }
        var actions = BrokerActions()
        for batch in Self.byteBatches(results, count: Self.resultsPerMessage, bytes: { $0.output.count + $0.errorOutput.count + 256 }) {
            actions += reply(.results(batch))
        }
        return actions + reply(.job(status))
    }

    /// Forgets a job sent with `run` once every one of its tasks has succeeded.
    mutating func forgetFinishedRun(_ jobID: String) -> BrokerActions {
        guard runs[jobID] != nil, let status = queue.status(jobID: jobID),
              status.isComplete, status.succeeded == status.total else { return BrokerActions() }
        forgetJob(jobID)
        return BrokerActions(changes: [.forget(jobID: jobID)])
    }

    /// Removes a job from the queue, its watchers and its runs.
    mutating func forgetJob(_ jobID: String) {
        queue.forget(jobID: jobID)
        watchers[jobID] = nil
        runs[jobID] = nil
    }

    /// Records that a peer sent a job with `run`.
    mutating func recordRun(_ jobID: String, by id: PeerID) {
        runs[jobID] = id
    }

    /// The connected workers, in dispatch order, for status.
    var workerReports: [ServerReport.Worker] {
        workerOrder.compactMap { id in
            peer(id).map { ServerReport.Worker(name: $0.name, slots: $0.slots, running: $0.leases.count) }
        }
    }
}
