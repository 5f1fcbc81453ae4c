import DockerParallelCore
import DockerParallelWire
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import DequeModule

enum WorkerEvent: Sendable {
    case server(ServerMessage)
    case finished(Completion, seconds: Double)
    /// Time passed: reports held back for a batch are sent.
    case tick
    case drain
}

/// A worker: dials out to the server, leases tasks for its slots, runs them, heartbeats, reports.
///
/// When the server goes away it reconnects for ``WorkerConfiguration/reconnectTimeout`` seconds.
/// On graceful shutdown (SIGTERM through a `ServiceGroup`) it takes no new tasks, lets running
/// ones finish for ``WorkerConfiguration/shutdownGracePeriod`` seconds, hands the rest back, and returns.
public final class Worker: Service {
    private let configuration: WorkerConfiguration
    private let logger: Logger
    private let onConnected: @Sendable () -> Void
    private let draining = NIOLockedValueBox(false)

    /// Creates a worker.
    /// - Parameters:
    ///   - configuration: Server, password, slots, tasks.
    ///   - logger: Where the worker logs.
    ///   - onConnected: Called each time the worker has connected and is ready for tasks.
    public init(configuration: WorkerConfiguration, logger: Logger, onConnected: @escaping @Sendable () -> Void = {}) {
        self.configuration = configuration
        self.logger = logger
        self.onConnected = onConnected
    }

