import Foundation

/// An AWS access key, its secret and, for temporary credentials, a session token and expiry.
///
/// Printing, interpolating or dumping it shows the key ID only: the secret and the token never
/// reach a message or a log.
package struct AWSCredentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The access key ID (`AKIA…` for long-term keys, `ASIA…` for temporary ones).
    package var accessKeyID: String
    /// The secret access key. Never printed.
    package var secretAccessKey: String
    /// The session token of temporary credentials. Never printed.
    package var sessionToken: String?
    /// When temporary credentials stop working; `nil` for long-term keys.
    package var expiration: Date?

    /// Creates credentials.
    /// - Parameters:
    ///   - accessKeyID: The access key ID.
    ///   - secretAccessKey: The secret access key.
    ///   - sessionToken: The session token, for temporary credentials.
    ///   - expiration: When temporary credentials expire.
    package init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    /// Whether these credentials should be replaced at `now`: they expire within `margin`.
    /// Credentials without an expiry never need it.
    package func needsRefresh(at now: Date, margin: Duration) -> Bool {
        guard let expiration else { return false }
        return expiration.timeIntervalSince(now) <= Self.seconds(margin)
    }

    /// Whether these credentials have expired at `now`.
    package func isExpired(at now: Date) -> Bool {
        guard let expiration else { return false }
        return expiration <= now
    }

    /// The key ID, whether there is a session token and the expiry; never the secret or the token.
    package var description: String {
        var text = "AWSCredentials(accessKeyID: \(accessKeyID), secretAccessKey: <redacted>"
        if sessionToken != nil { text += ", sessionToken: <redacted>" }
        if let expiration { text += ", expiration: \(expiration)" }
        return text + ")"
    }

    /// The same as ``description``.
    package var debugDescription: String { description }

    /// A mirror without the secret or the token, for `dump` and debuggers.
    package var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "accessKeyID": accessKeyID, "secretAccessKey": "<redacted>",
                "sessionToken": sessionToken == nil ? "nil" : "<redacted>", "expiration": expiration as Any,
            ], displayStyle: .struct)
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// No source of the AWS credential chain gave credentials: what each source said, in order.
package struct AWSCredentialsError: Error, Sendable, CustomStringConvertible {
    /// One source tried and why it gave nothing.
    package struct Attempt: Sendable, Equatable {
        /// The source ("environment", "shared files", "container endpoint", "instance metadata").
        package var source: String
        /// Why it gave nothing.
        package var reason: String

        /// Records an attempt.
        package init(source: String, reason: String) {
            self.source = source
            self.reason = reason
        }
    }

    /// The sources tried, in order.
    package var attempts: [Attempt]

    /// Creates an error from the attempts made.
    package init(attempts: [Attempt]) {
        self.attempts = attempts
    }

    /// Every source and its reason, then how to provide credentials.
    package var description: String {
        "no AWS credentials found ("
            + attempts.map { "\($0.source): \($0.reason)" }.joined(separator: "; ")
            + "). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys), "
            + "or run `aws configure`, or set AWS_PROFILE to a profile with keys in ~/.aws/credentials."
    }
}
