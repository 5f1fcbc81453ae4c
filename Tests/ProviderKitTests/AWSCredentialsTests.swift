#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOHTTP1
import ProviderKit
import Testing

@Suite struct AWSCredentialsTests {
    /// A chain that must never reach the network: any request fails the test.
    static func offline(_ environment: [String: String], home: String = "/nonexistent-home") -> AWSCredentialChain {
        AWSCredentialChain(
            configuration: .init(environment: environment, homeDirectory: home),
            makeTransport: { base in FailingTransport(reason: "unexpected request to \(base)") })
    }

    static let noMetadata = ["AWS_EC2_METADATA_DISABLED": "true"]

    // MARK: The credentials value

    @Test func neverPrintsTheSecretOrTheToken() {
        let credentials = AWSCredentials(
            accessKeyID: "ASIAEXAMPLE", secretAccessKey: "very-secret", sessionToken: "session-token-value",
            expiration: Date(timeIntervalSince1970: 0))
        var dumped = ""
        dump(credentials, to: &dumped)
        for text in ["\(credentials)", String(reflecting: credentials), dumped, "\([credentials])"] {
            #expect(text.contains("ASIAEXAMPLE"))
            #expect(!text.contains("very-secret"), "\(text)")
            #expect(!text.contains("session-token-value"), "\(text)")
        }
    }

    // MARK: Environment

    @Test func theEnvironmentComesFirst() async throws {
        let chain = Self.offline([
            "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SESSION_TOKEN": "env-token",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/never-asked",
        ])
        let credentials = try await chain.credentials()
        #expect(credentials == AWSCredentials(accessKeyID: "AKIAENV", secretAccessKey: "env-secret", sessionToken: "env-token"))
        #expect(await chain.source == "environment")
    }

    @Test func aKeyWithoutItsSecretStopsTheChainAndSaysSo() async throws {
        let chain = Self.offline(["AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/never-asked"])
        let error = await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
        #expect(error?.attempts == [.init(source: "environment", reason: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both or neither")])
        #expect(error?.description.contains("Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") == true)
    }

    // MARK: Shared files

