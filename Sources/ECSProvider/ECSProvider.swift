import DockerEngineProvider
import DockerParallelCore
import Foundation
import Logging
import ProviderKit

/// Runs the server and the workers as AWS ECS Fargate tasks, through the ECS, EC2, IAM,
/// CloudWatch Logs and Secrets Manager APIs, signed with SigV4 (the original's
/// `ECSFargateProvider`, with Fargate Spot).
///
/// For a cluster (job queue) it finds, or makes and tags with the queue's name:
/// - an ECS cluster (`dockerparallel-<queue>`, with the FARGATE and FARGATE_SPOT capacity
///   providers), unless one is configured;
/// - the default VPC's default subnets, unless subnets are configured;
/// - a security group that opens the server's port to its own members (the workers), and to
///   the client's addresses when the server has a public IP;
/// - a task execution role that may pull images, write logs and read the cluster's secret,
///   unless one is configured;
/// - a CloudWatch Logs group, `/dockerparallel/<queue>`;
/// - a Secrets Manager secret, `dockerparallel/<queue>`, with the password, the TLS keys and the
///   static data that `reconnect` reads back: ECS puts the secrets into the containers'
///   environment when they start, so they are in no task definition;
/// - task definitions for the server and the workers, whose CPU and memory are Fargate's
///   smallest valid combination that holds the hardware asked.
///
/// Workers are tasks started with RunTask in batches of at most 10, on FARGATE, FARGATE_SPOT or
/// a mix (``Configuration/spotShare``). A deep cleanup deletes exactly what it made.
public actor ECSProvider: CloudProvider {
    /// Where and how the tasks run.
    public struct Configuration: Sendable {
        /// The region; `nil`: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's.
        public var region: String?
        /// The shared files' profile; `nil`: `AWS_PROFILE`, else `default`.
        public var profile: String?
        /// An existing ECS cluster to run in (never deleted); `nil`: `dockerparallel-<queue>`,
        /// made when missing.
        public var cluster: String?
        /// The subnets of the tasks; empty: the default VPC's default subnets.
        public var subnets: [String]
        /// More security groups for every task, besides the one made for the cluster.
        public var securityGroups: [String]
        /// Whether tasks get a public IP (needed to pull images in a public subnet without a NAT
        /// gateway, and for a client outside the VPC to reach the server).
        public var assignsPublicIP: Bool
        /// Whether the client runs in the VPC (the original's `serverClientSameLAN`): it then
        /// dials the server's private address; otherwise its public one.
        public var serverClientSameLAN: Bool
        /// The addresses (CIDR) allowed to reach the server's port from outside the VPC, when
        /// the server has a public IP; the password and TLS guard it too.
        public var clientCIDR: String
        /// The share of workers on FARGATE_SPOT, from 0 (none, the default) to 1 (all).
        public var spotShare: Double
        /// The task execution role's name or ARN; `nil`: one made for the cluster.
        public var executionRole: String?
        /// The role the containers act as (for AWS calls from tasks); `nil`: none.
        public var taskRole: String?
        /// The address at which clients reach the server, overriding the task's (a proxy's, a
        /// load balancer's, an emulator's).
        public var serverAddress: String?
        /// How long to wait for the server task to run.
        public var startTimeout: Duration
        /// How long a stopped container gets to drain before it is killed (Fargate's most: 120 s).
        public var stopTimeout: Duration
        /// The environment credentials, region and endpoint overrides are read from.
        public var environment: [String: String]

        /// Creates a configuration.
        public init(
            region: String? = nil, profile: String? = nil, cluster: String? = nil, subnets: [String] = [], securityGroups: [String] = [],
            assignsPublicIP: Bool = true, serverClientSameLAN: Bool = false, clientCIDR: String = "0.0.0.0/0", spotShare: Double = 0,
            executionRole: String? = nil, taskRole: String? = nil, serverAddress: String? = nil, startTimeout: Duration = .seconds(300),
            stopTimeout: Duration = .seconds(120), environment: [String: String] = ProcessInfo.processInfo.environment
        ) {
            self.region = region
            self.profile = profile
            self.cluster = cluster
            self.subnets = subnets
            self.securityGroups = securityGroups
            self.assignsPublicIP = assignsPublicIP
            self.serverClientSameLAN = serverClientSameLAN
            self.clientCIDR = clientCIDR
            self.spotShare = spotShare
            self.executionRole = executionRole
            self.taskRole = taskRole
            self.serverAddress = serverAddress
            self.startTimeout = startTimeout
            self.stopTimeout = stopTimeout
            self.environment = environment
        }

        /// Checks the settings a user types.
        /// - Throws: `.invalidArgument` naming the setting and what it takes.
        public func validate() throws {
            guard (0...1).contains(spotShare) else {
                throw DockerParallelError(
                    .invalidArgument, "the Spot share \(spotShare) is out of range: use a number from 0 (no Spot) to 1 (all workers on Fargate Spot)")
            }
            guard stopTimeout <= .seconds(120), stopTimeout >= .seconds(2) else {
                throw DockerParallelError(.invalidArgument, "Fargate's stop timeout is 2 to 120 seconds, not \(stopTimeout)")
            }
            let parts = clientCIDR.split(separator: "/")
            guard parts.count == 2, let bits = Int(parts[1]), (0...32).contains(bits), parts[0].split(separator: ".").count == 4 else {
                throw DockerParallelError(.invalidArgument, "'\(clientCIDR)' is not an IPv4 CIDR block such as 203.0.113.7/32")
            }
        }

        /// The environment with the configured profile and region in it.
        var effectiveEnvironment: [String: String] {
            var environment = self.environment
            if let profile { environment["AWS_PROFILE"] = profile }
            if let region { environment["AWS_REGION"] = region }
            return environment
        }
    }

    /// The exit status of a container whose start-up failed (packages, bad settings).
    public static let startupFailureStatus = DockerEngineProvider.startupFailureStatus

    /// The provider's configuration.
    public let configuration: Configuration
    /// The region it works in.
    public nonisolated let region: String
    let credentials: AWSCredentialChain
    let ecs: AWSClient
    let ec2: AWSClient
    let iam: AWSClient
    let logs: AWSClient
    let secrets: AWSClient
    let pollInterval: Duration
    /// What was found or made for each queue, once per process.
    var prepared: [String: Resources] = [:]
    /// The worker task definition registered by this process, per queue and what it holds.
    var workerDefinitions: [String: (key: String, arn: String)] = [:]

    /// What the tasks of one cluster run in.
    struct Resources: Sendable {
        var cluster: String
        var subnets: [String]
        var vpc: String
        var securityGroup: String
        var executionRoleARN: String
        var logGroup: String
    }

    /// Creates a provider; nothing is sent until it is used.
    /// - Throws: `.invalidArgument` for a bad setting or no region.
    public init(configuration: Configuration = Configuration()) throws {
        try self.init(configuration: configuration, transport: nil)
    }

    /// Creates a provider whose requests go through `transport` (tests pass recorded answers or
    /// a counting wrapper), or to each service's endpoint when it is `nil`.
    package init(
        configuration: Configuration, transport: (any HTTPTransport)?, retry: RetryPolicy? = nil,
        pollInterval: Duration = .milliseconds(500)
    ) throws {
        try configuration.validate()
        let environment = configuration.effectiveEnvironment
        let files = AWSSharedFiles(environment: environment, homeDirectory: nil)
        let profile = try? files.profile(named: AWSProfile.selectedName(environment: environment).name)
        guard let region = AWSRegion.resolve(environment: environment, profile: profile ?? nil) else {
            throw DockerParallelError(
                .invalidArgument,
                "no AWS region is set: pass --region, or set AWS_REGION (or a region in the profile of ~/.aws/config)")
        }
        self.configuration = configuration
        self.region = region
        let chain = AWSCredentialChain(configuration: .init(environment: environment))
        self.credentials = chain
        func client(_ service: AWSClient.Service) -> AWSClient {
            AWSClient(service: service, region: region, environment: environment, credentials: chain, transport: transport, retry: retry)
        }
        self.ecs = client(.ecs)
        self.ec2 = client(.ec2)
        self.iam = client(.iam)
        self.logs = client(.logs)
        self.secrets = client(.secretsManager)
        self.pollInterval = pollInterval
    }

    func names(_ context: ClusterContext) -> ECSNames { ECSNames(queue: context.configuration.jobQueueName) }

    /// The ECS cluster a queue's tasks run in.
    func clusterName(_ names: ECSNames) -> String { configuration.cluster ?? names.cluster }

    // MARK: CloudProvider

    /// Checks that credentials can be found and that ECS answers.
    /// - Throws: `.providerFailed` listing the credential sources tried, or naming what AWS said.
    public func initialize(context: ClusterContext) async throws {
        try ClusterConfiguration.validate(jobQueueName: context.configuration.jobQueueName)
        do {
            _ = try await credentials.credentials()
        } catch let error as AWSCredentialsError {
            throw DockerParallelError(.providerFailed, "no AWS credentials: \(error)")
        }
        try await aws {
            _ = try await ecs.json(
                "DescribeClusters", DescribeClustersInput(clusters: [clusterName(names(context))], include: []),
                as: DescribeClustersOutput.self)
        }
    }

    public func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws {
        let names = names(context)
        if context.isRestart, try await storedStaticData(context: context) == nil {
            throw DockerParallelError(
                .serverNotRunning, "the server of '\(names.queue)' was stopped on purpose while it was being restarted")
        }
        if try await serverTask(names) != nil {
            // Running already, or started by another process.
            _ = try await waitForServer(names)
            return
        }
        let port = context.configuration.serverPort == 0 ? 8888 : context.configuration.serverPort
        let size = try FargateSize(hardware)
        var environment = container.environment
        var staticData = context.staticData
        staticData.configuration.serverPort = port
        let (value, keys) = try secretValue(environment: &environment, staticData: staticData)
        let secretARN: String
        if context.isRestart {
            secretARN = try await updateSecret(names, text: value)
        } else if let made = try await createSecret(names, text: value) {
            secretARN = made
        } else {
            // The secret is the cluster's lock: another process is starting this cluster, and
            // its server (with its password) is the one.
            _ = try await waitForServer(names, appearingWithin: configuration.startTimeout)
            return
        }
        let resources = try await prepare(names, port: port, logger: context.logger)
        environment[EnvironmentKey.host] = "0.0.0.0"
        environment[EnvironmentKey.port] = String(port)
        environment[EnvironmentKey.storePath] = "/workspace/store/broker.sqlite"
        if let address = configuration.serverAddress { environment[EnvironmentKey.tlsNames] = address }
        let definition = try await registerTaskDefinition(
            family: names.serverFamily, names: names, resources: resources, container: container, environment: environment,
            secretARN: secretARN, keys: keys, size: size, component: "server", port: port)
        let started = try await runTasks(
            names, resources: resources, definition: definition, count: 1, spotShare: 0,
            tags: [ECSNames.componentTag: "server", ECSNames.portTag: String(port)], overrides: nil)
        context.logger.debug("started the server task", metadata: ["task": "\(started.first ?? "")", "size": "\(size)"])
        try await keepOneServer(names)
        _ = try await waitForServer(names, started: started.first)
    }

    /// Stops every server task but the oldest: two processes that restarted the same server at
    /// once both stop the same extra ones.
    func keepOneServer(_ names: ECSNames) async throws {
        let servers = try await tasks(names, family: names.serverFamily).filter { !$0.isStopping }
            .sorted { ($0.createdAt ?? 0, $0.taskArn) < ($1.createdAt ?? 0, $1.taskArn) }
        for extra in servers.dropFirst() {
            try await stopTask(names, extra.taskArn, reason: "dockerparallel: another process started this server first")
        }
    }

    /// Stops the server's task and deletes the cluster's secret, so that nothing restarts it.
    public func stopServer(context: ClusterContext) async throws {
        let names = names(context)
        for task in try await tasks(names, family: names.serverFamily) where !task.isStopping {
            try await stopTask(names, task.taskArn, reason: "dockerparallel: the server was stopped")
        }
        try await deleteSecret(names)
    }

    public func serverStatus(context: ClusterContext) async throws -> ServerStatus {
        guard let task = try await serverTask(names(context)) else { return .stopped }
        return task.isRunning ? .running : .initializing
    }

    /// Workers dial the server task's private address; clients its public one, unless they run
    /// in the VPC or an address is configured.
    public func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints {
        let names = names(context)
        let task = try await waitForServer(names)
        guard let port = task.tag(ECSNames.portTag).flatMap(Int.init), let privateAddress = task.privateAddress else {
            throw DockerParallelError(.serverStartFailed, "the server task of '\(names.queue)' has no address or port")
        }
        let inside = Endpoint(host: privateAddress, port: port, usesTLS: !TransportSecurity.isLoopback(privateAddress))
        if let address = configuration.serverAddress {
            return ServerEndpoints(
                publicEndpoint: Endpoint(host: address, port: port, usesTLS: !TransportSecurity.isLoopback(address)), privateEndpoint: inside)
        }
        if configuration.serverClientSameLAN || !configuration.assignsPublicIP {
            return ServerEndpoints(publicEndpoint: inside, privateEndpoint: inside)
        }
        guard let address = try await publicAddress(of: task) else {
            throw DockerParallelError(
                .serverStartFailed,
                "the server task of '\(names.queue)' has no public IP: give its subnets a route to an internet gateway, or run the client in the VPC with --same-lan")
        }
        return ServerEndpoints(publicEndpoint: Endpoint(host: address, port: port, usesTLS: true), privateEndpoint: inside)
    }

    public func setWorkerNumber(
        context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int
    ) async throws {
        let names = names(context)
        var current: [ScalingPlan.Container] = []
        var running = (total: 0, spot: 0)
        for task in try await tasks(names, family: names.workerFamily) where !task.isStopping {
            running.total += 1
            if task.capacityProviderName == "FARGATE_SPOT" { running.spot += 1 }
            // Workers are named after their task's id (the worker reads it from the task's metadata).
            let id = task.taskArn.split(separator: "/").last.map(String.init) ?? task.taskArn
            current.append(ScalingPlan.Container(
                id: task.taskArn, slots: task.tag(ECSNames.workersTag).flatMap(Int.init) ?? 1,
                order: Int64((task.createdAt ?? 0) * 1e9), activity: ScalingPlan.activity(of: id, in: context.workerActivity)))
        }
        let plan = ScalingPlan(current: current, slotsPerContainer: container.maxWorkersPerContainer, wantedWorkers: workerNumber)
        for arn in plan.idsToStop { try await stopTask(names, arn, reason: "dockerparallel: scaled down") }
        guard !plan.sizesToStart.isEmpty else { return }
        guard let server = try await serverTask(names), let port = server.tag(ECSNames.portTag).flatMap(Int.init) else {
            throw DockerParallelError(.serverNotRunning, "the server of '\(names.queue)' is not running: start the cluster first")
        }
        guard let secretARN = try await secretARN(names) else {
            throw DockerParallelError(.serverNotRunning, "the secret of '\(names.queue)' is gone: the server was stopped")
        }
        let resources = try await prepare(names, port: port, logger: context.logger)
        var environment = container.environment
        for (key, _, _) in Self.secretItems { environment[key] = nil }
        environment[EnvironmentKey.passwordFile] = nil
        environment[EnvironmentKey.slots] = nil
        environment[EnvironmentKey.workerName] = nil
        let definition = try await workerDefinition(
            names, resources: resources, container: container, environment: environment, secretARN: secretARN, hardware: hardware)
        // Workers that cannot start would be replaced forever: say why instead.
        if let failure = try await workerStartupFailure(names, definition: definition) {
            throw DockerParallelError(.providerFailed, failure)
        }
        var counts: [Int: Int] = [:]
        for slots in plan.sizesToStart { counts[slots, default: 0] += 1 }
        for (slots, count) in counts.sorted(by: { $0.key > $1.key }) {
            let overrides = TaskOverride(containerOverrides: [
                ContainerOverride(name: "worker", environment: [KeyValuePair(name: EnvironmentKey.slots, value: String(slots))])
            ])
            _ = try await runTasks(
                names, resources: resources, definition: definition, count: count, spotShare: configuration.spotShare,
                tags: [ECSNames.componentTag: "worker", ECSNames.workersTag: String(slots)], overrides: overrides, running: running)
            running.total += count
        }
    }

    /// Counted from the worker tasks: running ones run, provisioning and pending ones start.
    public func workerNumbers(context: ClusterContext) async throws -> WorkerNumbers {
        let names = names(context)
        var numbers = WorkerNumbers(expected: context.configuration.expectedWorkerNumber, initializing: 0, running: 0)
        for task in try await tasks(names, family: names.workerFamily) where !task.isStopping {
            let slots = task.tag(ECSNames.workersTag).flatMap(Int.init) ?? 1
            if task.isRunning { numbers.running += slots } else { numbers.initializing += slots }
        }
        return numbers
    }

    public func clusterExists(context: ClusterContext) async throws -> Bool {
        try await secretARN(names(context)) != nil
    }

    public func reconnect(context: ClusterContext) async throws -> StaticData {
        guard let data = try await storedStaticData(context: context) else {
            throw DockerParallelError(
                .clusterNotFound,
                "no cluster '\(context.configuration.jobQueueName)' is in \(region): its secret \(names(context).secret) is not in Secrets Manager")
        }
        return data
    }

    /// The static data in the cluster's secret, with the password and TLS keys; `nil` once the
    /// secret is gone (the server was stopped on purpose).
    public func storedStaticData(context: ClusterContext) async throws -> StaticData? {
        guard let stored = try await readSecret(names(context)) else { return nil }
        return stored
    }

    /// Stops the cluster's tasks and deletes its secret, and waits until the tasks stopped;
    /// `deep` also deletes the task definitions, the security group, the log group, the
    /// execution role and the ECS cluster, each only when this provider made it.
    public func cleanup(context: ClusterContext, deep: Bool) async throws {
        let names = names(context)
        var stopping: [String] = []
        for family in [names.workerFamily, names.serverFamily] {
            for task in try await tasks(names, family: family) {
                if !task.isStopping { try await stopTask(names, task.taskArn, reason: "dockerparallel: the cluster was removed") }
                stopping.append(task.taskArn)
            }
        }
        try await deleteSecret(names)
        try await waitUntilStopped(names, stopping)
        prepared[names.queue] = nil
        workerDefinitions[names.queue] = nil
        if deep { try await deleteResources(names) }
    }

    /// The names of the clusters whose secret is in Secrets Manager, sorted.
    public func clusterNames() async throws -> [String] {
        var names: Set<String> = []
        var token: String?
        repeat {
            let page = try await aws {
                try await secrets.json(
                    "ListSecrets",
                    ListSecretsInput(Filters: [.init(Key: "name", Values: [ECSNames.secretPrefix])], NextToken: token, MaxResults: 100),
                    as: ListSecretsOutput.self)
            }
            for secret in page.SecretList ?? [] {
                if let queue = secret.Tags?.first(where: { $0.Key == ECSNames.queueTag })?.Value { names.insert(queue) }
                else if let name = secret.Name, name.hasPrefix(ECSNames.secretPrefix) { names.insert(String(name.dropFirst(ECSNames.secretPrefix.count))) }
            }
            token = page.NextToken
        } while token != nil
        return names.sorted()
    }

    /// Runs AWS calls, turning a refusal into a `DockerParallelError` that names it.
    @discardableResult
    func aws<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as AWSServiceError {
            throw DockerParallelError(.providerFailed, Self.explain(error, region: region))
        } catch let error as AWSCredentialsError {
            throw DockerParallelError(.providerFailed, "no AWS credentials: \(error)")
        } catch let error as RESTError {
            throw DockerParallelError(.providerFailed, "\(error)")
        }
    }

    /// An AWS refusal in the user's terms, with what to do about it.
    static func explain(_ error: AWSServiceError, region: String) -> String {
        let signatureCodes: Set = ["SignatureDoesNotMatch", "IncompleteSignature", "InvalidSignatureException", "AuthFailure"]
        let message = error.message.lowercased()
        let aboutTime = ["RequestExpired", "RequestTimeTooSkewed"].contains(error.code)
            || (signatureCodes.contains(error.code) && (message.contains("expired") || message.contains("current") || message.contains("skew")))
        let hint: String
        if aboutTime {
            hint = " The request's time is off AWS's clock by over 5 minutes: set this machine's clock."
        } else if signatureCodes.contains(error.code) {
            hint = " The secret key does not match the access key: check AWS_SECRET_ACCESS_KEY or the profile."
        } else if ["UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId"].contains(error.code) {
            hint = " The access key is not known to AWS: check AWS_ACCESS_KEY_ID or the profile."
        } else if ["AccessDeniedException", "AccessDenied", "UnauthorizedOperation"].contains(error.code) {
            hint = " This identity may not do that: it needs ECS, EC2 (VPCs, subnets, security groups), IAM (roles), CloudWatch Logs and Secrets Manager permissions; see docs/ecs.md."
        } else {
            hint = ""
        }
        return "\(error) (region \(region)).\(hint)"
    }
}
