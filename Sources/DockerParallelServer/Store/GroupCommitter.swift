import Dispatch
import NIOConcurrencyHelpers
import NIOCore

/// Writes the broker's changes to its store in batches, then performs what had to wait for them
/// (submit acknowledgements, results shown to clients), in the order they were enqueued.
///
/// One serial queue writes; while it writes, new changes gather into the next batch.
final class GroupCommitter: Sendable {
    private struct Pending {
        var changes: [StoreChange] = []
        var outputs: [Broker.Output] = []
        var draining = false
    }

    private let store: (any BrokerStore)?
    private let pending = NIOLockedValueBox(Pending())
    private let queue = DispatchQueue(label: "dockerparallel.group-commit")
    private let onFailure: @Sendable (any Error) -> Void

    /// Creates a committer; with no store, outputs are performed at once.
    init(store: (any BrokerStore)?, onFailure: @escaping @Sendable (any Error) -> Void) {
        self.store = store
        self.onFailure = onFailure
    }

    /// Stores `changes`, then writes `outputs`.
    func commit(_ changes: [StoreChange], then outputs: [Broker.Output]) {
        guard store != nil else {
            Self.perform(outputs)
            return
        }
        enum Action { case performNow, startDrain, queued }
        let action = pending.withLockedValue { pending -> Action in
            // Nothing to store and nothing waiting: no reason to wait (and order is kept).
            if changes.isEmpty && !pending.draining { return .performNow }
            pending.changes += changes
            pending.outputs += outputs
            if pending.draining { return .queued }
            pending.draining = true
            return .startDrain
        }
        switch action {
        case .performNow: Self.perform(outputs)
        case .startDrain: queue.async { self.drain() }
        case .queued: break
        }
    }

    /// Performs a broker event's effects.
    func apply(_ effects: Broker.Effects) {
        Self.perform(effects.now)
        commit(effects.changes, then: effects.durable)
    }

    private func drain() {
        while true {
            let batch = pending.withLockedValue { pending -> ([StoreChange], [Broker.Output])? in
                if pending.changes.isEmpty && pending.outputs.isEmpty {
                    pending.draining = false
                    return nil
                }
                defer {
                    pending.changes = []
                    pending.outputs = []
                }
                return (pending.changes, pending.outputs)
            }
            guard let (changes, outputs) = batch else { return }
            do {
                try store?.write(changes)
                Self.perform(outputs)
            } catch {
                // Nothing is acknowledged that is not durable: the waiting peers get no answer
                // and the server stops, so that a restart resumes from what was stored.
                onFailure(error)
            }
        }
    }

    static func perform(_ outputs: [Broker.Output]) {
        guard !outputs.isEmpty else { return }
        for output in outputs { output.channel.write(output.frame, promise: nil) }
        var flushed = Set<ObjectIdentifier>()
        for output in outputs where flushed.insert(ObjectIdentifier(output.channel)).inserted {
            output.channel.flush()
        }
    }
}