    /// Runs until shutdown, or until the server cannot be reached for the reconnect timeout.
    /// - Throws: `.connectionFailed` when the server stays unreachable, `.authenticationFailed` on a wrong password.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            while !draining.withLockedValue({ $0 }) && !Task.isCancelled {
                let connection = try await connect()
                onConnected()
                // The worker's own work (its events, its reports, tiny Swift tasks) runs on
                // the connection's event loop, where pushes arrive and frames are written.
                if #available(macOS 15, *) {
                    let loop = connection.taskExecutor
                    await withTaskExecutorPreference(loop) { await serve(connection, loop: loop) }
                } else {
                    await serve(connection, loop: nil)
                }
            }
        } onGracefulShutdown: {
            self.draining.withLockedValue { $0 = true }
        }
    }

    private func connect() async throws -> PeerConnection {
        let hello = Hello(
            role: .worker, password: configuration.password.value, name: configuration.name,
            slots: configuration.slots, taskNames: configuration.registry.names)
        let start = ContinuousClock.now
        var delay = 0.05
        var server = configuration.server
        while true {
            if let located = configuration.serverLocator?() { server = located }
            do {
                return try await PeerConnection.connect(to: server, hello: hello)
            } catch let error as DockerParallelError where error.code == .authenticationFailed || error.code == .protocolViolation {
                throw error
            } catch {
                let waited = ContinuousClock.now - start
                if waited > .milliseconds(Int64(configuration.reconnectTimeout * 1000)) || draining.withLockedValue({ $0 }) {
                    throw DockerParallelError(
                        .connectionFailed,
                        "the server at \(server) could not be reached for \(configuration.reconnectTimeout) s",
                        underlying: error)
                }
                logger.debug("server not reachable, retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
                delay = min(delay * 2, 2)
            }
        }
    }

    /// Average attempt length under which a worker starts Swift tasks on its own thread.
    static let inlineBelowSeconds = 0.000_2

    /// Serves one connection until it closes, or until a drain completes.
    /// - Parameter loop: The connection's event loop as an executor, where Swift tasks of
    ///   microseconds run.
    private func serve(_ connection: PeerConnection, loop: (any TaskExecutor)?) async {
        let running = NIOLockedValueBox<Set<UInt64>>([])
        let runner = AttemptRunner(registry: configuration.registry)
        let heartbeatInterval = max(0.05, connection.leaseDuration / 3)
        let grace = configuration.shutdownGracePeriod
        let draining = self.draining
        let logger = self.logger
        let slots = configuration.slots
        // Events: messages from the server, slots that became free, the start of a drain.
        let (events, eventSink) = AsyncStream.makeStream(of: WorkerEvent.self)
        connection.handlePushes { push in
            if let push { eventSink.yield(.server(push)) } else { eventSink.finish() }
        }
        connection.send(.credit(count: slots + configuration.prefetch))
        await withTaskGroup(of: Void.self) { group in
            // Heartbeats, and the drain on shutdown.
            group.addTask {
                var drainStarted: ContinuousClock.Instant?
                var lastHeartbeat = ContinuousClock.now
                while connection.isOpen, !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(Int64(min(heartbeatInterval, 0.1) * 1000)))
                    eventSink.yield(.tick)
                    let leases = running.withLockedValue { Array($0) }
                    if draining.withLockedValue({ $0 }) {
                        if drainStarted == nil { eventSink.yield(.drain) }
                        let started = drainStarted ?? ContinuousClock.now
                        drainStarted = started
                        if leases.isEmpty || ContinuousClock.now - started > .milliseconds(Int64(grace * 1000)) {
                            if !leases.isEmpty {
                                logger.debug("handing back unfinished tasks", metadata: ["count": "\(leases.count)"])
                                connection.send(.release(leaseIDs: leases))
                            }
                            connection.close()
                            return
                        }
                    }
                    if !leases.isEmpty, ContinuousClock.now - lastHeartbeat > .milliseconds(Int64(heartbeatInterval * 1000)) {
                        connection.send(.heartbeat(leaseIDs: leases))
                        lastHeartbeat = ContinuousClock.now
                    }
                }
            }
            var waiting = Deque<Assignment>()
            var attempts: [UInt64: Task<Void, Never>] = [:]
            var active = 0
            // Tasks leased ahead of free slots: more for short tasks, so that a worker is not
            // idle for a round trip to the server between them.
            var prefetch = PrefetchPolicy(minimum: configuration.prefetch, maximum: configuration.maximumPrefetch)
            // Reports of short tasks are sent in batches, with the credit their slots give back.
            var reports = ReportBatch()
            for await event in events {
                switch event {
                case .server(.assign(let assignments)):
                    if draining.withLockedValue({ $0 }) {
                        connection.send(.release(leaseIDs: assignments.map(\.leaseID)))
                        continue
                    }
                    running.withLockedValue { $0.formUnion(assignments.map(\.leaseID)) }
                    waiting.append(contentsOf: assignments)
                case .server(.abort(let leaseIDs)):
                    let aborted = Set(leaseIDs)
                    running.withLockedValue { $0.subtract(aborted) }
                    waiting.removeAll { aborted.contains($0.leaseID) }
                    for id in leaseIDs { attempts[id]?.cancel() }
                case .server(.error(let code, let message)):
                    logger.warning("server reported an error", metadata: ["code": "\(code)", "message": "\(message)"])
                case .server:
                    break
                case .finished(let completion, let seconds):
                    attempts[completion.leaseID] = nil
                    active -= 1
                    // An aborted lease is not reported.
                    let report = running.withLockedValue { $0.contains(completion.leaseID) } ? completion : nil
                    // One credit for the freed slot, and more while short tasks raise the prefetch.
                    let credit = draining.withLockedValue({ $0 }) ? 0 : 1 + prefetch.record(seconds)
                    reports.add(report, credit: credit)
                case .tick:
                    break
                case .drain:
                    // Hand back what has not started; running tasks get the grace period.
                    let handedBack = waiting.map(\.leaseID)
                    waiting.removeAll()
                    running.withLockedValue { $0.subtract(handedBack) }
                    if !handedBack.isEmpty { connection.send(.release(leaseIDs: handedBack)) }
                }
                // Start waiting assignments while slots are free.
                while active < slots, !draining.withLockedValue({ $0 }), let assignment = waiting.popFirst() {
                    active += 1
                    // An unstructured task so that an abort can cancel this attempt alone; each
                    // is awaited before the connection is given up, so none outlives the worker.
                    let attempt: @Sendable () async -> Void = {
                        let started = ContinuousClock.now
                        let report = await runner.run(assignment)
                        let elapsed = ContinuousClock.now - started
                        eventSink.yield(.finished(
                            Completion(leaseID: assignment.leaseID, jobID: assignment.jobID, index: assignment.task.index, report: report),
                            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18))
                    }
                    // Swift tasks that lately took microseconds start on this thread, the
                    // connection's event loop, and, unless they suspend, finish before it goes
                    // on: no other thread is woken for them. The others start on the shared
                    // pool, so that the slots run side by side and the loop stays free.
                    if case .command = assignment.task.kind {
                        attempts[assignment.leaseID] = Task(operation: attempt)
                    } else if (prefetch.averageSeconds ?? 1) < Self.inlineBelowSeconds, #available(macOS 26, *) {
                        attempts[assignment.leaseID] = Task.immediate(executorPreference: loop, operation: attempt)
                    } else {
                        attempts[assignment.leaseID] = Task(operation: attempt)
                    }
                }
                // Hold reports back only while short tasks keep the slots busy, and not for long.
                if reports.isDue(idle: waiting.isEmpty || active == 0, shortTasks: (prefetch.averageSeconds ?? 1) < 0.001) {
                    let (completions, credit) = reports.take()
                    if !completions.isEmpty || credit > 0 { connection.send(.completed(completions, credit: credit)) }
                    // Forget the leases after reporting them: a drain closes the connection as
                    // soon as no lease is left, and must not close it before these reports.
                    running.withLockedValue { $0.subtract(completions.map(\.leaseID)) }
                }
            }
            for attempt in attempts.values { attempt.cancel() }
            for attempt in attempts.values { _ = await attempt.value }
            // The connection is gone: tasks still running were taken back by the server.
            running.withLockedValue { $0.removeAll() }
            group.cancelAll()
        }
    }
}

