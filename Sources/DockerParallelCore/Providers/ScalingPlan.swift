/// Which worker containers to start and which to stop so that a cluster has the wanted number of
/// worker slots: a pure decision, shared by every provider's `setWorkerNumber`.
///
/// The rules:
/// - Scaling up starts containers of at most `slotsPerContainer` slots each, full ones first.
/// - Scaling down stops idle containers before those of unknown activity, and those before busy
///   ones; among equals, the newest first.
/// - It never stops a container whose slots exceed what is left of the excess, so it never
///   stops more workers than asked (a cluster may keep a few more than wanted instead).
/// - It never both starts and stops.
///
/// ```swift
/// let plan = ScalingPlan(current: containers, slotsPerContainer: 2, wantedWorkers: 5)
/// for slots in plan.sizesToStart { try await startContainer(slots: slots) }
/// for id in plan.idsToStop { try await stopContainer(id) }
/// ```
public struct ScalingPlan: Sendable, Equatable {
    /// One running or starting worker container, as the provider sees it.
    public struct Container: Sendable, Equatable {
        /// What the container holds.
        public enum Activity: Int, Sendable, Comparable {
            /// It runs no task (or cannot yet: it has not connected).
            case idle
            /// The provider cannot tell.
            case unknown
            /// It runs tasks now.
            case busy

            /// Idle first, busy last: the order in which containers are stopped.
            public static func < (lhs: Activity, rhs: Activity) -> Bool { lhs.rawValue < rhs.rawValue }
        }

        /// The provider's identifier of the container (a container id, a process number).
        public var id: String
        /// The worker slots it runs.
        public var slots: Int
        /// When it was created, in any increasing order (a creation time, a sequence number):
        /// a larger value is newer.
        public var order: Int64
        /// What it holds, when the provider knows.
        public var activity: Activity

        /// Creates a container description.
        /// - Parameters:
        ///   - id: The provider's identifier.
        ///   - slots: The worker slots it runs.
        ///   - order: A larger value for a newer container.
        ///   - activity: Whether it is busy (default `.unknown`).
        public init(id: String, slots: Int, order: Int64, activity: Activity = .unknown) {
            self.id = id
            self.slots = slots
            self.order = order
            self.activity = activity
        }
    }

    /// The slots of each container to start.
    public var sizesToStart: [Int]
    /// The identifiers of the containers to stop, in the order they were chosen.
    public var idsToStop: [String]

    /// Decides what to start and stop.
    /// - Parameters:
    ///   - current: The worker containers running or starting now (not the dead ones).
    ///   - slotsPerContainer: The most slots one container runs (values below 1 count as 1).
    ///   - wantedWorkers: The worker slots wanted (values below 0 count as 0).
    public init(current: [Container], slotsPerContainer: Int, wantedWorkers: Int) {
        let perContainer = max(1, slotsPerContainer)
        let wanted = max(0, wantedWorkers)
        var total = current.reduce(0) { $0 + max(0, $1.slots) }
        sizesToStart = []
        idsToStop = []
        while total < wanted {
            let slots = min(perContainer, wanted - total)
            sizesToStart.append(slots)
            total += slots
        }
        let candidates = current.sorted { lhs, rhs in
            if lhs.activity != rhs.activity { return lhs.activity < rhs.activity }
            if lhs.order != rhs.order { return lhs.order > rhs.order }
            return lhs.id > rhs.id
        }
        for container in candidates where total > wanted && container.slots <= total - wanted {
            idsToStop.append(container.id)
            total -= max(0, container.slots)
        }
    }

    /// What a container holds, from ``ClusterContext/workerActivity``: `.unknown` without a
    /// report, `.busy` when the worker named `name` runs tasks, else `.idle` (connected and
    /// waiting, or not connected yet).
    public static func activity(of name: String, in report: [String: Int]?) -> Container.Activity {
        guard let report else { return .unknown }
        return (report[name] ?? 0) > 0 ? .busy : .idle
    }

    /// Whether there is nothing to do.
    public var isEmpty: Bool { sizesToStart.isEmpty && idsToStop.isEmpty }
}
