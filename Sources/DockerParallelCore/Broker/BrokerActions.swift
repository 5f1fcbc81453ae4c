/// A connection's identity inside the broker.
package struct PeerID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The number the broker gave the connection, in the order connections opened.
    package var rawValue: UInt64

    /// Creates an id.
    package init(_ rawValue: UInt64) { self.rawValue = rawValue }

    package var description: String { "peer-\(rawValue)" }

    package static func < (left: PeerID, right: PeerID) -> Bool { left.rawValue < right.rawValue }

    /// The id of the worker on this connection, as the task queue knows it.
    package var worker: WorkerID { WorkerID(rawValue) }
}

/// What one event of the broker's state machine asks its executor to do.
///
/// Frames in ``now`` are written at once; ``changes`` go to the store in the order the events
/// happened; ``durable`` frames and ``afterWrite`` work wait until those changes are stored
/// (acknowledgements and results are never shown before they are durable).
package struct BrokerActions: Sendable, Equatable {
    /// A message for one peer, as the reply to `requestID` (0 for pushes).
    package struct Output: Sendable, Equatable {
        package var peer: PeerID
        package var requestID: UInt32
        package var message: ServerMessage

        package init(peer: PeerID, requestID: UInt32, message: ServerMessage) {
            self.peer = peer
            self.requestID = requestID
            self.message = message
        }
    }

    /// Work done once the changes before it are stored.
    package enum Deferred: Sendable, Equatable {
        /// Read from the peer's connection again (its submit is stored: backpressure).
        case resumeReading(PeerID)
        /// Load spilled tasks' payloads from the store and hand them back with `loaded`.
        case loadPayloads([TaskQueue.Key])
        /// Send a job's attempt log, read from the store, to a peer.
        case sendAttempts(jobID: String, index: Int?, peer: PeerID, requestID: UInt32)
        /// Send a job's tasks, read from the store, to a peer.
        case sendTasks(jobID: String, peer: PeerID, requestID: UInt32)

        /// Whether the work reads what the store holds (everything before it must be written).
        package var readsAttempts: Bool {
            switch self {
            case .sendAttempts, .sendTasks: true
            default: false
            }
        }
    }

    /// Messages to write now.
    package var now: [Output] = []
    /// Connections to stop reading from now (a durable submit holds its connection until stored).
    package var pauseReading: [PeerID] = []
    /// Connections to close once ``now`` is written (a refused hello, an unreadable frame).
    package var close: [PeerID] = []
    /// Changes to store.
    package var changes: [StoreChange] = []
    /// Messages to write once ``changes`` (and everything before them) are stored.
    package var durable: [Output] = []
    /// Work to do once ``changes`` are stored.
    package var afterWrite: [Deferred] = []

    package init(
        now: [Output] = [], pauseReading: [PeerID] = [], close: [PeerID] = [], changes: [StoreChange] = [],
        durable: [Output] = [], afterWrite: [Deferred] = []
    ) {
        self.now = now
        self.pauseReading = pauseReading
        self.close = close
        self.changes = changes
        self.durable = durable
        self.afterWrite = afterWrite
    }

    package static func + (left: BrokerActions, right: BrokerActions) -> BrokerActions {
        var sum = left
        sum += right
        return sum
    }

    /// Appends in place.
    package static func += (left: inout BrokerActions, right: BrokerActions) {
        left.now += right.now
        left.pauseReading += right.pauseReading
        left.close += right.close
        left.changes += right.changes
        left.durable += right.durable
        left.afterWrite += right.afterWrite
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    package var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }

    /// A duration of `seconds`, or `nil` when that is not a finite number a `Duration` holds
    /// (hostile input must not crash a decoder).
    package init?(checkedSeconds seconds: Double) {
        guard seconds.isFinite, abs(seconds) < 1e15 else { return nil }
        self = .seconds(seconds)
    }
}
