import Foundation
import NIOConcurrencyHelpers

/// The tasks the server had finished and its mean latencies, sampled once a second for the last
/// five minutes, so that a dashboard opened now draws what came before it.
final class ThroughputHistory: Sendable {
    /// Samples kept.
    static let capacity = 300

    private let samples = NIOLockedValueBox<[[Double?]]>([])

    /// Records the number of tasks finished by now, with the mean dispatch and commit latencies
    /// of the last second in seconds (`nil` where nothing was measured).
    func record(finished: Int, dispatch: Double? = nil, commit: Double? = nil, at time: Double = Date().timeIntervalSince1970) {
        samples.withLockedValue { samples in
            samples.append([time, Double(finished), dispatch, commit])
            if samples.count > Self.capacity { samples.removeFirst(samples.count - Self.capacity) }
        }
    }

    /// The samples, oldest first, as `[time, finished, dispatch latency, commit latency]`.
    var all: [[Double?]] { samples.withLockedValue { $0 } }
}