/// Reports and credit waiting to be sent together.
///
/// A report is sent at once when the worker is about to idle, or when tasks are not short;
/// otherwise reports gather for up to 2 ms or 128 reports, so that a stream of tiny tasks costs
/// the server one frame per batch instead of two per task.
struct ReportBatch {
    private var completions: [Completion] = []
    private var credit = 0
    private var oldest: ContinuousClock.Instant?

    static let maximumCount = 128
    static let maximumDelay = Duration.milliseconds(2)

    mutating func add(_ completion: Completion?, credit: Int) {
        if let completion { completions.append(completion) }
        self.credit += credit
        if oldest == nil { oldest = .now }
    }

    /// Whether to send now.
    /// - Parameters:
    ///   - idle: No task is waiting to start, so nothing else will come soon.
    ///   - shortTasks: Tasks take under a millisecond on average.
    func isDue(idle: Bool, shortTasks: Bool) -> Bool {
        guard let oldest else { return false }
        return idle || !shortTasks || completions.count >= Self.maximumCount || ContinuousClock.now - oldest >= Self.maximumDelay
    }

    mutating func take() -> (completions: [Completion], credit: Int) {
        defer {
            completions = []
            credit = 0
            oldest = nil
        }
        return (completions, credit)
    }
}

/// How many tasks a worker leases ahead of its free slots: enough to cover about
/// `lookahead` seconds of work at the tasks' average duration, between a minimum and a maximum.
struct PrefetchPolicy {
    let minimum: Int
    let maximum: Int
    var lookahead = 0.01
    private(set) var current: Int
    /// The tasks' average duration in seconds, weighted to recent ones; `nil` before the first.
    private(set) var averageSeconds: Double?

    init(minimum: Int, maximum: Int) {
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        current = minimum
    }

    /// Records a finished task's duration; returns how many more tasks to lease ahead (never
    /// fewer: credit already given is not taken back).
    mutating func record(_ seconds: Double) -> Int {
        let mean = averageSeconds.map { $0 * 0.9 + seconds * 0.1 } ?? seconds
        averageSeconds = mean
        let wanted = min(maximum, max(minimum, Int(lookahead / max(mean, 1e-6))))
        guard wanted > current else { return 0 }
        defer { current = wanted }
        return wanted - current
    }
}
