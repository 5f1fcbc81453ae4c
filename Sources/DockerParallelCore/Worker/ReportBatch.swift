/// Reports and credit waiting to be sent together.
///
/// A report is sent at once when the worker is about to idle, or when tasks are not short;
/// otherwise reports gather for up to 2 ms or 128 reports, so that a stream of tiny tasks costs
/// the server one frame per batch instead of two per task.
package struct ReportBatch: Sendable {
    private var completions: [Completion] = []
    private var credit = 0
    private var oldest: Duration?

    package static let maximumCount = 128
    package static let maximumDelay = Duration.milliseconds(2)

    package init() {}

    package mutating func add(_ completion: Completion?, credit: Int, now: Duration) {
        if let completion { completions.append(completion) }
        self.credit += credit
        if oldest == nil { oldest = now }
    }

    /// Whether to send now.
    /// - Parameters:
    ///   - idle: No task is waiting to start, so nothing else will come soon.
    ///   - shortTasks: Tasks take under a millisecond on average.
    package func isDue(idle: Bool, shortTasks: Bool, now: Duration) -> Bool {
        guard let oldest else { return false }
        return idle || !shortTasks || completions.count >= Self.maximumCount || now - oldest >= Self.maximumDelay
    }

    package mutating func take() -> (completions: [Completion], credit: Int) {
        defer {
            completions = []
            credit = 0
            oldest = nil
        }
        return (completions, credit)
    }
}

/// How many tasks a worker leases ahead of its free slots: enough to cover about `lookahead`
/// seconds of work at the tasks' average duration, between a minimum and a maximum.
package struct PrefetchPolicy: Sendable {
    package let minimum: Int
    package let maximum: Int
    /// Seconds of work to lease ahead (10 ms).
    package var lookahead = 0.01
    package private(set) var current: Int
    /// The tasks' average duration in seconds, weighted to recent ones; `nil` before the first.
    package private(set) var averageSeconds: Double?

    package init(minimum: Int, maximum: Int) {
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        current = minimum
    }

    /// Back to the minimum, when tasks leased ahead waited behind long ones.
    package mutating func reset() {
        current = minimum
    }

    /// Records a finished task's duration; returns how many more tasks to lease ahead (never
    /// fewer: credit already given is not taken back).
    package mutating func record(_ duration: Duration) -> Int {
        let seconds = duration.inSeconds
        let mean = averageSeconds.map { $0 * 0.9 + seconds * 0.1 } ?? seconds
        averageSeconds = mean
        let wanted = min(maximum, max(minimum, Int(lookahead / max(mean, 1e-6))))
        guard wanted > current else { return 0 }
        defer { current = wanted }
        return wanted - current
    }
}
