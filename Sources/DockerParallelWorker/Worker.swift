import DockerParallelCore
import DockerParallelWire
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// What reaches a worker's serve loop.
enum WorkerEvent: Sendable {
    case server(ServerMessage)
    case finished(Completion, duration: Duration)
    /// Time passed: heartbeats, held-back reports, a drain's progress.
    case tick
}

/// A worker: dials out to the server, leases tasks for its slots, runs them, heartbeats, reports.
///
/// When the server goes away it reconnects for ``WorkerConfiguration/reconnectTimeout``.
/// On graceful shutdown (SIGTERM through a `ServiceGroup`) it takes no new tasks, lets running
/// ones finish for ``WorkerConfiguration/shutdownGracePeriod``, hands the rest back, and returns.
public final class Worker: Service {
    private let configuration: WorkerConfiguration
    private let logger: Logger
    private let onConnected: @Sendable () -> Void
    private let draining = NIOLockedValueBox(false)
    /// The long-lived processes of process tasks, kept across reconnects.
    private let processes: ProcessPool

    /// Creates a worker.
    /// - Parameters:
    ///   - configuration: Server, password, slots, tasks.
    ///   - logger: Where the worker logs.
    ///   - onConnected: Called each time the worker has connected and is ready for tasks.
    public init(configuration: WorkerConfiguration, logger: Logger, onConnected: @escaping @Sendable () -> Void = {}) {
        self.configuration = configuration
        self.logger = logger
        self.onConnected = onConnected
        self.processes = ProcessPool(capacity: configuration.slots)
    }

    /// Runs until shutdown, or until the server cannot be reached for the reconnect timeout.
    /// - Throws: `.connectionFailed` when the server stays unreachable, `.authenticationFailed` on a wrong password.
    public func run() async throws {
        defer { processes.close() }
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
                return try await PeerConnection.connect(
                    to: server, hello: hello, certificateAuthority: configuration.certificateAuthority)
            } catch let error as DockerParallelError where error.code == .authenticationFailed || error.code == .protocolViolation {
                throw error
            } catch {
                let waited = ContinuousClock.now - start
                if waited > configuration.reconnectTimeout || draining.withLockedValue({ $0 }) {
                    throw DockerParallelError(
                        .connectionFailed,
                        "the server at \(server) could not be reached for \(configuration.reconnectTimeout)",
                        underlying: error)
                }
                logger.debug("server not reachable, retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
                delay = min(delay * 2, 2)
            }
        }
    }

    /// Serves one connection until it closes, or until a drain completes: a thin executor of
    /// the ``WorkerStateMachine``, which decides what to send, start, cancel and close.
    /// - Parameter loop: The connection's event loop as an executor, where Swift tasks of
    ///   microseconds run.
    private func serve(_ connection: PeerConnection, loop: (any TaskExecutor)?) async {
        let runner = AttemptRunner(registry: configuration.registry, processes: processes)
        let draining = self.draining
        let logger = self.logger
        let opened = ContinuousClock.now
        let heartbeatInterval = Duration(checkedSeconds: max(0.05, connection.leaseDuration / 3)) ?? .seconds(10)
        var machine = WorkerStateMachine(configuration: .init(
            slots: configuration.slots, minimumPrefetch: configuration.prefetch,
            maximumPrefetch: configuration.maximumPrefetch, heartbeatInterval: heartbeatInterval,
            shutdownGracePeriod: configuration.shutdownGracePeriod))
        // Events: messages from the server, attempts that ended, time passing.
        let (events, eventSink) = AsyncStream.makeStream(of: WorkerEvent.self)
        connection.handlePushes { push in
            if let push { eventSink.yield(.server(push)) } else { eventSink.finish() }
        }
        await withTaskGroup(of: Void.self) { group in
            // The clock: ticks for heartbeats, held-back reports and a drain's progress.
            group.addTask {
                let period = min(heartbeatInterval, .milliseconds(100))
                while connection.isOpen, !Task.isCancelled {
                    try? await Task.sleep(for: period)
                    eventSink.yield(.tick)
                }
            }
            var attempts: [LeaseID: Task<Void, Never>] = [:]
            var actions = machine.connected(now: .zero)
            func perform(_ actions: [WorkerAction]) {
                for action in actions {
                    switch action {
                    case .send(let message):
                        if case .release(let leaseIDs) = message {
                            logger.debug("handing back unfinished tasks", metadata: ["count": "\(leaseIDs.count)"])
                        }
                        connection.send(message)
                    case .start(let assignment, let inline):
                        // An unstructured task so that an abort can cancel this attempt alone; each
                        // is awaited before the connection is given up, so none outlives the worker.
                        let attempt: @Sendable () async -> Void = {
                            let started = ContinuousClock.now
                            let report = await runner.run(assignment)
                            let completion = Completion(
                                leaseID: assignment.leaseID, jobID: assignment.jobID, index: assignment.task.index, report: report)
                            eventSink.yield(.finished(completion, duration: ContinuousClock.now - started))
                        }
                        // A Swift task of microseconds starts on this thread, the connection's event
                        // loop, and, unless it suspends, finishes before it goes on: no other thread
                        // is woken for it. The others start on the shared pool, so that the slots run
                        // side by side and the loop stays free.
                        if inline, #available(macOS 26, *) {
                            attempts[assignment.leaseID] = Task.immediate(executorPreference: loop, operation: attempt)
                        } else {
                            attempts[assignment.leaseID] = Task(operation: attempt)
                        }
                    case .cancel(let leaseIDs):
                        for id in leaseIDs { attempts[id]?.cancel() }
                    case .close:
                        connection.close()
                    }
                }
            }
            perform(actions)
            for await event in events {
                let now = ContinuousClock.now - opened
                // A shutdown takes effect at the next event, not the next tick: no credit is
                // given back and nothing new starts once it has begun.
                if !machine.isDraining, draining.withLockedValue({ $0 }) { perform(machine.drain(now: now)) }
                switch event {
                case .server(.assign(let assignments)):
                    actions = machine.assigned(assignments, now: now)
                case .server(.abort(let leaseIDs)):
                    actions = machine.aborted(leaseIDs, now: now)
                case .server(.handBack(let leaseIDs)):
                    actions = machine.handBack(leaseIDs, now: now)
                case .server(.error(let code, let message)):
                    logger.warning("server reported an error", metadata: ["code": "\(code)", "message": "\(message)"])
                    actions = []
                case .server:
                    actions = []
                case .finished(let completion, let duration):
                    attempts[completion.leaseID] = nil
                    actions = machine.finished(completion, duration: duration, now: now)
                case .tick:
                    actions = machine.tick(now: now)
                }
                perform(actions)
            }
            for attempt in attempts.values { attempt.cancel() }
            for attempt in attempts.values { _ = await attempt.value }
            group.cancelAll()
        }
    }
}
