import Foundation
import NIOHTTP1

/// Whether to send a failed request again and after how long: jittered exponential backoff with a
/// cap and a maximum number of attempts. A pure value: the random draw is passed in.
///
/// It retries
/// - throttling (429, and whatever ``isThrottling`` recognises, such as an AWS
///   `ThrottlingException` body) and 503, for every request: the platform did not act on it;
/// - other 5xx answers and lost connections, for idempotent requests only.
///
/// The delay before attempt `n + 1` is drawn between half and all of
/// `min(maxDelay, baseDelay * 2^(n-1))` ("equal jitter"), and is at least what a `Retry-After`
/// header asks, up to `maxDelay`.
package struct RetryPolicy: Sendable {
    /// Attempts in all, the first included (1 means no retry).
    package var maxAttempts: Int
    /// The backoff before the second attempt (before jitter).
    package var baseDelay: Duration
    /// The most any backoff grows to.
    package var maxDelay: Duration
    /// Recognises a platform's own way of saying "slow down" in an answer that is not a 429.
    package var isThrottling: @Sendable (RESTResponse) -> Bool

    /// Creates a policy.
    /// - Parameters:
    ///   - maxAttempts: Default 4.
    ///   - baseDelay: Default 100 ms.
    ///   - maxDelay: Default 5 s.
    ///   - isThrottling: Default: nothing but 429 is throttling.
    package init(
        maxAttempts: Int = 4, baseDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(5),
        isThrottling: @escaping @Sendable (RESTResponse) -> Bool = { _ in false }
    ) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.isThrottling = isThrottling
    }

    /// Never retries.
    package static let none = RetryPolicy(maxAttempts: 1)

    /// What an attempt ended with.
    package enum Outcome: Sendable {
        /// The platform answered.
        case response(RESTResponse)
        /// No answer came (no connection, a lost one, a timeout).
        case connectionFailed
    }

    /// Whether an outcome is worth another attempt, regardless of how many were made.
    /// - Parameters:
    ///   - outcome: What the attempt ended with.
    ///   - isIdempotent: Whether sending the request twice does no more than once.
    package func isRetryable(_ outcome: Outcome, isIdempotent: Bool) -> Bool {
        switch outcome {
        case .connectionFailed:
            return isIdempotent
        case .response(let response):
            if response.status == 429 || response.status == 503 || isThrottling(response) { return true }
            return (500..<600).contains(response.status) && isIdempotent
        }
    }

    /// The delay before the next attempt, or `nil` when the request should not be sent again.
    /// - Parameters:
    ///   - attempt: The attempt that just ended, from 1.
    ///   - outcome: What it ended with.
    ///   - isIdempotent: Whether sending the request twice does no more than once.
    ///   - randomUnit: A random draw in `0..<1` (values outside are clamped).
    package func delay(afterAttempt attempt: Int, outcome: Outcome, isIdempotent: Bool, randomUnit: Double) -> Duration? {
        guard attempt < maxAttempts, isRetryable(outcome, isIdempotent: isIdempotent) else { return nil }
        let ceiling = backoffCeiling(afterAttempt: attempt)
        var delay = ceiling * 0.5 + ceiling * (0.5 * min(max(randomUnit, 0), 1))
        if case .response(let response) = outcome, let asked = Self.retryAfter(response.headers) {
            delay = max(delay, min(asked, maxDelay))
        }
        return delay
    }

    /// The largest delay after an attempt, before jitter: `min(maxDelay, baseDelay * 2^(attempt-1))`.
    package func backoffCeiling(afterAttempt attempt: Int) -> Duration {
        let doublings = min(max(attempt - 1, 0), 30)
        let grown = baseDelay * (1 << doublings)
        return min(grown, maxDelay)
    }

    /// A `Retry-After` header in seconds (the HTTP-date form is not used by the platforms here).
    static func retryAfter(_ headers: HTTPHeaders) -> Duration? {
        guard let text = headers.first(name: "Retry-After"), let seconds = Int(text.trimmingCharacters(in: .whitespaces)),
              seconds >= 0 else { return nil }
        return .seconds(seconds)
    }
}

extension RetryPolicy {
    /// Recognises AWS's throttling answers, which come as 400 with a JSON body whose `__type` or
    /// `code` names the exception (`ThrottlingException`, `Throttling`, `RequestLimitExceeded`, …).
    package static let awsThrottling: @Sendable (RESTResponse) -> Bool = { response in
        guard response.status == 400 || response.status == 429 else { return false }
        let names = ["ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "ThrottledException"]
        guard let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any] else { return false }
        let type = ((object["__type"] ?? object["code"] ?? object["Code"]) as? String) ?? ""
        // `__type` may be namespaced: "com.amazonaws.ecs#ThrottlingException".
        let name = type.split(separator: "#").last.map(String.init) ?? type
        return names.contains(name)
    }
}
