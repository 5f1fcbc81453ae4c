import Foundation
import Logging

/// Finds AWS credentials where the AWS CLI finds them, and keeps them fresh.
///
/// The sources, in order:
/// 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
/// 2. the shared files: the profile `AWS_PROFILE` names (else `default`) in
///    `~/.aws/credentials` (`[name]`) and `~/.aws/config` (`[profile name]`), or the files
///    `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name;
/// 3. the ECS container credentials endpoint: `http://169.254.170.2` plus
///    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or `AWS_CONTAINER_CREDENTIALS_FULL_URI` with
///    `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or `…_TOKEN_FILE`);
/// 4. EC2 instance metadata (IMDSv2), unless `AWS_EC2_METADATA_DISABLED=true`; at
///    `AWS_EC2_METADATA_SERVICE_ENDPOINT` when set, answering within 1 s or skipped.
///
/// A source that is configured but broken (a key without its secret, a profile `AWS_PROFILE`
/// names that does not exist, a container endpoint that fails) stops the search with an error,
/// rather than quietly using credentials from further down. Credentials that expire are
/// fetched again 5 minutes before they do; concurrent callers share one fetch.
package actor AWSCredentialChain {
    /// Makes the transport for an endpoint's base URL (`http://169.254.170.2`); tests answer
    /// from recorded exchanges or a loopback server.
    package typealias TransportFactory = @Sendable (_ baseURL: String) -> any HTTPTransport

    /// Where the chain looks and how long it waits.
    package struct Configuration: Sendable {
        /// The environment the chain reads (the CLI passes the process's).
        package var environment: [String: String]
        /// The directory `~` stands for in the shared files' paths (default the environment's `HOME`).
        package var homeDirectory: String?
        /// How long instance metadata may take to answer each request before it is skipped.
        package var metadataTimeout: Duration
        /// How long the container credentials endpoint may take to answer, per attempt.
        package var containerTimeout: Duration
        /// How long before their expiry credentials are fetched again.
        package var refreshMargin: Duration

        /// Creates a configuration.
        /// - Parameters:
        ///   - environment: The environment to read.
        ///   - homeDirectory: Default the environment's `HOME`.
        ///   - metadataTimeout: Default 1 s, so a machine outside EC2 gives up at once.
        ///   - containerTimeout: Default 2 s (three attempts).
        ///   - refreshMargin: Default 5 minutes.
        package init(
            environment: [String: String], homeDirectory: String? = nil, metadataTimeout: Duration = .seconds(1),
            containerTimeout: Duration = .seconds(2), refreshMargin: Duration = .seconds(300)
        ) {
            self.environment = environment
            self.homeDirectory = homeDirectory
            self.metadataTimeout = metadataTimeout
            self.containerTimeout = containerTimeout
            self.refreshMargin = refreshMargin
        }
    }

    /// Where the chain looks and how long it waits.
    package nonisolated let configuration: Configuration
    private let makeTransport: TransportFactory
    private let now: @Sendable () -> Date
    private let logger: Logger?
    private var cached: Resolved?
    private var refreshing: Task<Resolved, any Error>?
    private var nextAttempt: Date?

    /// Credentials and the source that gave them.
    struct Resolved: Sendable {
        var credentials: AWSCredentials
        var source: String
    }

    /// Creates a chain; nothing is read until ``credentials()`` is called.
    /// - Parameters:
    ///   - configuration: The environment and timeouts.
    ///   - makeTransport: Makes the transport for the container endpoint and instance metadata
    ///     (default ``AsyncHTTPTransport`` on the shared HTTP client).
    ///   - now: The clock (tests pass their own).
    ///   - logger: Where the source used is logged at debug level (default nowhere).
    package init(
        configuration: Configuration,
        makeTransport: @escaping TransportFactory = { AsyncHTTPTransport(endpoint: .url($0)) },
        now: @escaping @Sendable () -> Date = { Date() }, logger: Logger? = nil
    ) {
        self.configuration = configuration
        self.makeTransport = makeTransport
        self.now = now
        self.logger = logger
    }

    /// Where the credentials last returned came from ("environment", "shared files (profile
    /// default)", "container endpoint", "instance metadata (role r)"), or `nil` before any.
    package var source: String? { cached?.source }

    /// Current credentials: the cached ones until 5 minutes before they expire, else fetched
    /// again. When fetching fails and the cached ones have not yet expired, those are returned
    /// and fetching is tried again at most every 30 s.
    /// - Throws: ``AWSCredentialsError`` listing each source and why it gave nothing.
    package func credentials() async throws -> AWSCredentials {
        let start = now()
        if let cached, !cached.credentials.needsRefresh(at: start, margin: configuration.refreshMargin) {
            return cached.credentials
        }
        if let cached, !cached.credentials.isExpired(at: start), let nextAttempt, start < nextAttempt {
            return cached.credentials
        }
        // One fetch for all callers: the task is awaited by every caller that finds it here and
        // is dropped when it ends, so it never outlives the chain's users.
        let task: Task<Resolved, any Error>
        if let refreshing {
            task = refreshing
        } else {
            let configuration = configuration
            let makeTransport = makeTransport
            task = Task { try await Self.resolve(configuration: configuration, makeTransport: makeTransport) }
            refreshing = task
        }
        do {
            let resolved = try await task.value
            if refreshing == task { refreshing = nil }
            if cached?.source != resolved.source || cached?.credentials.accessKeyID != resolved.credentials.accessKeyID {
                logger?.debug("AWS credentials found", metadata: ["source": "\(resolved.source)", "accessKeyID": "\(resolved.credentials.accessKeyID)"])
            }
            cached = resolved
            nextAttempt = now().addingTimeInterval(30)
            return resolved.credentials
        } catch {
            if refreshing == task { refreshing = nil }
            nextAttempt = now().addingTimeInterval(30)
            if let cached, !cached.credentials.isExpired(at: now()) {
                logger?.debug("refreshing AWS credentials failed; using the cached ones until they expire", metadata: ["error": "\(error)"])
                return cached.credentials
            }
            throw error
        }
    }

    /// Forgets the cached credentials, so the next call looks again (after AWS refused them).
    package func invalidate() {
        cached = nil
        nextAttempt = nil
    }

    /// Looks through the sources in order.
    static func resolve(configuration: Configuration, makeTransport: @escaping TransportFactory) async throws -> Resolved {
        var attempts: [AWSCredentialsError.Attempt] = []
        let sources: [(name: String, lookup: () async -> Lookup)] = [
            ("environment", { environmentCredentials(configuration.environment) }),
            ("shared files", { sharedFileCredentials(configuration) }),
            ("container endpoint", { await containerCredentials(configuration, makeTransport: makeTransport) }),
            ("instance metadata", { await instanceMetadataCredentials(configuration, makeTransport: makeTransport) }),
        ]
        for source in sources {
            switch await source.lookup() {
            case .found(let credentials, let detail):
                return Resolved(credentials: credentials, source: detail.map { "\(source.name) (\($0))" } ?? source.name)
            case .skipped(let reason):
                attempts.append(.init(source: source.name, reason: reason))
            case .failed(let reason):
                attempts.append(.init(source: source.name, reason: reason))
                throw AWSCredentialsError(attempts: attempts)
            }
        }
        throw AWSCredentialsError(attempts: attempts)
    }

    /// What one source gave.
    enum Lookup: Sendable {
        /// Credentials, with a detail for logs (the profile, the role).
        case found(AWSCredentials, detail: String?)
        /// Nothing, the source not being configured: the chain goes on.
        case skipped(String)
        /// Nothing, the source being configured but broken: the chain stops.
        case failed(String)
    }
}
