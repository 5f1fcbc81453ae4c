import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// AWS emulators for tests: PyPI's `ministack` (ECS that runs real containers for RunTask on the
/// Docker daemon `DOCKER_HOST` names, and EC2, IAM, CloudWatch Logs and Secrets Manager), started
/// by a harness script on a loopback port. ``environment`` points the AWS SDKs' endpoint
/// variables, and so the ECS provider, at it.
///
/// With `moto` (`moto[server]`) too, EC2, IAM and CloudWatch Logs can be moto's instead.
///
/// Without Python's `ministack` the tests that need it are skipped, unless
/// `DOCKERPARALLEL_REQUIRE_AWS_EMULATORS=1` (as `.ci/run` sets), which makes it a failure.
public final class AWSEmulators: Sendable {
    /// Whether the emulators' tests run here.
    public static let enabled: Bool =
        ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_AWS_EMULATORS"] == "1" || HarnessProcess.pythonHas("ministack")

    /// Whether the tests that also need moto (`pip install 'moto[server]'`) run here; required
    /// like the others by `DOCKERPARALLEL_REQUIRE_AWS_EMULATORS=1`.
    public static let motoEnabled: Bool =
        ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_AWS_EMULATORS"] == "1"
        || (enabled && HarnessProcess.pythonHas("moto.server"))

    /// The base URL of each service, by signing name (`ecs`, `ec2`, `iam`, `logs`).
    public let endpoints: [String: String]
    /// The access key the harness made when it checks signatures, else `nil` (any is accepted).
    public let accessKey: (id: String, secret: String)?
    private let harness: HarnessProcess

    /// Starts the harness and waits until it answers.
    /// - Parameters:
    ///   - harness: The harness script (`aws_emulators.py`).
    ///   - checksSignatures: Whether every request's SigV4 signature is verified.
    ///   - moto: Whether EC2, IAM and CloudWatch Logs are moto's (`moto_server`), a second
    ///     implementation of those APIs, instead of ministack's.
    ///   - timeout: How long it may take to answer.
    public init(harness script: String, checksSignatures: Bool = false, moto: Bool = false, timeout: Duration = .seconds(60)) async throws {
        let harness = try await HarnessProcess(
            python: [script, "serve"] + (checksSignatures ? ["--auth"] : []) + (moto ? ["--moto"] : []), name: "aws", timeout: timeout)
        var values: [String: String] = [:]
        let words = harness.firstLine.split(whereSeparator: \.isWhitespace)
        for word in words.dropFirst() {
            let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { values[parts[0]] = parts[1] }
        }
        guard words.first == "listening", let ecs = values["ecs"] else {
            harness.stop()
            throw HarnessProcess.Failed(description: "the AWS emulators did not start: they printed '\(harness.firstLine)'; log: \(harness.log.suffix(2000))")
        }
        self.harness = harness
        var endpoints = ["ecs": ecs]
        for service in ["ec2", "iam", "logs", "secretsmanager"] { endpoints[service] = values[service] ?? ecs }
        self.endpoints = endpoints
        if let id = values["access_key_id"], let secret = values["secret_access_key"] { accessKey = (id, secret) } else { accessKey = nil }
    }

    /// The environment a provider (or the CLI) reads to use the emulators: endpoints, a region,
    /// credentials, and no shared files or instance metadata.
    public var environment: [String: String] {
        [
            "AWS_ENDPOINT_URL_ECS": endpoints["ecs"] ?? "", "AWS_ENDPOINT_URL_EC2": endpoints["ec2"] ?? "",
            "AWS_ENDPOINT_URL_IAM": endpoints["iam"] ?? "", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": endpoints["logs"] ?? "",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoints["secretsmanager"] ?? "",
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": accessKey?.id ?? "AKIATESTKEY0000000001",
            "AWS_SECRET_ACCESS_KEY": accessKey?.secret ?? "test-secret-key", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
        ]
    }

    /// Interrupts a Fargate Spot task as AWS does: SIGTERM to its containers now, its stop code
    /// `SpotInterruption`, SIGKILL after `killAfter` seconds.
    public func interrupt(task: String, killAfter: Int? = nil) async throws {
        var request = URLRequest(url: URL(string: (endpoints["ecs"] ?? "") + "/_harness/ecs/interrupt")!)
        request.httpMethod = "POST"
        var body: [String: Any] = ["task": task]
        if let killAfter { body["killAfter"] = killAfter }
        request.httpBody = try JSONSerialization.data(withJSONObject: body)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let (data, response) = try await URLSession.shared.data(for: request)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else {
            throw HarnessProcess.Failed(description: "the interruption of \(task) failed: \(String(decoding: data, as: UTF8.self))")
        }
    }

    /// The harness's log, for messages.
    public var log: String { harness.log }

    /// Stops the emulators (which remove the task containers left) and waits for them to exit.
    public func stop() { harness.stop() }
}
