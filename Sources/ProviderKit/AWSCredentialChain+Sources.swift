import Foundation
import NIOHTTP1

extension AWSCredentialChain {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    static func environmentCredentials(_ environment: [String: String]) -> Lookup {
        func value(_ name: String) -> String? {
            guard let text = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
            return text
        }
        guard let keyID = value("AWS_ACCESS_KEY_ID") else {
            if value("AWS_SECRET_ACCESS_KEY") != nil {
                return .failed("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both or neither")
            }
            return .skipped("AWS_ACCESS_KEY_ID not set")
        }
        guard let secret = value("AWS_SECRET_ACCESS_KEY") else {
            return .failed("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both or neither")
        }
        return .found(AWSCredentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: value("AWS_SESSION_TOKEN")), detail: nil)
    }

    /// The selected profile's keys in the shared credentials and config files.
    static func sharedFileCredentials(_ configuration: Configuration) -> Lookup {
        let environment = configuration.environment
        let home = configuration.homeDirectory ?? environment["HOME"]
        let files = AWSSharedFiles(environment: environment, homeDirectory: home)
        let credentialsFile = files.abbreviated(files.credentialsPath, home: home)
        let configFile = files.abbreviated(files.configPath, home: home)
        let (name, isExplicit) = AWSProfile.selectedName(environment: environment)
        let profile: AWSProfile?
        do {
            profile = try files.profile(named: name)
        } catch {
            return .failed("\(error)")
        }
        guard let profile else {
            let fileManager = FileManager.default
            if !fileManager.fileExists(atPath: files.credentialsPath) && !fileManager.fileExists(atPath: files.configPath) {
                let reason = "neither \(credentialsFile) nor \(configFile) exists"
                return isExplicit ? .failed("AWS_PROFILE names '\(name)' but \(reason)") : .skipped(reason)
            }
            let reason = "no profile '\(name)' in \(credentialsFile) or \(configFile)"
            return isExplicit ? .failed(reason + "; fix AWS_PROFILE or add the profile with `aws configure --profile \(name)`") : .skipped(reason)
        }
        if let keyID = profile["aws_access_key_id"] {
            guard let secret = profile["aws_secret_access_key"] else {
                return .failed("profile '\(name)' has aws_access_key_id but no aws_secret_access_key")
            }
            return .found(
                AWSCredentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: profile["aws_session_token"]),
                detail: "profile \(name)")
        }
        let unsupported = ["role_arn", "credential_process", "sso_session", "sso_start_url", "web_identity_token_file", "login_session"]
        if let setting = unsupported.first(where: { profile[$0] != nil }) {
            return .failed(
                "profile '\(name)' gets its credentials through \(setting), which DockerParallel does not support; "
                    + "export them with `eval \"$(aws configure export-credentials --profile \(name) --format env)\"`")
        }
        let reason = "profile '\(name)' has no aws_access_key_id"
        return isExplicit ? .failed(reason) : .skipped(reason)
    }

    /// The ECS (or EKS Pod Identity) container credentials endpoint.
    static func containerCredentials(_ configuration: Configuration, makeTransport: TransportFactory) async -> Lookup {
        let environment = configuration.environment
        func value(_ name: String) -> String? {
            guard let text = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
            return text
        }
        let base: String
        var request: RESTRequest
        if let relative = value("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            guard let components = URLComponents(string: "http://169.254.170.2" + (relative.hasPrefix("/") ? relative : "/" + relative)) else {
                return .failed("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a URL path: \(relative)")
            }
            base = "http://169.254.170.2"
            request = RESTRequest(.GET, components.percentEncodedPath, query: queryItems(components))
        } else if let full = value("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            guard let components = URLComponents(string: full), let scheme = components.scheme?.lowercased(), let host = components.host,
                  scheme == "http" || scheme == "https"
            else {
                return .failed("AWS_CONTAINER_CREDENTIALS_FULL_URI is not an http or https URL: \(full)")
            }
            guard scheme == "https" || isAllowedContainerHost(host) else {
                return .failed(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI must use https, or http to a loopback address or the ECS/EKS "
                        + "endpoints (169.254.170.2, 169.254.170.23, fd00:ec2::23); it names \(host)")
            }
            let hostPart = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
            base = "\(scheme)://\(hostPart)" + (components.port.map { ":\($0)" } ?? "")
            request = RESTRequest(.GET, components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath, query: queryItems(components))
            if let tokenFile = value("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
                guard let data = FileManager.default.contents(atPath: tokenFile) else {
                    return .failed("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(tokenFile)")
                }
                let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                request.headers.add(name: "Authorization", value: token)
            } else if let token = value("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
                request.headers.add(name: "Authorization", value: token)
            }
        } else {
            return .skipped("not configured")
        }
        request.headers.add(name: "Accept", value: "application/json")
        request.timeout = configuration.containerTimeout
        let client = RESTClient(
            transport: makeTransport(base),
            configuration: .init(platform: "the container credentials endpoint", retry: RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(100))))
        do {
            let response = try await client.send(request)
            return try decodeCredentials(response.body, platform: "the container credentials endpoint", request: request.summary)
                .map { .found($0, detail: nil) } ?? .failed("the endpoint answered without AccessKeyId and SecretAccessKey")
        } catch {
            return .failed("\(base)\(request.path) failed: \(error)")
        }
    }

    /// EC2 instance metadata, version 2: a session token, then the role, then its credentials.
    static func instanceMetadataCredentials(_ configuration: Configuration, makeTransport: TransportFactory) async -> Lookup {
        let environment = configuration.environment
        if environment["AWS_EC2_METADATA_DISABLED"]?.trimmingCharacters(in: .whitespaces).lowercased() == "true" {
            return .skipped("disabled by AWS_EC2_METADATA_DISABLED")
        }
        var base = "http://169.254.169.254"
        if let endpoint = environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"]?.trimmingCharacters(in: .whitespaces), !endpoint.isEmpty {
            base = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        } else if environment["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"]?.lowercased() == "ipv6" {
            base = "http://[fd00:ec2::254]"
        }
        let timeout = configuration.metadataTimeout
        let waited = timeout.components.seconds >= 1 && timeout.components.attoseconds == 0
            ? "\(timeout.components.seconds) s" : "\(timeout)"
        let client = RESTClient(
            transport: makeTransport(base), configuration: .init(platform: "instance metadata at \(base)", retry: .none))
        func get(_ request: RESTRequest) async -> Result<RESTResponse, MetadataProblem> {
            var request = request
            request.timeout = timeout
            do {
                return .success(try await client.sendAllowingAnyStatus(request))
            } catch let error as RESTError where error.code == .connectionFailed {
                return .failure(MetadataProblem(reason: "no answer from \(base) within \(waited) (not an EC2 instance?)"))
            } catch {
                return .failure(MetadataProblem(reason: "\(request.summary) failed: \(error)"))
            }
        }

        let tokenRequest = RESTRequest(.PUT, "/latest/api/token", headers: ["X-aws-ec2-metadata-token-ttl-seconds": "21600"])
        let token: String
        switch await get(tokenRequest) {
        case .failure(let problem): return .skipped(problem.reason)
        case .success(let response):
            guard response.isSuccess else { return .skipped("the session token request (PUT /latest/api/token) answered \(response.status)") }
            token = String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let headers: HTTPHeaders = ["X-aws-ec2-metadata-token": token]
        let rolesPath = "/latest/meta-data/iam/security-credentials/"
        let role: String
        switch await get(RESTRequest(.GET, rolesPath, headers: headers)) {
        case .failure(let problem): return .skipped(problem.reason)
        case .success(let response):
            if response.status == 404 { return .skipped("no IAM role is attached to this instance; attach an instance profile") }
            guard response.isSuccess else { return .skipped("GET \(rolesPath) answered \(response.status)") }
            let names = String(decoding: response.body, as: UTF8.self).split(whereSeparator: \.isNewline)
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard let first = names.first else { return .skipped("no IAM role is attached to this instance; attach an instance profile") }
            role = first
        }
        let rolePath = rolesPath + SigV4Signer.percentEncode(role, keepingSlashes: false)
        switch await get(RESTRequest(.GET, rolePath, headers: headers)) {
        case .failure(let problem): return .skipped(problem.reason)
        case .success(let response):
            guard response.isSuccess else { return .skipped("GET \(rolePath) answered \(response.status)") }
            do {
                guard let credentials = try decodeCredentials(response.body, platform: "instance metadata", request: "GET \(rolePath)") else {
                    return .skipped("the role \(role)'s answer has no AccessKeyId and SecretAccessKey")
                }
                return .found(credentials, detail: "role \(role)")
            } catch {
                return .skipped("\(error)")
            }
        }
    }

    /// Why instance metadata gave nothing.
    struct MetadataProblem: Error {
        var reason: String
    }

    /// The credentials in a container endpoint's or instance metadata's JSON answer, `nil`
    /// when it has no keys.
    /// - Throws: ``RESTError`` `.decodingFailed` when the answer is not such JSON, or reports a
    ///   `Code` other than `Success`; the message never quotes the answer.
    static func decodeCredentials(_ body: Data, platform: String, request: String) throws -> AWSCredentials? {
        struct Answer: Decodable {
            var Code: String?
            var Message: String?
            var AccessKeyId: String?
            var SecretAccessKey: String?
            var Token: String?
            var Expiration: String?
        }
        let answer = try JSONModels.decode(Answer.self, from: body, platform: platform, request: request)
        if let code = answer.Code, code != "Success" {
            throw RESTError(.decodingFailed, platform: platform, request: request, message: "the answer's Code is \(code): \(answer.Message ?? "no message")")
        }
        guard let keyID = answer.AccessKeyId, !keyID.isEmpty, let secret = answer.SecretAccessKey, !secret.isEmpty else { return nil }
        var expiration: Date?
        if let text = answer.Expiration {
            guard let date = parseTimestamp(text) else {
                throw RESTError(.decodingFailed, platform: platform, request: request, message: "Expiration is not an ISO 8601 time: \(text)")
            }
            expiration = date
        }
        return AWSCredentials(accessKeyID: keyID, secretAccessKey: secret, sessionToken: answer.Token, expiration: expiration)
    }

    /// An ISO 8601 time, with or without fractional seconds (`2026-12-01T12:00:00Z`).
    static func parseTimestamp(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// Whether a plain-http container endpoint may be trusted: loopback, or the ECS and EKS agents.
    static func isAllowedContainerHost(_ host: String) -> Bool {
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if bare == "localhost" || bare == "::1" || bare == "169.254.170.2" || bare == "169.254.170.23" || bare == "fd00:ec2::23" { return true }
        return bare.hasPrefix("127.") && bare.split(separator: ".").count == 4
    }

    /// A URL's query items, values absent read as empty.
    static func queryItems(_ components: URLComponents) -> [QueryItem] {
        (components.queryItems ?? []).map { QueryItem($0.name, $0.value ?? "") }
    }
}