    /// A home directory with `.aws/credentials` and `.aws/config`, removed afterwards.
    static func withHome<T>(credentials: String?, config: String?, _ body: (String) async throws -> T) async throws -> T {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("aws-home-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: home + "/.aws", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: home) }
        if let credentials { try Data(credentials.utf8).write(to: URL(fileURLWithPath: home + "/.aws/credentials")) }
        if let config { try Data(config.utf8).write(to: URL(fileURLWithPath: home + "/.aws/config")) }
        return try await body(home)
    }

    static let credentialsFile = """
        # a comment
        [default]
        aws_access_key_id = AKIADEFAULT
        aws_secret_access_key = default-secret

        [dev]
        aws_access_key_id=AKIADEV
        aws_secret_access_key=dev-secret
        aws_session_token = dev-token
        ; another comment
        [assumed]
        role_arn = arn:aws:iam::123456789012:role/r
        source_profile = default
        """

    static let configFile = """
        [default]
        region = eu-west-1

        [profile dev]
        region = us-west-2
        s3 =
            max_concurrent_requests = 10

        [profile from-config]
        aws_access_key_id = AKIACONFIG
        aws_secret_access_key = config-secret
        region = ap-southeast-2

        [only-in-credentials-style]
        aws_access_key_id = AKIAWRONG
        aws_secret_access_key = wrong
        """

    @Test func sharedFilesReadTheDefaultProfile() async throws {
        try await Self.withHome(credentials: Self.credentialsFile, config: Self.configFile) { home in
            let chain = Self.offline(Self.noMetadata, home: home)
            #expect(try await chain.credentials() == AWSCredentials(accessKeyID: "AKIADEFAULT", secretAccessKey: "default-secret"))
            #expect(await chain.source == "shared files (profile default)")
            let profile = try AWSSharedFiles(environment: [:], homeDirectory: home).profile(named: "default")
            #expect(AWSRegion.resolve(environment: [:], profile: profile) == "eu-west-1")
        }
    }

    @Test func awsProfileSelectsAProfileInEitherFile() async throws {
        try await Self.withHome(credentials: Self.credentialsFile, config: Self.configFile) { home in
            let dev = Self.offline(Self.noMetadata.merging(["AWS_PROFILE": "dev"]) { $1 }, home: home)
            #expect(try await dev.credentials() == AWSCredentials(accessKeyID: "AKIADEV", secretAccessKey: "dev-secret", sessionToken: "dev-token"))
            let fromConfig = Self.offline(Self.noMetadata.merging(["AWS_PROFILE": "from-config"]) { $1 }, home: home)
            #expect(try await fromConfig.credentials().accessKeyID == "AKIACONFIG")

            let files = AWSSharedFiles(environment: [:], homeDirectory: home)
            let devProfile = try files.profile(named: "dev")
            #expect(devProfile?["region"] == "us-west-2")
            #expect(devProfile?["s3"] == "\nmax_concurrent_requests = 10")
            #expect(AWSRegion.resolve(environment: ["AWS_DEFAULT_REGION": "sa-east-1"], profile: devProfile) == "sa-east-1")
            #expect(AWSRegion.resolve(environment: ["AWS_REGION": "ca-central-1", "AWS_DEFAULT_REGION": "sa-east-1"], profile: devProfile) == "ca-central-1")
            #expect(AWSRegion.resolve(environment: [:], profile: nil) == nil)
            // In the config file only `[profile name]` names a profile (`[default]` excepted).
            #expect(try files.profile(named: "only-in-credentials-style") == nil)
        }
    }

    @Test func theFilesEnvironmentVariablesMoveThem() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("aws-files-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data("[ci]\naws_access_key_id = AKIACI\naws_secret_access_key = ci-secret\n".utf8).write(to: directory.appendingPathComponent("creds"))
        try Data("[profile ci]\nregion = eu-north-1\n".utf8).write(to: directory.appendingPathComponent("conf"))
        let environment = [
            "AWS_SHARED_CREDENTIALS_FILE": directory.appendingPathComponent("creds").path,
            "AWS_CONFIG_FILE": directory.appendingPathComponent("conf").path, "AWS_PROFILE": "ci",
        ]
        let chain = Self.offline(environment.merging(Self.noMetadata) { $1 })
        #expect(try await chain.credentials().accessKeyID == "AKIACI")
        let profile = try AWSSharedFiles(environment: environment).profile(named: "ci")
        #expect(AWSRegion.resolve(environment: environment, profile: profile) == "eu-north-1")
    }

    @Test func aMissingExplicitProfileStopsTheChain() async throws {
        try await Self.withHome(credentials: Self.credentialsFile, config: Self.configFile) { home in
            let chain = Self.offline(["AWS_PROFILE": "nope", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/never-asked"], home: home)
            let error = await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
            #expect(error?.attempts.map(\.source) == ["environment", "shared files"])
            #expect(error?.attempts.last?.reason.contains("no profile 'nope' in ~/.aws/credentials or ~/.aws/config") == true)
            #expect(error?.attempts.last?.reason.contains("aws configure --profile nope") == true)
        }
    }

    @Test func anAssumeRoleProfileSaysHowToExportItsCredentials() async throws {
        try await Self.withHome(credentials: Self.credentialsFile, config: nil) { home in
            let chain = Self.offline(["AWS_PROFILE": "assumed"], home: home)
            let error = await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
            let reason = try #require(error?.attempts.last?.reason)
            #expect(reason.contains("profile 'assumed' gets its credentials through role_arn"))
            #expect(reason.contains("aws configure export-credentials --profile assumed --format env"))
        }
    }

    @Test func iniParsingFollowsTheCLI() {
        let sections = AWSSharedFiles.parse("top = ignored\n[ profile  x ]\nKey = a = b\n  nested = 1\n#c\n[y]\nk: v\n")
        #expect(sections == ["profile x": ["key": "a = b\nnested = 1"], "y": ["k": "v"]])
    }

    // MARK: Container endpoint

    static let containerAnswer = """
        {"AccessKeyId": "ASIACONTAINER", "SecretAccessKey": "container-secret", "Token": "container-token",
         "Expiration": "2026-12-01T12:00:00Z", "RoleArn": "arn:aws:iam::123456789012:role/task"}
        """

    @Test func theRelativeContainerURIGoesTo169_254_170_2() async throws {
        let transport = RecordedTransport([.json(.GET, "/v2/credentials/abc-123", Self.containerAnswer)])
        let bases = BaseURLs()
        let chain = AWSCredentialChain(
            configuration: .init(environment: ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc-123"], homeDirectory: "/nonexistent"),
            makeTransport: { bases.record($0); return transport })
        let credentials = try await chain.credentials()
        #expect(credentials.accessKeyID == "ASIACONTAINER")
        #expect(credentials.secretAccessKey == "container-secret")
        #expect(credentials.sessionToken == "container-token")
        #expect(credentials.expiration == Date(timeIntervalSince1970: 1_796_126_400))
        #expect(bases.all == ["http://169.254.170.2"])
        #expect(await chain.source == "container endpoint")
        try await transport.verify()
    }

    @Test func theFullContainerURISendsTheAuthorizationToken() async throws {
        let transport = RecordedTransport([
            .json(.GET, "/creds", query: [QueryItem("a", "b")], Self.containerAnswer) { request in
                guard request.headers["Authorization"] == ["Basic abcd"] else { throw CheckFailure("no token: \(request.headers)") }
            },
        ])
        let bases = BaseURLs()
        let chain = AWSCredentialChain(
            configuration: .init(
                environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:8765/creds?a=b", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "Basic abcd"],
                homeDirectory: "/nonexistent"),
            makeTransport: { bases.record($0); return transport })
        #expect(try await chain.credentials().accessKeyID == "ASIACONTAINER")
        #expect(bases.all == ["http://127.0.0.1:8765"])
        try await transport.verify()
    }

    @Test func aFullContainerURIOverPlainHTTPToAnotherHostIsRefused() async throws {
        let chain = Self.offline(["AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://example.com/creds"])
        let error = await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
        #expect(error?.attempts.last?.source == "container endpoint")
        #expect(error?.attempts.last?.reason.contains("must use https") == true)
    }

    @Test func aFailingContainerEndpointStopsTheChainWithItsStatus() async throws {
        let transport = RecordedTransport([
            .json(.GET, "/v2/credentials/x", status: 500, #"{"message": "agent trouble"}"#),
            .json(.GET, "/v2/credentials/x", status: 500, #"{"message": "agent trouble"}"#),
            .json(.GET, "/v2/credentials/x", status: 500, #"{"message": "agent trouble"}"#),
        ])
        let chain = AWSCredentialChain(
            configuration: .init(environment: ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"], homeDirectory: "/nonexistent"),
            makeTransport: { _ in transport })
        let error = await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
        #expect(error?.attempts.map(\.source) == ["environment", "shared files", "container endpoint"])
        #expect(error?.attempts.last?.reason.contains("answered 500: agent trouble") == true)
        try await transport.verify()
    }

    // MARK: Instance metadata

    static func metadataExchanges(token: String, role: String = "my-role", keyID: String, expiration: String) -> [RecordedTransport.Exchange] {
        [
            RecordedTransport.Exchange(.PUT, "/latest/api/token", body: Data(token.utf8)) { request in
                guard request.headers["X-aws-ec2-metadata-token-ttl-seconds"] == ["21600"] else {
                    throw CheckFailure("the token request has no TTL header: \(request.headers)")
                }
            },
            RecordedTransport.Exchange(.GET, "/latest/meta-data/iam/security-credentials/", body: Data("\(role)\n".utf8)) { request in
                guard request.headers["X-aws-ec2-metadata-token"] == [token] else {
                    throw CheckFailure("the role request does not carry the token: \(request.headers)")
                }
            },
            .json(.GET, "/latest/meta-data/iam/security-credentials/\(role)", """
                {"Code": "Success", "LastUpdated": "2026-12-01T11:00:00Z", "Type": "AWS-HMAC", "AccessKeyId": "\(keyID)",
                 "SecretAccessKey": "imds-secret", "Token": "imds-token", "Expiration": "\(expiration)"}
                """) { request in
                guard request.headers["X-aws-ec2-metadata-token"] == [token] else {
                    throw CheckFailure("the credentials request does not carry the token: \(request.headers)")
                }
            },
        ]
    }

    @Test func instanceMetadataUsesASessionTokenThenTheRole() async throws {
        let transport = RecordedTransport(Self.metadataExchanges(token: "tok-1", keyID: "ASIAIMDS", expiration: "2026-12-01T17:00:00Z"))
        let bases = BaseURLs()
        let chain = AWSCredentialChain(
            configuration: .init(environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1338/"], homeDirectory: "/nonexistent"),
            makeTransport: { bases.record($0); return transport })
        let credentials = try await chain.credentials()
        #expect(credentials == AWSCredentials(
            accessKeyID: "ASIAIMDS", secretAccessKey: "imds-secret", sessionToken: "imds-token", expiration: Date(timeIntervalSince1970: 1_796_144_400)))
        #expect(bases.all == ["http://127.0.0.1:1338"])
        #expect(await chain.source == "instance metadata (role my-role)")
        try await transport.verify()
        let requests = await transport.requests
        #expect(requests.map(\.method) == [.PUT, .GET, .GET])
        #expect(requests.allSatisfy { $0.timeout == .seconds(1) })
    }

    @Test func anInstanceWithoutARoleSaysToAttachOne() async throws {
        let transport = RecordedTransport([
            RecordedTransport.Exchange(.PUT, "/latest/api/token", body: Data("tok".utf8)),
            RecordedTransport.Exchange(.GET, "/latest/meta-data/iam/security-credentials/", status: 404),
        ])
        let chain = AWSCredentialChain(configuration: .init(environment: [:], homeDirectory: "/nonexistent"), makeTransport: { _ in transport })
        let error = await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
        #expect(error?.attempts.last == .init(source: "instance metadata", reason: "no IAM role is attached to this instance; attach an instance profile"))
    }

    // MARK: Caching and refresh

    @Test func credentialsAreCachedAndFetchedAgainFiveMinutesBeforeExpiry() async throws {
        let start = Date(timeIntervalSince1970: 1_796_126_400)  // 2026-12-01T12:00:00Z
        let clock = TestClock(start)
        let transport = RecordedTransport(
            Self.metadataExchanges(token: "tok-1", keyID: "ASIAFIRST", expiration: "2026-12-01T13:00:00Z")
                + Self.metadataExchanges(token: "tok-2", keyID: "ASIASECOND", expiration: "2026-12-01T19:00:00Z"))
        let chain = AWSCredentialChain(
            configuration: .init(environment: [:], homeDirectory: "/nonexistent"), makeTransport: { _ in transport }, now: { clock.now })

        // Concurrent first callers share one fetch.
        async let first = chain.credentials()
        async let second = chain.credentials()
        #expect(try await [first, second].map(\.accessKeyID) == ["ASIAFIRST", "ASIAFIRST"])
        #expect(await transport.requests.count == 3)

        clock.now = start.addingTimeInterval(54 * 60)  // 6 minutes before expiry: still cached
        #expect(try await chain.credentials().accessKeyID == "ASIAFIRST")
        #expect(await transport.requests.count == 3)

        clock.now = start.addingTimeInterval(56 * 60)  // 4 minutes before expiry: fetched again
        #expect(try await chain.credentials().accessKeyID == "ASIASECOND")
        #expect(await transport.requests.count == 6)
        try await transport.verify()
    }

    @Test func aFailedRefreshKeepsUsingCredentialsThatHaveNotExpired() async throws {
        let start = Date(timeIntervalSince1970: 1_796_126_400)
        let clock = TestClock(start)
        let transport = RecordedTransport(Self.metadataExchanges(token: "tok-1", keyID: "ASIAFIRST", expiration: "2026-12-01T13:00:00Z"))
        let chain = AWSCredentialChain(
            configuration: .init(environment: [:], homeDirectory: "/nonexistent"), makeTransport: { _ in transport }, now: { clock.now })
        #expect(try await chain.credentials().accessKeyID == "ASIAFIRST")
        clock.now = start.addingTimeInterval(58 * 60)  // the refresh finds no exchange left, so fails
        #expect(try await chain.credentials().accessKeyID == "ASIAFIRST")
        clock.now = start.addingTimeInterval(58 * 60 + 10)  // within 30 s of the failure: no new attempt
        #expect(try await chain.credentials().accessKeyID == "ASIAFIRST")
        #expect(await transport.requests.count == 4)
        clock.now = start.addingTimeInterval(61 * 60)  // expired: the failure is reported
        await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
    }

    // MARK: Nothing found

    @Test func theErrorListsEverySourceAndWhy() async throws {
        try await Self.withHome(credentials: nil, config: nil) { home in
            let chain = AWSCredentialChain(
                configuration: .init(environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://169.254.169.254"], homeDirectory: home),
                makeTransport: { _ in FailingTransport(reason: "timed out") })
            let error = await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
            #expect(error?.description == """
                no AWS credentials found (environment: AWS_ACCESS_KEY_ID not set; shared files: neither ~/.aws/credentials nor \
                ~/.aws/config exists; container endpoint: not configured; instance metadata: no answer from \
                http://169.254.169.254 within 1 s (not an EC2 instance?)). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                (and AWS_SESSION_TOKEN for temporary keys), or run `aws configure`, or set AWS_PROFILE to a profile with keys \
                in ~/.aws/credentials.
                """)
        }
    }

    @Test func disabledInstanceMetadataIsNotAsked() async throws {
        let chain = Self.offline(Self.noMetadata)
        let error = await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
        #expect(error?.attempts.last == .init(source: "instance metadata", reason: "disabled by AWS_EC2_METADATA_DISABLED"))
    }

    /// The real transport against a loopback port that accepts connections and never answers:
    /// instance metadata gives up after its 1 s timeout.
    @Test func silentInstanceMetadataIsSkippedAfterOneSecond() async throws {
        let listener = try SilentListener()
        defer { listener.close() }
        let chain = AWSCredentialChain(
            configuration: .init(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:\(listener.port)"], homeDirectory: "/nonexistent"))
        let started = ContinuousClock.now
        let error = await #expect(throws: AWSCredentialsError.self) { try await chain.credentials() }
        let elapsed = ContinuousClock.now - started
        #expect(error?.attempts.last?.reason == "no answer from http://127.0.0.1:\(listener.port) within 1 s (not an EC2 instance?)")
        // It waited on the socket, and gave up long before a request's default 60 s; how long
        // after 1 s depends on the machine's load (a loaded CI run took 19 s), so no tighter bound.
        #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(50), "took \(elapsed)")
    }

    // MARK: Endpoints

    @Test func endpointsHonourTheOverrides() {
        #expect(AWSEndpoint.url(service: "ecs", region: "eu-west-1", environment: [:]) == "https://ecs.eu-west-1.amazonaws.com")
        #expect(AWSEndpoint.url(service: "ecr", region: "eu-west-1", environment: [:]) == "https://api.ecr.eu-west-1.amazonaws.com")
        #expect(AWSEndpoint.url(service: "ec2", region: "cn-north-1", environment: [:]) == "https://ec2.cn-north-1.amazonaws.com.cn")
        #expect(AWSEndpoint.url(service: "iam", region: "eu-west-1", environment: [:]) == "https://iam.amazonaws.com")
        #expect(AWSEndpoint.signingRegion(service: "iam", region: "eu-west-1") == "us-east-1")
        #expect(AWSEndpoint.signingRegion(service: "ecs", region: "eu-west-1") == "eu-west-1")
        let environment = [
            "AWS_ENDPOINT_URL_ECS": "http://127.0.0.1:4566/", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": "http://127.0.0.1:5000",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9999",
        ]
        #expect(AWSEndpoint.url(service: "ecs", region: "eu-west-1", environment: environment) == "http://127.0.0.1:4566")
        #expect(AWSEndpoint.url(service: "logs", region: "eu-west-1", environment: environment) == "http://127.0.0.1:5000")
        #expect(AWSEndpoint.url(service: "iam", region: "eu-west-1", environment: environment) == "http://127.0.0.1:9999")
        #expect(AWSEndpoint.url(
            service: "ecs", region: "eu-west-1", environment: environment.merging(["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"]) { $1 })
            == "https://ecs.eu-west-1.amazonaws.com")
        #expect(AWSEndpoint.environmentSuffix(serviceID: "Application Auto Scaling") == "APPLICATION_AUTO_SCALING")
        #expect(AWSEndpoint.environmentSuffix(serviceID: "ecr-public") == "ECR_PUBLIC")
        #expect(AWSEndpoint.host(ofURL: "https://ecs.eu-west-1.amazonaws.com") == "ecs.eu-west-1.amazonaws.com")
        #expect(AWSEndpoint.host(ofURL: "https://ECS.example.com:443/") == "ecs.example.com")
        #expect(AWSEndpoint.host(ofURL: "http://127.0.0.1:4566") == "127.0.0.1:4566")
        #expect(AWSEndpoint.host(ofURL: "not a url") == nil)
    }
}

/// A transport that never answers, as an unreachable address does.
struct FailingTransport: HTTPTransport {
    var reason: String
    func send(_ request: RESTRequest) async throws -> RESTResponse {
        throw RESTError(.connectionFailed, platform: "test", request: request.summary, message: reason)
    }
}

/// The base URLs a chain made transports for.
final class BaseURLs: @unchecked Sendable {
    // Safe: every access holds the lock.
    private let lock = NSLock()
    private var urls: [String] = []
    func record(_ url: String) { lock.withLock { urls.append(url) } }
    var all: [String] { lock.withLock { urls } }
}

/// A clock the test moves.
final class TestClock: @unchecked Sendable {
    // Safe: every access holds the lock.
    private let lock = NSLock()
    private var current: Date
    init(_ start: Date) { current = start }
    var now: Date {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }
}

/// A loopback TCP socket that accepts connections (the kernel's backlog does) and never answers.
struct SilentListener {
    let descriptor: Int32
    let port: Int

    init() throws {
        #if os(Linux)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(fd, 16) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        try #require(named == 0)
        descriptor = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() {
        #if canImport(Glibc)
        _ = Glibc.close(descriptor)
        #else
        _ = Darwin.close(descriptor)
        #endif
    }
}

/// A recorded exchange's check that refused the request.
struct CheckFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
