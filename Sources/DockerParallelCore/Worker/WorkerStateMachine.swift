import DequeModule

/// The worker's side of a connection as a pure state machine: credit and prefetch, tasks
/// waiting for a slot, aborts, heartbeats, batched reports, and the drain on SIGTERM.
///
/// It performs no I/O and reads no clock. The executor (`Worker`) feeds it events with the
/// time since the connection opened and performs the ``WorkerAction``s it returns: sending
/// messages, starting and cancelling attempts, closing the connection.
package struct WorkerStateMachine: Sendable {
    /// How the worker leases and reports.
    package struct Configuration: Sendable {
        /// Tasks run at once.
        package var slots: Int
        /// Tasks leased ahead of free slots, at least.
        package var minimumPrefetch: Int
        /// Tasks leased ahead of free slots, at most (raised for short tasks).
        package var maximumPrefetch: Int
        /// How often held leases are renewed.
        package var heartbeatInterval: Duration
        /// How long running tasks may go on once a drain starts, before they are handed back.
        package var shutdownGracePeriod: Duration

        package init(
            slots: Int, minimumPrefetch: Int, maximumPrefetch: Int, heartbeatInterval: Duration,
            shutdownGracePeriod: Duration
        ) {
            self.slots = slots
            self.minimumPrefetch = minimumPrefetch
            self.maximumPrefetch = maximumPrefetch
            self.heartbeatInterval = heartbeatInterval
            self.shutdownGracePeriod = shutdownGracePeriod
        }
    }

    /// Average attempt length, in seconds, under which a Swift task starts on the connection's
    /// own thread (200 µs).
    package static let inlineBelowSeconds = 0.000_2
    /// Average attempt length, in seconds, under which reports are held back for a batch (1 ms).
    package static let shortTaskSeconds = 0.001
    /// How long, at least, a task leased ahead may wait for a busy slot before it goes back to
    /// the server, where an idle worker can take it: behind a long task, a prefetched one would
    /// otherwise wait for it however many workers are free. It waits four average tasks when
    /// that is longer.
    package static let prefetchWait: Duration = .seconds(1)

    package let configuration: Configuration
    /// Leases the worker holds: waiting, running, or finished and not yet reported.
    package private(set) var held: Set<LeaseID> = []
    /// Assignments waiting for a free slot, in the order they came.
    package private(set) var waiting = Deque<Assignment>()
    /// Attempts running now.
    package private(set) var active = 0
    /// When the drain started, if it has.
    package private(set) var drainStarted: Duration?
    private var lastHeartbeat: Duration = .zero
    private var prefetch: PrefetchPolicy
    private var reports = ReportBatch()
    private var closed = false
    /// When each waiting assignment came.
    private var waitingSince: [LeaseID: Duration] = [:]
    /// Credit given back with prefetched tasks that waited too long, asked for again when a slot
    /// frees.
    private var creditHandedBack = 0

    package init(configuration: Configuration) {
        self.configuration = configuration
        self.prefetch = PrefetchPolicy(minimum: configuration.minimumPrefetch, maximum: configuration.maximumPrefetch)
    }

    /// Whether the worker drains: it takes no new task.
    package var isDraining: Bool { drainStarted != nil }

    /// The connection is ready: ask for a task per slot and the prefetch.
    package mutating func connected(now: Duration) -> [WorkerAction] {
        lastHeartbeat = now
        return [.send(.credit(count: configuration.slots + configuration.minimumPrefetch))]
    }

    /// The server assigned tasks.
    package mutating func assigned(_ assignments: [Assignment], now: Duration) -> [WorkerAction] {
        guard !closed else { return [] }
        if isDraining { return [.send(.release(leaseIDs: assignments.map(\.leaseID)))] }
        held.formUnion(assignments.map(\.leaseID))
        waiting.append(contentsOf: assignments)
        for assignment in assignments { waitingSince[assignment.leaseID] = now }
        var actions: [WorkerAction] = []
        startWaiting(into: &actions)
        flushReportsIfDue(now: now, into: &actions)
        return actions
    }

    /// The server took leases back (their tasks were cancelled): they stop and are not reported.
    package mutating func aborted(_ leaseIDs: [LeaseID], now: Duration) -> [WorkerAction] {
        let aborted = Set(leaseIDs)
        held.subtract(aborted)
        waiting.removeAll { aborted.contains($0.leaseID) }
        for id in leaseIDs { waitingSince[id] = nil }
        var actions: [WorkerAction] = [.cancel(leaseIDs)]
        flushReportsIfDue(now: now, into: &actions)
        return actions
    }

    /// The server asks for leases back unless they started (their job starts no more tasks):
    /// those still waiting go back, with credit again for as many.
    package mutating func handBack(_ leaseIDs: [LeaseID], now: Duration) -> [WorkerAction] {
        let asked = Set(leaseIDs)
        let returned = waiting.filter { asked.contains($0.leaseID) }.map(\.leaseID)
        guard !returned.isEmpty else { return [] }
        waiting.removeAll { asked.contains($0.leaseID) }
        held.subtract(returned)
        for id in returned { waitingSince[id] = nil }
        var actions: [WorkerAction] = []
        flushReportsIfDue(now: now, into: &actions)
        // The server takes a release as "no more for now": the credit comes back with it.
        actions.append(.send(.release(leaseIDs: returned)))
        if !isDraining { actions.append(.send(.credit(count: returned.count))) }
        return actions
    }

    /// An attempt ended after `duration`; its report goes out with the next batch, unless its
    /// lease was aborted meanwhile.
    package mutating func finished(_ completion: Completion, duration: Duration, now: Duration) -> [WorkerAction] {
        active -= 1
        let report = held.contains(completion.leaseID) ? completion : nil
        // One credit for the freed slot, and more while short tasks raise the prefetch; and the
        // prefetch handed back while the slots were busy.
        let credit = isDraining ? 0 : 1 + prefetch.record(duration) + creditHandedBack
        if !isDraining { creditHandedBack = 0 }
        reports.add(report, credit: credit, now: now)
        var actions: [WorkerAction] = []
        startWaiting(into: &actions)
        flushReportsIfDue(now: now, into: &actions)
        return actions
    }

    /// Time passed: heartbeats, reports held back too long, and the end of a drain.
    package mutating func tick(now: Duration) -> [WorkerAction] {
        guard !closed else { return [] }
        var actions: [WorkerAction] = []
        flushReportsIfDue(now: now, into: &actions)
        if let started = drainStarted {
            if held.isEmpty || now - started > configuration.shutdownGracePeriod {
                // What still runs after the grace period goes back to the server.
                if !held.isEmpty { actions.append(.send(.release(leaseIDs: held.sorted()))) }
                held.removeAll()
                closed = true
                return actions + [.close]
            }
        }
        handBackStalePrefetch(now: now, into: &actions)
        if !held.isEmpty, now - lastHeartbeat > configuration.heartbeatInterval {
            actions.append(.send(.heartbeat(leaseIDs: held.sorted())))
            lastHeartbeat = now
        }
        return actions
    }

    /// Graceful shutdown (SIGTERM, a spot notice, a scale-down): tasks that have not started go
    /// back at once; running ones get the grace period (see ``tick(now:)``).
    package mutating func drain(now: Duration) -> [WorkerAction] {
        guard !isDraining, !closed else { return [] }
        drainStarted = now
        let handedBack = waiting.map(\.leaseID)
        waiting.removeAll()
        waitingSince.removeAll()
        held.subtract(handedBack)
        var actions: [WorkerAction] = []
        flushReportsIfDue(now: now, into: &actions)
        if !handedBack.isEmpty { actions.append(.send(.release(leaseIDs: handedBack))) }
        return actions + tick(now: now)
    }

    /// Hands back the tasks leased ahead that waited ``prefetchWait`` while every slot was busy;
    /// their credit is asked for again when a slot frees.
    private mutating func handBackStalePrefetch(now: Duration, into actions: inout [WorkerAction]) {
        guard !isDraining, active >= configuration.slots, !waiting.isEmpty else { return }
        // Longer than a second and four of this worker's average tasks: tasks that are all slow
        // (a loaded machine) keep their prefetch; one long task among short ones does not.
        let patience = max(Self.prefetchWait, .milliseconds(Int64(4_000 * (prefetch.averageSeconds ?? 0))))
        let stale = waiting.filter { now - (waitingSince[$0.leaseID] ?? now) >= patience }.map(\.leaseID)
        guard !stale.isEmpty else { return }
        let returned = Set(stale)
        waiting.removeAll { returned.contains($0.leaseID) }
        held.subtract(stale)
        for id in stale { waitingSince[id] = nil }
        // The server forgets the worker's unused credit with a release. Tasks this long need no
        // deep prefetch: the worker goes back to the least, and asks for it again when a slot
        // frees.
        prefetch.reset()
        creditHandedBack = max(0, configuration.minimumPrefetch - waiting.count)
        actions.append(.send(.release(leaseIDs: stale)))
    }

    /// Starts waiting assignments while slots are free.
    private mutating func startWaiting(into actions: inout [WorkerAction]) {
        while active < configuration.slots, !isDraining, let assignment = waiting.popFirst() {
            waitingSince[assignment.leaseID] = nil
            active += 1
            // Swift tasks that lately took microseconds run on the connection's own thread;
            // commands and persistent processes run on the shared pool.
            let inline: Bool
            switch assignment.task.kind {
            case .command, .process:
                inline = false
            case .swift, .swiftChunk:
                inline = prefetch.averageSeconds.map { $0 < Self.inlineBelowSeconds } ?? false
            }
            actions.append(.start(assignment, inline: inline))
        }
    }

    /// Sends held-back reports, with their credit, when they are due.
    private mutating func flushReportsIfDue(now: Duration, into actions: inout [WorkerAction]) {
        let shortTasks = prefetch.averageSeconds.map { $0 < Self.shortTaskSeconds } ?? false
        guard reports.isDue(idle: waiting.isEmpty || active == 0, shortTasks: shortTasks, now: now) else { return }
        let (completions, credit) = reports.take()
        // The leases are forgotten once reported: a drain closes the connection as soon as no
        // lease is held, and must not close it before these reports.
        for completion in completions { held.remove(completion.leaseID) }
        guard !completions.isEmpty || credit > 0 else { return }
        actions.append(.send(.completed(completions, credit: credit)))
    }
}

/// What the worker's state machine asks its executor to do, in order.
package enum WorkerAction: Sendable, Equatable {
    /// Send a message to the server.
    case send(ClientMessage)
    /// Start an attempt; `inline`: on the connection's own thread (a Swift task of microseconds).
    case start(Assignment, inline: Bool)
    /// Cancel these leases' running attempts.
    case cancel([LeaseID])
    /// Close the connection (a drain is done).
    case close
}
