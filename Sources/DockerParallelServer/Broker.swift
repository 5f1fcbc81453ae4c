import DockerParallelCore
import DockerParallelWire
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The broker's executor: it feeds events to the ``BrokerStateMachine`` under one lock and
/// performs the actions it returns, writing frames to connections and handing changes to the
/// store's group committer.
///
/// Frames that need no store are written after the lock is released (writing to a channel can
/// call back into the broker); changes are queued while the lock is held, so that the store
/// sees them in the order the events happened.
final class Broker: Sendable {
    typealias Output = (channel: any Channel, frame: Frame)

    /// Work done after the changes before it are stored, with its connections resolved.
    enum AfterWrite {
        /// Read from the connection again (a submit was stored: backpressure on submits).
        case resumeReading(any Channel)
        /// Load spilled tasks' payloads from the store and hand them to the queue.
        case loadPayloads([TaskQueue.Key])
        /// Send a job's attempt log.
        case sendAttempts(jobID: String, index: Int?, channel: any Channel, requestID: UInt32)
        /// Send a job's tasks.
        case sendTasks(jobID: String, channel: any Channel, requestID: UInt32)

        var readsAttempts: Bool {
            switch self {
            case .sendAttempts, .sendTasks: true
            default: false
            }
        }
    }

    /// What one event asks for, with its connections resolved and its messages encoded.
    struct Effects {
        var now: [Output] = []
        var changes: [StoreChange] = []
        var durable: [Output] = []
        var afterWrite: [AfterWrite] = []
    }

    private struct State {
        var machine: BrokerStateMachine
        var channels: [PeerID: any Channel] = [:]
    }

    let configuration: ServerConfiguration
    /// Stores the events' changes in the order the events happened.
    let committer: GroupCommitter
    /// Dispatch and commit latencies.
    let metrics: ServerMetrics
    private let state: NIOLockedValueBox<State>
    private let started = ContinuousClock.now
    private let logger: Logger

    /// Creates a broker.
    /// - Parameters:
    ///   - store: Where changes are kept (`nil`: in memory only).
    ///   - reserve: Space on the store's disk given back when it fills.
    ///   - history: How many servers started on the store before, and when the first did.
    ///   - onStoreFailure: Called when a write fails for another reason than a full disk; the
    ///     server should stop.
    init(
        configuration: ServerConfiguration, queue: TaskQueue, store: (any BrokerStore)?, reserve: StorageReserve? = nil,
        history: (restarts: Int, firstStarted: Double?) = (0, nil), logger: Logger,
        onStoreFailure: @escaping @Sendable (any Error) -> Void
    ) {
        self.configuration = configuration
        self.logger = logger
        var machineConfiguration = BrokerStateMachine.Configuration(
            jobQueueName: configuration.jobQueueName, password: configuration.password,
            leaseDuration: configuration.leaseDuration, isDurable: store != nil,
            wallClockAtStart: Date().timeIntervalSince1970)
        machineConfiguration.restarts = history.restarts
        machineConfiguration.firstStarted = history.firstStarted
        self.state = NIOLockedValueBox(State(machine: BrokerStateMachine(configuration: machineConfiguration, queue: queue)))
        let metrics = ServerMetrics(jobQueueName: configuration.jobQueueName)
        self.metrics = metrics
        self.committer = GroupCommitter(
            store: store, reserve: reserve, writesSmallBatchesOnEventLoop: configuration.writesSmallBatchesOnEventLoop,
            metrics: metrics, onFailure: onStoreFailure)
        committer.onLoaded { [weak self] payloads in self?.loaded(payloads) }
        committer.onStorageChange { [weak self] reason in self?.storageChanged(full: reason) }
        committer.prepareReserve()
        if let reason = committer.storageFullReason { storageChanged(full: reason) }
    }

    /// What the server reports of itself now (for the HTTP side).
    func report() -> ServerReport {
        state.withLockedValue { $0.machine.report(now: now) }
    }

    /// Why the store takes no new jobs now (its disk is full), or `nil`.
    var storageFull: String? {
        state.withLockedValue { $0.machine.storageFull }
    }

    /// The store's disk filled up, or has room again: new jobs are refused meanwhile.
    func storageChanged(full reason: String?) {
        state.withLockedValue { $0.machine.storageChanged(full: reason) }
        if let reason {
            logger.warning(
                "the store's disk is full: taking no new tasks until there is room; the tasks taken run on",
                metadata: ["error": "\(reason)"])
        } else {
            logger.notice("the store's disk has room again: taking new tasks")
        }
    }

    /// The time since the broker started; read under the lock, so that the machine's time
    /// never goes back from one event to the next.
    private var now: Duration { ContinuousClock.now - started }

    // MARK: Events

    /// A connection opened; returns its id.
    func opened(_ channel: any Channel) -> PeerID {
        state.withLockedValue { state in
            let id = state.machine.connectionOpened()
            state.channels[id] = channel
            return id
        }
    }

