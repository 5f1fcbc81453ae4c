import Foundation
import NIOConcurrencyHelpers

/// The tasks the server had finished, sampled once a second for the last five minutes, so that a
/// dashboard opened now draws the throughput that came before it.
final class ThroughputHistory: Sendable {
    /// Samples kept.
    static let capacity = 300

    private let samples = NIOLockedValueBox<[[Double]]>([])

    /// Records the number of tasks finished by now (seconds since 1970, count).
    func record(finished: Int, at time: Double = Date().timeIntervalSince1970) {
        samples.withLockedValue { samples in
            samples.append([time, Double(finished)])
            if samples.count > Self.capacity { samples.removeFirst(samples.count - Self.capacity) }
        }
    }

    /// The samples, oldest first, as `[time, finished]` pairs.
    var all: [[Double]] { samples.withLockedValue { $0 } }
}
