/// A condition that did not hold in time.
public struct WaitTimedOut: Error, Sendable, CustomStringConvertible {
    /// What was waited for.
    public var what: String
    /// The seconds waited.
    public var timeout: Double

    public var description: String { "timed out after \(timeout) s waiting until \(what)" }
}

/// Waits until `condition` holds, checking it every `interval` seconds.
///
/// For tests of clusters, where state changes in other processes: wait on what a user would
/// notice, with a deadline, instead of sleeping for a guessed time.
/// - Parameters:
///   - what: Describes the condition, for the error.
///   - timeout: Seconds before giving up (default 30).
///   - interval: Seconds between checks (default 0.02).
/// - Throws: ``WaitTimedOut`` when the deadline passes; whatever `condition` throws.
public func waitUntil(
    _ what: String, timeout: Double = 30, interval: Double = 0.02, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw WaitTimedOut(what: what, timeout: timeout) }
        try await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
    }
}

/// Waits until `value` returns something, checking every `interval` seconds, and returns it.
/// - Throws: ``WaitTimedOut`` naming `what` when `timeout` seconds pass first.
public func waitUntil<Value>(
    _ what: String, timeout: Double = 30, interval: Double = 0.02, _ value: () async throws -> Value?
) async throws -> Value {
    let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
    while true {
        if let found = try await value() { return found }
        guard ContinuousClock.now < deadline else { throw WaitTimedOut(what: what, timeout: timeout) }
        try await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
    }
}
