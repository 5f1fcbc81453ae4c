import DockerParallelCore
import DockerParallelWire
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

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
                await serve(connection)
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
        while true {
            do {
                return try await PeerConnection.connect(to: configuration.server, hello: hello)
            } catch let error as DockerParallelError where error.code == .authenticationFailed || error.code == .protocolViolation {
                throw error
            } catch {
                let waited = ContinuousClock.now - start
                if waited > .milliseconds(Int64(configuration.reconnectTimeout * 1000)) || draining.withLockedValue({ $0 }) {
                    throw DockerParallelError(
                        .connectionFailed,
                        "the server at \(configuration.server) could not be reached for \(configuration.reconnectTimeout) s",
                        underlying: error)
                }
                logger.debug("server not reachable, retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
                delay = min(delay * 2, 2)
            }
        }
    }

    /// Serves one connection until it closes, or until a drain completes.
    private func serve(_ connection: PeerConnection) async {
        let running = NIOLockedValueBox<Set<UInt64>>([])
        let executor = TaskExecutor(registry: configuration.registry)
        let heartbeatInterval = max(0.05, connection.leaseDuration / 3)
        let grace = configuration.shutdownGracePeriod
        let draining = self.draining
        let logger = self.logger
        let slots = configuration.slots
        connection.send(.credit(count: slots + configuration.prefetch))

        await withTaskGroup(of: Void.self) { group in
            // Heartbeats, and the drain on shutdown.
            group.addTask {
                var drainStarted: ContinuousClock.Instant?
                var lastHeartbeat = ContinuousClock.now
                while connection.isOpen, !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(Int64(min(heartbeatInterval, 0.1) * 1000)))
                    let leases = running.withLockedValue { Array($0) }
                    if draining.withLockedValue({ $0 }) {
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
            var active = 0
            for await push in connection.pushes {
                switch push {
                case .assign(let assignments):
                    if draining.withLockedValue({ $0 }) {
                        connection.send(.release(leaseIDs: assignments.map(\.leaseID)))
                        continue
                    }
                    running.withLockedValue { $0.formUnion(assignments.map(\.leaseID)) }
                    for assignment in assignments {
                        // Prefetched assignments wait here for a free slot.
                        while active >= slots, await group.next() != nil { active -= 1 }
                        active += 1
                        group.addTask {
                            let report = await executor.run(assignment)
                            guard running.withLockedValue({ $0.remove(assignment.leaseID) != nil }) else { return }
                            connection.send(.complete(
                                leaseID: assignment.leaseID, jobID: assignment.jobID, index: assignment.task.index, report: report))
                            if !draining.withLockedValue({ $0 }) { connection.send(.credit(count: 1)) }
                        }
                    }
                case .error(let code, let message):
                    logger.warning("server reported an error", metadata: ["code": "\(code)", "message": "\(message)"])
                default:
                    break
                }
            }
            // The connection is gone: tasks still running were taken back by the server.
            running.withLockedValue { $0.removeAll() }
            group.cancelAll()
        }
    }
}
