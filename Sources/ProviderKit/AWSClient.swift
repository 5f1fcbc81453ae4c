import Foundation
import Logging
import NIOHTTP1

/// Calls to one AWS service's API, in its JSON (ECS, CloudWatch Logs, Secrets Manager) or query
/// (EC2, IAM) protocol, signed with SigV4 again on every attempt and retried on throttling.
///
/// ```swift
/// let ecs = AWSClient(service: .ecs, region: "eu-west-1", environment: env, credentials: chain)
/// let answer = try await ecs.json("ListClusters", ListClusters(), as: ListClustersOutput.self)
/// let ec2 = AWSClient(service: .ec2, region: "eu-west-1", environment: env, credentials: chain)
/// let vpcs = try await ec2.query("DescribeVpcs", ["Filter.1.Name": "isDefault", "Filter.1.Value.1": "true"])
/// ```
package struct AWSClient: Sendable {
    /// A service: its signing name, its protocol and its name in messages.
    package struct Service: Sendable, Equatable {
        /// How requests are spelled.
        package enum Wire: Sendable, Equatable {
            /// `POST /` with `X-Amz-Target: <prefix>.<Operation>` and a JSON body.
            case json(targetPrefix: String, version: String)
            /// `POST /` with a form body `Action=<Operation>&Version=<version>&…`; XML answers.
            case query(version: String)
        }

        /// The signing name and endpoint prefix (`ecs`).
        package var signingName: String
        /// The protocol.
        package var wire: Wire
        /// The name in messages ("Amazon ECS").
        package var displayName: String

        /// Creates a service description.
        package init(signingName: String, wire: Wire, displayName: String) {
            self.signingName = signingName
            self.wire = wire
            self.displayName = displayName
        }

        /// Amazon ECS (JSON 1.1).
        package static let ecs = Service(
            signingName: "ecs", wire: .json(targetPrefix: "AmazonEC2ContainerServiceV20141113", version: "1.1"),
            displayName: "Amazon ECS")
        /// CloudWatch Logs (JSON 1.1).
        package static let logs = Service(
            signingName: "logs", wire: .json(targetPrefix: "Logs_20140328", version: "1.1"), displayName: "CloudWatch Logs")
        /// Secrets Manager (JSON 1.1).
        package static let secretsManager = Service(
            signingName: "secretsmanager", wire: .json(targetPrefix: "secretsmanager", version: "1.1"),
            displayName: "AWS Secrets Manager")
        /// Amazon EC2 (query, version 2016-11-15).
        package static let ec2 = Service(signingName: "ec2", wire: .query(version: "2016-11-15"), displayName: "Amazon EC2")
        /// IAM (query, version 2010-05-08), signed for its global region.
        package static let iam = Service(signingName: "iam", wire: .query(version: "2010-05-08"), displayName: "AWS IAM")
    }

    /// The service.
    package let service: Service
    /// The base URL requests go to.
    package let endpoint: String
    /// The region requests are signed for.
    package let signingRegion: String
    private let rest: RESTClient
    private let credentials: AWSCredentialChain

    /// Creates a client.
    /// - Parameters:
    ///   - service: The service.
    ///   - region: The region (IAM signs for its global region whatever it is).
    ///   - environment: Read for `AWS_ENDPOINT_URL_<SERVICE>` and `AWS_ENDPOINT_URL`.
    ///   - credentials: Where the signing credentials come from.
    ///   - transport: Where requests go (default AsyncHTTPClient to the endpoint; tests pass
    ///     recorded answers).
    ///   - retry: Default: 6 attempts, 200 ms to 10 s of jittered backoff, AWS's throttling
    ///     answers retried.
    ///   - now: The signing clock.
    ///   - sleep: Waits between attempts.
    package init(
        service: Service, region: String, environment: [String: String], credentials: AWSCredentialChain,
        transport: (any HTTPTransport)? = nil, retry: RetryPolicy? = nil, now: @escaping @Sendable () -> Date = { Date() },
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }, logger: Logger? = nil
    ) {
        self.service = service
        let endpoint = AWSEndpoint.url(service: service.signingName, region: region, environment: environment)
        self.endpoint = endpoint
        self.signingRegion = AWSEndpoint.signingRegion(service: service.signingName, region: region)
        self.credentials = credentials
        let signing = SigV4Transport(
            inner: transport ?? AsyncHTTPTransport(endpoint: .url(endpoint)),
            signer: SigV4Signer(service: service.signingName, region: signingRegion),
            host: AWSEndpoint.host(ofURL: endpoint) ?? endpoint, credentials: credentials, now: now)
        let policy = retry ?? RetryPolicy(
            maxAttempts: 6, baseDelay: .milliseconds(200), maxDelay: .seconds(10), isThrottling: AWSClient.isThrottling)
        self.rest = RESTClient(
            transport: signing, configuration: .init(platform: service.displayName, retry: policy), logger: logger,
            sleep: sleep)
    }

    // MARK: JSON protocol

    /// Calls a JSON-protocol operation and decodes its answer.
    /// - Throws: ``AWSServiceError`` for the service's refusal, ``RESTError`` when no answer
    ///   came or it could not be read, ``AWSCredentialsError`` without credentials.
    package func json<Output: Decodable>(
        _ operation: String, _ input: some Encodable & Sendable, as type: Output.Type
    ) async throws -> Output {
        let body = try await jsonData(operation, input)
        return try JSONModels.decode(Output.self, from: body.isEmpty ? Data("{}".utf8) : body, platform: service.displayName, request: operation)
    }

    /// Calls a JSON-protocol operation whose answer is not needed.
    @discardableResult
    package func jsonData(_ operation: String, _ input: some Encodable & Sendable) async throws -> Data {
        guard case .json(let prefix, let version) = service.wire else {
            preconditionFailure("\(service.displayName) does not speak the JSON protocol")
        }
        let body = try JSONModels.encode(input, platform: service.displayName, request: operation)
        var request = RESTRequest(
            .POST, "/", headers: ["X-Amz-Target": "\(prefix).\(operation)", "Content-Type": "application/x-amz-json-\(version)"],
            body: body, isIdempotent: Self.isReadOnly(operation))
        request.timeout = .seconds(60)
        return try await send(request, operation: operation)
    }

    // MARK: Query protocol

    /// Calls a query-protocol operation and returns its XML answer's root element.
    /// - Parameter parameters: The operation's parameters, flattened as the protocol spells
    ///   them (`Filter.1.Name`, `TagSpecification.1.Tag.1.Key`).
    /// - Throws: as ``json(_:_:as:)``.
    @discardableResult
    package func query(_ operation: String, _ parameters: [String: String] = [:]) async throws -> AWSXML {
        guard case .query(let version) = service.wire else {
            preconditionFailure("\(service.displayName) does not speak the query protocol")
        }
        var items = [("Action", operation), ("Version", version)]
        items += parameters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        // Spelled as botocore spells it (Python's `urlencode`: RFC 3986's unreserved characters
        // kept, a space as `+`), so that a server that re-encodes the form to check the
        // signature, as moto does, hashes the same bytes.
        func encode(_ text: String) -> String {
            SigV4Signer.percentEncode(text, keepingSlashes: false).replacingOccurrences(of: "%20", with: "+")
        }
        let form = items.map { encode($0.0) + "=" + encode($0.1) }.joined(separator: "&")
        let request = RESTRequest(
            .POST, "/", headers: ["Content-Type": "application/x-www-form-urlencoded; charset=utf-8"], body: Data(form.utf8),
            isIdempotent: Self.isReadOnly(operation))
        let body = try await send(request, operation: operation)
        do {
            return try AWSXML.parse(body)
        } catch {
            throw RESTError(.decodingFailed, platform: service.displayName, request: operation, message: "\(error)")
        }
    }

    // MARK: Sending

    private func send(_ request: RESTRequest, operation: String) async throws -> Data {
        var refreshed = false
        while true {
            let response = try await rest.sendAllowingAnyStatus(request)
            if response.isSuccess { return response.body }
            let error = AWSServiceError(service: service.displayName, operation: operation, response: response)
            if !refreshed, AWSServiceError.expiredCredentialCodes.contains(error.code) {
                // Credentials that expired between the chain's check and the service's: fetch new ones, once.
                await credentials.invalidate()
                refreshed = true
                continue
            }
            throw error
        }
    }

    /// Whether an operation only reads (`Describe…`, `List…`, `Get…`): only those are sent
    /// again after a server error or a lost connection.
    static func isReadOnly(_ operation: String) -> Bool {
        ["Describe", "List", "Get"].contains { operation.hasPrefix($0) }
    }

    /// Recognises AWS's throttling answers, in JSON (`__type`) or XML (`<Code>`).
    package static let isThrottling: @Sendable (RESTResponse) -> Bool = { response in
        guard response.status == 400 || response.status == 429 || response.status == 503 else { return false }
        if RetryPolicy.awsThrottling(response) { return true }
        return AWSServiceError.throttlingCodes.contains(AWSServiceError.code(in: response))
    }
}

