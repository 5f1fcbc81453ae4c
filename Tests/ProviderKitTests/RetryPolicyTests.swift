import Foundation
import NIOHTTP1
import ProviderKit
import Testing

@Suite struct RetryPolicyTests {
    let policy = RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .seconds(1))

    func answer(_ status: Int, headers: HTTPHeaders = [:], body: String = "") -> RetryPolicy.Outcome {
        .response(RESTResponse(status: status, headers: headers, body: Data(body.utf8)))
    }

    @Test(arguments: [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)])
    func theCeilingDoublesUpToTheCap(attempt: Int, milliseconds: Int) {
        #expect(policy.backoffCeiling(afterAttempt: attempt) == .milliseconds(milliseconds))
    }

    /// The draw picks a point between half and all of the ceiling; draws outside 0..<1 are clamped.
    @Test(arguments: [0.0, 0.25, 0.5, 0.999, -3, 7])
    func theJitterStaysBetweenHalfAndAllOfTheCeiling(draw: Double) throws {
        for attempt in 1...4 {
            let ceiling = policy.backoffCeiling(afterAttempt: attempt)
            let delay = try #require(policy.delay(afterAttempt: attempt, outcome: answer(503), isIdempotent: true, randomUnit: draw))
            #expect(delay >= ceiling / 2 && delay <= ceiling, "attempt \(attempt), draw \(draw): \(delay) of \(ceiling)")
        }
        #expect(policy.delay(afterAttempt: 1, outcome: answer(503), isIdempotent: true, randomUnit: 0) == .milliseconds(50))
        #expect(policy.delay(afterAttempt: 1, outcome: answer(503), isIdempotent: true, randomUnit: 1) == .milliseconds(100))
        #expect(policy.delay(afterAttempt: 2, outcome: answer(503), isIdempotent: true, randomUnit: 0.5) == .milliseconds(150))
    }

    @Test func itStopsAtTheMaximumNumberOfAttempts() {
        #expect(policy.delay(afterAttempt: 4, outcome: answer(429), isIdempotent: true, randomUnit: 0) != nil)
        #expect(policy.delay(afterAttempt: 5, outcome: answer(429), isIdempotent: true, randomUnit: 0) == nil)
        #expect(RetryPolicy.none.delay(afterAttempt: 1, outcome: answer(429), isIdempotent: true, randomUnit: 0) == nil)
        #expect(RetryPolicy(maxAttempts: 0).maxAttempts == 1)
    }

    struct StatusCase: Sendable, CustomTestStringConvertible {
        var status: Int
        var idempotent: Bool
        var retried: Bool
        var testDescription: String { "\(status) \(idempotent ? "idempotent" : "not idempotent") → \(retried ? "retry" : "no retry")" }
    }

    @Test(arguments: [
        StatusCase(status: 429, idempotent: false, retried: true),
        StatusCase(status: 429, idempotent: true, retried: true),
        StatusCase(status: 503, idempotent: false, retried: true),
        StatusCase(status: 500, idempotent: true, retried: true),
        StatusCase(status: 502, idempotent: true, retried: true),
        StatusCase(status: 504, idempotent: true, retried: true),
        StatusCase(status: 500, idempotent: false, retried: false),
        StatusCase(status: 200, idempotent: true, retried: false),
        StatusCase(status: 304, idempotent: true, retried: false),
        StatusCase(status: 400, idempotent: true, retried: false),
        StatusCase(status: 404, idempotent: true, retried: false),
        StatusCase(status: 409, idempotent: true, retried: false),
    ])
    func whichStatusesAreRetried(_ example: StatusCase) {
        #expect(policy.isRetryable(answer(example.status), isIdempotent: example.idempotent) == example.retried)
    }

    @Test func lostConnectionsAreRetriedForIdempotentRequestsOnly() {
        #expect(policy.isRetryable(.connectionFailed, isIdempotent: true))
        #expect(!policy.isRetryable(.connectionFailed, isIdempotent: false))
    }

    @Test func awsThrottlingBodiesAreRecognisedThroughTheHook() {
        let aws = RetryPolicy(isThrottling: RetryPolicy.awsThrottling)
        let throttled = answer(400, body: #"{"__type":"com.amazonaws.ecs#ThrottlingException","message":"Rate exceeded"}"#)
        #expect(aws.isRetryable(throttled, isIdempotent: false))
        #expect(aws.isRetryable(answer(400, body: #"{"code":"RequestLimitExceeded"}"#), isIdempotent: false))
        #expect(!aws.isRetryable(answer(400, body: #"{"__type":"InvalidParameterException","message":"bad"}"#), isIdempotent: true))
        #expect(!aws.isRetryable(answer(400, body: "not json"), isIdempotent: true))
        // Without the hook, the same body is a plain 400.
        #expect(!RetryPolicy().isRetryable(throttled, isIdempotent: true))
    }

    @Test func retryAfterIsHonouredUpToTheCap() {
        let asked = policy.delay(afterAttempt: 1, outcome: answer(429, headers: ["Retry-After": "0"]), isIdempotent: true, randomUnit: 0)
        #expect(asked == .milliseconds(50))
        let longer = RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(10), maxDelay: .seconds(10))
        #expect(longer.delay(afterAttempt: 1, outcome: answer(429, headers: ["Retry-After": "2"]), isIdempotent: true, randomUnit: 0) == .seconds(2))
        #expect(policy.delay(afterAttempt: 1, outcome: answer(429, headers: ["Retry-After": "30"]), isIdempotent: true, randomUnit: 0) == .seconds(1))
    }
}