    /// A message arrived on a connection.
    func received(_ message: ClientMessage, requestID: UInt32, from peer: PeerID) {
        event { $0.received(message, requestID: requestID, from: peer, now: self.now) }
    }

    /// A connection sent something unreadable: it is told why and closed.
    func unreadable(from peer: PeerID, requestID: UInt32, code: DockerParallelError.Code, message: String) {
        event { $0.unreadable(from: peer, requestID: requestID, code: code, message: message) }
    }

    /// A connection closed.
    func closed(_ peer: PeerID) {
        event { $0.connectionClosed(peer, now: self.now) }
        state.withLockedValue { _ = $0.channels.removeValue(forKey: peer) }
    }

    /// Takes back expired leases.
    func expireLeases() {
        event { $0.expireLeases(now: self.now) }
    }

    /// Hands payloads loaded from the store to the queue and dispatches them.
    func loaded(_ payloads: [(key: TaskQueue.Key, spec: TaskSpec?)]) {
        event { $0.loaded(payloads, now: self.now) }
    }

    /// Runs one event under the lock and performs its actions.
    private func event(_ body: (inout BrokerStateMachine) -> BrokerActions) {
        let (now, pause, close, immediate, waits) = state.withLockedValue { state in
            let actions = body(&state.machine)
            log(actions, machine: state.machine)
            let effects = Effects(
                now: actions.now.compactMap { Self.resolve($0, in: state.channels) },
                changes: actions.changes,
                durable: actions.durable.compactMap { Self.resolve($0, in: state.channels) },
                afterWrite: actions.afterWrite.compactMap { Self.resolve($0, in: state.channels) })
            return (
                effects.now, actions.pauseReading.compactMap { state.channels[$0] },
                actions.close.compactMap { state.channels[$0] }, committer.enqueue(effects),
                state.machine.takeDispatchWaits())
        }
        metrics.recordDispatchWaits(waits)
        for channel in pause { Self.pauseReading(channel) }
        if close.isEmpty {
            GroupCommitter.perform(now)
        } else {
            // A refused connection is closed once its last frame is written.
            let closing = Set(close.map(ObjectIdentifier.init))
            GroupCommitter.perform(now.filter { !closing.contains(ObjectIdentifier($0.channel)) })
            for channel in close {
                Self.write(now.filter { $0.channel === channel }.map(\.frame), thenClose: channel)
            }
        }
        committer.perform(immediate)
    }

    // MARK: Performing actions

    /// Logs connections accepted and refused (at debug; never the password).
    private func log(_ actions: BrokerActions, machine: BrokerStateMachine) {
        guard logger.logLevel <= .debug else { return }
        for output in actions.now {
            switch output.message {
            case .welcome:
                let peer = machine.peer(output.peer)
                logger.debug("peer connected", metadata: [
                    "peer": "\(output.peer)", "role": "\(peer?.role.rawValue ?? "?")", "name": "\(peer?.name ?? "?")",
                ])
            case .error(let code, let message) where actions.close.contains(output.peer):
                logger.debug("refused a connection", metadata: ["peer": "\(output.peer)", "code": "\(code)", "reason": "\(message)"])
            default:
                break
            }
        }
    }

    private static func resolve(_ output: BrokerActions.Output, in channels: [PeerID: any Channel]) -> Output? {
        guard let channel = channels[output.peer] else { return nil }
        return (channel, frame(output.message, requestID: output.requestID))
    }

    private static func resolve(_ work: BrokerActions.Deferred, in channels: [PeerID: any Channel]) -> AfterWrite? {
        switch work {
        case .resumeReading(let peer): channels[peer].map { .resumeReading($0) }
        case .loadPayloads(let keys): .loadPayloads(keys)
        case .sendAttempts(let jobID, let index, let peer, let requestID):
            channels[peer].map { .sendAttempts(jobID: jobID, index: index, channel: $0, requestID: requestID) }
        case .sendTasks(let jobID, let peer, let requestID):
            channels[peer].map { .sendTasks(jobID: jobID, channel: $0, requestID: requestID) }
        }
    }

    /// Stops reading from a connection until its submit is stored (backpressure on submits).
    private static func pauseReading(_ channel: any Channel) {
        if channel.eventLoop.inEventLoop, let options = channel.syncOptions {
            try? options.setOption(ChannelOptions.autoRead, value: false)
        } else {
            channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }

    /// Writes frames to a connection, then closes it.
    private static func write(_ frames: [Frame], thenClose channel: any Channel) {
        let write = {
            for frame in frames.dropLast() { channel.write(frame, promise: nil) }
            guard let last = frames.last else { return channel.close(promise: nil) }
            channel.writeAndFlush(last).whenComplete { _ in channel.close(promise: nil) }
        }
        if channel.eventLoop.inEventLoop { write() } else { channel.eventLoop.execute(write) }
    }

    static func frame(_ message: ServerMessage, requestID: UInt32) -> Frame {
        Frame(requestID: requestID, body: (try? MessageCoding.encode(message)) ?? ByteBuffer())
    }
}