/// A refusal from an AWS service: its status, error code and message.
package struct AWSServiceError: Error, Sendable, CustomStringConvertible {
    /// The service's name ("Amazon ECS").
    package var service: String
    /// The operation ("RunTask").
    package var operation: String
    /// The HTTP status.
    package var status: Int
    /// The error code, without its namespace (`ClientException`, `InvalidGroup.NotFound`,
    /// `NoSuchEntity`).
    package var code: String
    /// The service's message.
    package var message: String

    /// Creates an error.
    package init(service: String, operation: String, status: Int, code: String, message: String) {
        self.service = service
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message
    }

    /// Reads an error answer in either protocol.
    package init(service: String, operation: String, response: RESTResponse) {
        self.service = service
        self.operation = operation
        self.status = response.status
        let code = Self.code(in: response)
        self.code = code.isEmpty ? "HTTP \(response.status)" : code
        self.message = Self.message(in: response)
    }

    /// "Amazon ECS refused RunTask (ClientException): …".
    package var description: String {
        "\(service) refused \(operation) (\(code)): \(message.isEmpty ? "no message" : message)"
    }

    /// Codes that mean "slow down".
    package static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
        "RequestThrottled", "RequestThrottledException", "SlowDown", "PriorRequestNotComplete",
    ]

    /// Codes that mean the signing credentials expired.
    package static let expiredCredentialCodes: Set<String> = ["ExpiredToken", "ExpiredTokenException", "RequestExpired"]

    /// Whether the code names a missing resource (`…NotFound…`, `NoSuchEntity`, `ResourceNotFoundException`).
    package var isNotFound: Bool {
        code.contains("NotFound") || code == "NoSuchEntity" || code == "ResourceNotFoundException"
    }

    /// The error code of an error answer: the JSON `__type` (namespace dropped), the
    /// `x-amzn-ErrorType` header, or the XML `<Code>`.
    static func code(in response: RESTResponse) -> String {
        if let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any] {
            let type = ((object["__type"] ?? object["code"] ?? object["Code"]) as? String) ?? ""
            if !type.isEmpty { return String(type.split(separator: "#").last ?? "") }
        }
        if let header = response.headers.first(name: "x-amzn-ErrorType"), !header.isEmpty {
            return String(header.split(separator: ":").first ?? "")
        }
        if let root = try? AWSXML.parse(response.body), let code = root.first("Code")?.text, !code.isEmpty {
            return code
        }
        return ""
    }

    static func message(in response: RESTResponse) -> String {
        if let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any] {
            return ((object["message"] ?? object["Message"]) as? String) ?? ""
        }
        if let root = try? AWSXML.parse(response.body), let message = root.first("Message")?.text { return message }
        return String(decoding: response.body.prefix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Signs every request it passes on, with the credentials current at that moment.
struct SigV4Transport: HTTPTransport {
    let inner: any HTTPTransport
    let signer: SigV4Signer
    let host: String
    let credentials: AWSCredentialChain
    let now: @Sendable () -> Date

    func send(_ request: RESTRequest) async throws -> RESTResponse {
        var signed = request
        signer.sign(&signed, host: host, credentials: try await credentials.credentials(), date: now())
        return try await inner.send(signed)
    }
}
