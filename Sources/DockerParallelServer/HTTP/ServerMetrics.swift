import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus

/// The server's latency measurements: swift-metrics timers on a Prometheus registry of the
/// server's own (never the process-wide metrics system, which a program embedding several
/// servers, or none, bootstraps as it likes).
///
/// - Dispatch latency: how long a task waited for a worker, from when it became ready
///   (submitted, retried or handed back) to its lease.
/// - Commit latency: how long a change waited to be durable, from when it reached the store's
///   writer to the end of the transaction that wrote it (the oldest change of each batch).
///
/// Besides the histograms, each second's mean of both is kept for the dashboard's chart.
final class ServerMetrics: Sendable {
    /// The Prometheus names of the two histograms.
    static let dispatchLatencyName = "dockerparallel_dispatch_latency_seconds"
    static let commitLatencyName = "dockerparallel_commit_latency_seconds"

    /// Bucket bounds: from 50 µs (a dispatch to an idle worker, a small commit) to 10 minutes
    /// (a task behind a long queue).
    static let dispatchBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
        .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(600),
    ]
    static let commitBuckets: [Duration] = [
        .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    private let registry = PrometheusCollectorRegistry()
    private let dispatchLatency: CoreMetrics.Timer
    private let commitLatency: CoreMetrics.Timer
    /// Sums and counts since the last ``takeWindow()``, in seconds.
    private let window = NIOLockedValueBox(Window())

    private struct Window {
        var dispatchSum = 0.0
        var dispatchCount = 0
        var commitSum = 0.0
        var commitCount = 0
    }

    /// Creates the measurements of one server, labelled with its job queue name.
    init(jobQueueName: String) {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            Self.dispatchLatencyName: Self.dispatchBuckets, Self.commitLatencyName: Self.commitBuckets,
        ]
        let dimensions = [("queue", jobQueueName)]
        dispatchLatency = CoreMetrics.Timer(label: Self.dispatchLatencyName, dimensions: dimensions, factory: factory)
        commitLatency = CoreMetrics.Timer(label: Self.commitLatencyName, dimensions: dimensions, factory: factory)
    }

    /// Records how long tasks waited for their workers, in seconds.
    func recordDispatchWaits(_ waits: [Double]) {
        guard !waits.isEmpty else { return }
        for wait in waits { dispatchLatency.recordNanoseconds(Int64(exactly: (wait * 1e9).rounded()) ?? 0) }
        let sum = waits.reduce(0, +)
        window.withLockedValue {
            $0.dispatchSum += sum
            $0.dispatchCount += waits.count
        }
    }

    /// Records how long a batch's oldest change waited to be durable.
    func recordCommit(nanoseconds: UInt64) {
        commitLatency.recordNanoseconds(Int64(clamping: nanoseconds))
        window.withLockedValue {
            $0.commitSum += Double(nanoseconds) / 1e9
            $0.commitCount += 1
        }
    }

    /// The means of the dispatch and commit latencies since the last call, in seconds (`nil`
    /// where nothing was measured), and starts a new window.
    func takeWindow() -> (dispatch: Double?, commit: Double?) {
        window.withLockedValue { window in
            defer { window = Window() }
            return (
                window.dispatchCount == 0 ? nil : window.dispatchSum / Double(window.dispatchCount),
                window.commitCount == 0 ? nil : window.commitSum / Double(window.commitCount))
        }
    }

    /// The histograms in the Prometheus text format.
    func prometheusText() -> String {
        registry.emitToString()
    }
}
