import DockerEngineProvider
import DockerParallel
import DockerParallelTestKit
import Foundation
import Logging
import ProviderKit
import Testing

@testable import ECSProvider

/// The harness that starts the AWS emulators.
enum ECSTesting {
    static let harness = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Harness/aws_emulators.py").path
    static let shapeChecker = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Harness/check_shapes.py").path
    static let dockerHost: DockerHost = (try? DockerHost.fromEnvironment()) ?? .defaultSocket

    /// A provider on the emulators: the client runs "in the VPC" (the harness gives tasks the
    /// host's network, at 127.0.0.1), its requests recorded.
    static func provider(
        _ emulators: AWSEmulators, _ transport: RecordingTransport, spotShare: Double = 0, environment: [String: String] = [:]
    ) throws -> ECSProvider {
        try ECSProvider(
            configuration: .init(
                serverClientSameLAN: true, spotShare: spotShare, startTimeout: .seconds(90), stopTimeout: .seconds(10),
                environment: emulators.environment.merging(environment) { $1 }),
            transport: transport, pollInterval: .milliseconds(200))
    }

    /// The test image, built once per test run, tagged with a registry name that cannot be
    /// pulled: the emulator then runs the local image.
    static let image = ImageOnce()

    actor ImageOnce {
        private var tag: String?

        func get() async throws -> String {
            if let tag { return tag }
            let name = "127.0.0.1:5999/dockerparallel-test/ecs:latest"
            _ = try await ImageBuilder(host: ECSTesting.dockerHost).build(.init(
                tag: name, dockerparallelBinary: BuiltProducts.path(of: "dockerparallel"),
                extraPrograms: ["/bin/sh", "/bin/sleep", "/bin/echo"]))
            tag = name
            return name
        }
    }

    /// What of the queue's is left on the emulators: running tasks, active task definitions, the
    /// security group, the role, the log group, the secret and the ECS cluster.
    static func leftovers(_ provider: ECSProvider, queue: String) async throws -> [String] {
        let names = ECSNames(queue: queue)
        var left: [String] = []
        for family in [names.serverFamily, names.workerFamily] {
            left += try await provider.tasks(names, family: family).filter { $0.lastStatus != "STOPPED" }.map { "task \($0.taskArn)" }
            let definitions = try await provider.ecs.json(
                "ListTaskDefinitions", ListTaskDefinitionsInput(familyPrefix: family, status: "ACTIVE", nextToken: nil),
                as: ListTaskDefinitionsOutput.self)
            left += (definitions.taskDefinitionArns ?? []).map { "task definition \($0)" }
        }
        if let group = try await provider.securityGroup(names) { left.append("security group \(group)") }
        if try await provider.roleARN(names.executionRole) != nil { left.append("role \(names.executionRole)") }
        let groups = try await provider.logs.json(
            "DescribeLogGroups", DescribeLogGroupsInput(logGroupNamePrefix: names.logGroup), as: DescribeLogGroupsOutput.self)
        left += (groups.logGroups ?? []).compactMap(\.logGroupName).filter { $0 == names.logGroup }.map { "log group \($0)" }
        if try await provider.secretARN(names) != nil { left.append("secret \(names.secret)") }
        let clusters = try await provider.ecs.json(
            "DescribeClusters", DescribeClustersInput(clusters: [names.cluster], include: []), as: DescribeClustersOutput.self)
        left += (clusters.clusters ?? []).filter { $0.status == "ACTIVE" }.map { "ECS cluster \($0.clusterName ?? "")" }
        return left
    }

    /// Checks every recorded request against botocore's service models; returns the problems.
    static func shapeProblems(_ requests: [RecordingTransport.Sent]) throws -> String? {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("dp-shapes-\(UUID().uuidString.prefix(8)).json")
        defer { try? FileManager.default.removeItem(at: file) }
        let list = requests.map { ["service": $0.service, "target": $0.target ?? "", "body": String(decoding: $0.body, as: UTF8.self)] }
        try JSONSerialization.data(withJSONObject: list).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", shapeChecker, file.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return process.terminationStatus == 0 ? nil : text
    }
}

/// Sends to the emulators' one endpoint, and keeps every request (its service, from the
/// signature's scope, its target and body) for the shape check.
actor RecordingTransport: HTTPTransport {
    struct Sent: Sendable {
        var service: String
        var target: String?
        var body: Data
    }

    let inner: AsyncHTTPTransport
    private(set) var sent: [Sent] = []

    init(_ emulators: AWSEmulators) {
        inner = AsyncHTTPTransport(endpoint: .url(emulators.endpoints["ecs"] ?? ""))
    }

    func send(_ request: RESTRequest) async throws -> RESTResponse {
        // Credential=KEY/DATE/REGION/SERVICE/aws4_request
        let scope = (request.headers.first(name: "Authorization") ?? "").split(separator: "/")
        let service = scope.count >= 4 ? String(scope[3]) : "unknown"
        sent.append(Sent(service: service, target: request.headers.first(name: "X-Amz-Target"), body: request.body ?? Data()))
        return try await inner.send(request)
    }
}

/// The ECS provider against PyPI's `ministack`, which runs each RunTask's containers on the
/// private Docker daemon (the harness gives them the host's network).
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: AWSEmulators.enabled, "no ministack: `pip install ministack docker`"))
struct ECSEmulatorTests {
    @Test("the ECS provider passes the conformance kit on FARGATE and FARGATE_SPOT, every request fits botocore's models, and a deep cleanup leaves nothing it made")
    func conformance() async throws {
        try await HeavyTests.oneAtATime {
            let image = try await ECSTesting.image.get()
            let emulators = try await AWSEmulators(harness: ECSTesting.harness)
            defer { emulators.stop() }
            let transport = RecordingTransport(emulators)
            let provider = try ECSTesting.provider(emulators, transport, spotShare: 0.5)
            let queue = "conformance-ecs"
            let port = try await DockerEngineProvider.freePort(on: "127.0.0.1")
            let kit = ConformanceKit(
                provider: provider, workerContainer: DockerWorkerContainer(image: image),
                options: .init(
                    workerNumber: 3, jobSize: 100, timeout: .seconds(90),
                    configuration: ClusterConfiguration(jobQueueName: queue, serverPort: port)))
            let started = ContinuousClock.now
            do {
                try await kit.run { step in print("ecs conformance (+\(ContinuousClock.now - started)): \(step)") }
            } catch {
                Issue.record("the conformance kit failed: \(error)\nthe emulators' log ends:\n\(emulators.log.suffix(3000))")
                throw error
            }
            let cluster = try DockerCluster(
                provider: provider, workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(jobQueueName: queue), verbosity: 0)
            try await cluster.cleanup(deep: true)
            let left = try await ECSTesting.leftovers(provider, queue: queue)
            #expect(left.isEmpty, "left: \(left)")
            let sent = await transport.sent
            let targets = Set(sent.compactMap(\.target))
            #expect(targets.contains("AmazonEC2ContainerServiceV20141113.RunTask"))
            #expect(targets.contains("secretsmanager.CreateSecret"))
            #expect(try ECSTesting.shapeProblems(sent) == nil)
        }
    }

    /// The `dockerparallel` binary's built-in `square` task, by its name.
    struct Square: ParallelTask {
        static let name = "square"
        static func run(_ input: Int) async throws -> Int { input * input }
    }

    @Test("a Swift map of 200 inputs on emulated Fargate returns every square in order, with workers on FARGATE and FARGATE_SPOT")
    func swiftMap() async throws {
        try await HeavyTests.oneAtATime {
            let image = try await ECSTesting.image.get()
            let emulators = try await AWSEmulators(harness: ECSTesting.harness)
            defer { emulators.stop() }
            let transport = RecordingTransport(emulators)
            let provider = try ECSTesting.provider(emulators, transport, spotShare: 0.5)
            let queue = "map-ecs"
            let cluster = try DockerCluster(
                provider: provider, workerContainer: DockerWorkerContainer(image: image, maxWorkersPerContainer: 1),
                configuration: ClusterConfiguration(
                    jobQueueName: queue, expectedWorkerNumber: 2, serverPort: try await DockerEngineProvider.freePort(on: "127.0.0.1")),
                verbosity: 0)
            try await cluster.startCluster()
            let squares = try await cluster.map(Array(1...200), using: Square.self)
            #expect(squares == (1...200).map { $0 * $0 })
            let names = ECSNames(queue: queue)
            let workers = try await provider.tasks(names, family: names.workerFamily)
            #expect(Set(workers.compactMap(\.capacityProviderName)) == ["FARGATE", "FARGATE_SPOT"], "\(workers.map(\.capacityProviderName))")
            try await cluster.stopCluster(cleanup: true)
            try await cluster.cleanup(deep: true)
            let left = try await ECSTesting.leftovers(provider, queue: queue)
            #expect(left.isEmpty, "left: \(left)")
        }
    }

    @Test("a Fargate Spot interruption mid-job loses no task: the worker hands its tasks back and a replacement starts")
    func spotInterruption() async throws {
        try await HeavyTests.oneAtATime {
            let image = try await ECSTesting.image.get()
            let emulators = try await AWSEmulators(harness: ECSTesting.harness)
            defer { emulators.stop() }
            let transport = RecordingTransport(emulators)
            let provider = try ECSTesting.provider(emulators, transport, spotShare: 1)
            let queue = "spot-ecs"
            let names = ECSNames(queue: queue)
            let cluster = try DockerCluster(
                provider: provider, workerContainer: DockerWorkerContainer(image: image, maxWorkersPerContainer: 2),
                configuration: ClusterConfiguration(
                    jobQueueName: queue, expectedWorkerNumber: 4, serverPort: try await DockerEngineProvider.freePort(on: "127.0.0.1")),
                verbosity: 0)
            try await cluster.startCluster()
            try await waitUntil("four workers run", timeout: 90, interval: 0.2) { try await cluster.workerNumbers().running == 4 }
            let job = try await cluster.submitCommands(
                try CommandTemplate(["sh", "-c", "sleep 0.3; echo {}"]), inputs: (0..<40).map(String.init))
            try await waitUntil("some tasks are done", timeout: 60, interval: 0.05) { try await job.status().finished >= 4 }
            let before = try await provider.tasks(names, family: names.workerFamily).filter(\.isRunning)
            #expect(before.count == 2)
            let victim = try #require(before.first)
            try await emulators.interrupt(task: victim.taskArn, killAfter: 10)
            try await waitUntil("the interrupted task stops", timeout: 60, interval: 0.2) {
                try await provider.describe(names, [victim.taskArn]).first?.lastStatus == "STOPPED"
            }
            let stopped = try #require(try await provider.describe(names, [victim.taskArn]).first)
            #expect(stopped.stopCode == "SpotInterruption")
            try await cluster.update()
            try await waitUntil("a replacement runs", timeout: 60, interval: 0.2) {
                let running = try await provider.tasks(names, family: names.workerFamily).filter(\.isRunning)
                return running.count == 2 && !running.contains { $0.taskArn == victim.taskArn }
            }
            var seen: Set<Int> = []
            for try await result in try await job.results() {
                #expect(result.status == .succeeded, "task \(result.index): \(result.error ?? "")")
                #expect(seen.insert(result.index).inserted, "task \(result.index) has two results")
                #expect(String(decoding: result.output, as: UTF8.self) == "\(result.index)\n")
            }
            #expect(seen.count == 40)
            try await cluster.stopCluster(cleanup: true)
            try await cluster.cleanup(deep: true)
            let left = try await ECSTesting.leftovers(provider, queue: queue)
            #expect(left.isEmpty, "left: \(left)")
        }
    }

    @Test("scaling down stops the idle worker task and keeps the busy one, whose task finishes in its first attempt")
    func scalingDownKeepsTheBusyWorker() async throws {
        try await HeavyTests.oneAtATime {
            let image = try await ECSTesting.image.get()
            let emulators = try await AWSEmulators(harness: ECSTesting.harness)
            defer { emulators.stop() }
            let transport = RecordingTransport(emulators)
            let provider = try ECSTesting.provider(emulators, transport)
            let queue = "idle-ecs"
            let names = ECSNames(queue: queue)
            let cluster = try DockerCluster(
                provider: provider, workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(
                    jobQueueName: queue, expectedWorkerNumber: 3, serverPort: try await DockerEngineProvider.freePort(on: "127.0.0.1")),
                verbosity: 0)
            try await cluster.startCluster()
            try await waitUntil("three workers are connected", timeout: 90, interval: 0.2) { try await cluster.serverReport().workers.count == 3 }
            // Each worker is named after its task, read from the task's metadata.
            let tasks = Set(try await provider.tasks(names, family: names.workerFamily).map { String($0.taskArn.split(separator: "/").last ?? "") })
            #expect(Set(try await cluster.serverReport().workers.map(\.name)) == tasks)
            let job = try await cluster.submitCommands(try CommandTemplate(["sh", "-c", "sleep 4; echo {}"]), inputs: ["long"])
            let busy = try await waitUntil("a worker runs the task", timeout: 30, interval: 0.05) {
                try await cluster.serverReport().workers.first { $0.running > 0 }?.name
            }
            try await cluster.setWorkerNumber(1)
            let left = try await provider.tasks(names, family: names.workerFamily).filter { !$0.isStopping }
            #expect(left.map { String($0.taskArn.split(separator: "/").last ?? "") } == [busy], "the busy worker's task is the one kept")
            var results: [TaskResult] = []
            for try await result in try await job.results() { results.append(result) }
            #expect(results.map(\.attempts) == [1], "the long task was not interrupted")
            #expect(results.map { String(decoding: $0.output, as: UTF8.self) } == ["long\n"])
            try await cluster.stopCluster(cleanup: true)
            try await cluster.cleanup(deep: true)
        }
    }

    @Test("two processes starting the same cluster at once end with one server task, and both hold its password")
    func concurrentStartsMakeOneServer() async throws {
        try await HeavyTests.oneAtATime {
            let image = try await ECSTesting.image.get()
            let emulators = try await AWSEmulators(harness: ECSTesting.harness)
            defer { emulators.stop() }
            let queue = "race-ecs"
            let names = ECSNames(queue: queue)
            let port = try await DockerEngineProvider.freePort(on: "127.0.0.1")
            // Two providers, as two processes would have: nothing shared but AWS.
            let first = try ECSTesting.provider(emulators, RecordingTransport(emulators))
            let second = try ECSTesting.provider(emulators, RecordingTransport(emulators))
            func cluster(_ provider: ECSProvider) throws -> DockerCluster {
                try DockerCluster(
                    provider: provider, workerContainer: DockerWorkerContainer(image: image),
                    configuration: ClusterConfiguration(jobQueueName: queue, expectedWorkerNumber: 1, serverPort: port), verbosity: 0)
            }
            let a = try cluster(first)
            let b = try cluster(second)
            async let startA: Void = a.startServer()
            async let startB: Void = b.startServer()
            _ = try await (startA, startB)
            let servers = try await first.tasks(names, family: names.serverFamily).filter { !$0.isStopping }
            #expect(servers.count == 1, "\(servers.map(\.taskArn))")
            // Both handles reach the one server: their passwords are the same.
            _ = try await a.serverReport()
            _ = try await b.serverReport()
            try await a.stopCluster(cleanup: true)
            try await a.cleanup(deep: true)
            let left = try await ECSTesting.leftovers(first, queue: queue)
            #expect(left.isEmpty, "left: \(left)")
        }
    }

    @Test("a server whose image cannot be pulled fails at once with ECS's reason, not at the deadline")
    func missingImage() async throws {
        let emulators = try await AWSEmulators(harness: ECSTesting.harness)
        defer { emulators.stop() }
        let provider = try ECSTesting.provider(emulators, RecordingTransport(emulators))
        let cluster = try DockerCluster(
            provider: provider, workerContainer: DockerWorkerContainer(image: "127.0.0.1:5999/dockerparallel-test/no-such-image:1"),
            configuration: ClusterConfiguration(jobQueueName: "missing-image-ecs", serverPort: 18_899), verbosity: 0)
        let started = ContinuousClock.now
        let error = await #expect(throws: DockerParallelError.self) { try await cluster.startServer() }
        #expect(ContinuousClock.now - started < .seconds(45), "it failed at once, not at the 90 s deadline")
        #expect(error?.code == .serverStartFailed)
        #expect(error?.message.contains("no-such-image") == true, "\(String(describing: error))")
        try await cluster.cleanup(deep: true)
        let left = try await ECSTesting.leftovers(provider, queue: "missing-image-ecs")
        #expect(left.isEmpty, "left: \(left)")
    }

    @Test("workers whose start-up fails are an error with the end of their log, not replaced forever")
    func workersThatCannotStart() async throws {
        try await HeavyTests.oneAtATime {
            let image = try await ECSTesting.image.get()
            let emulators = try await AWSEmulators(harness: ECSTesting.harness)
            defer { emulators.stop() }
            let provider = try ECSTesting.provider(emulators, RecordingTransport(emulators))
            let queue = "broken-workers-ecs"
            let names = ECSNames(queue: queue)
            var container = DockerWorkerContainer(image: image)
            container.systemPackages = ["dockerparallel-no-such-package"]
            let cluster = try DockerCluster(
                provider: provider, workerContainer: container,
                configuration: ClusterConfiguration(
                    jobQueueName: queue, expectedWorkerNumber: 0, serverPort: try await DockerEngineProvider.freePort(on: "127.0.0.1")),
                verbosity: 0)
            try await cluster.startCluster()
            try await cluster.setWorkerNumber(1)
            try await waitUntil("the worker task stops", timeout: 60, interval: 0.2) {
                try await provider.tasks(names, family: names.workerFamily).filter { !$0.isStopping }.isEmpty
            }
            let error = await #expect(throws: DockerParallelError.self) { try await cluster.setWorkerNumber(1) }
            #expect(error?.message.contains("failed at start-up") == true, "\(String(describing: error))")
            #expect(error?.message.contains("dockerparallel-no-such-package") == true, "the log's end names the package: \(String(describing: error))")
            try await cluster.stopCluster(ignoreErrors: true, cleanup: true)
            try await cluster.cleanup(deep: true)
        }
    }

    @Test("with signatures checked, signed requests pass, and a wrong secret key fails with an error that names it")
    func signaturesAreVerified() async throws {
        let emulators = try await AWSEmulators(harness: ECSTesting.harness, checksSignatures: true)
        defer { emulators.stop() }
        let transport = RecordingTransport(emulators)
        let provider = try ECSTesting.provider(emulators, transport)
        let context = ClusterContext(
            configuration: ClusterConfiguration(jobQueueName: "signed"), runtime: ClusterRuntime(),
            staticData: StaticData(
                configuration: ClusterConfiguration(jobQueueName: "signed"), workerContainerName: "DockerWorkerContainer", workerImage: "none",
                maxWorkersPerContainer: 1, verbosity: 0),
            stopClusterOnExit: false, verbosity: 0,
            logger: Logger(label: "test"))
        try await provider.initialize(context: context)
        let names = ECSNames(queue: "signed")
        _ = try await provider.prepare(names, port: 8888, logger: context.logger)
        try await provider.cleanup(context: context, deep: true)
        let left = try await ECSTesting.leftovers(provider, queue: "signed")
        #expect(left.isEmpty, "left: \(left)")

        let wrong = try ECSTesting.provider(emulators, transport, environment: ["AWS_SECRET_ACCESS_KEY": "not-the-secret"])
        let error = await #expect(throws: DockerParallelError.self) { try await wrong.initialize(context: context) }
        #expect(error?.message.contains("secret key") == true, "\(String(describing: error))")
    }
}

/// EC2, IAM and CloudWatch Logs on moto, a second implementation of those APIs, with every
/// signature verified: what the provider makes there, and its deep cleanup.
@Suite(.serialized, .timeLimit(.minutes(5)), .enabled(if: AWSEmulators.motoEnabled, "no ministack or moto: `pip install ministack docker 'moto[server]'`"))
struct ECSMotoTests {
    @Test("on moto with signatures checked, the provider finds the default VPC, makes the group, role and log group with their tags, and a deep cleanup deletes exactly those")
    func resourcesOnMoto() async throws {
        let emulators = try await AWSEmulators(harness: ECSTesting.harness, checksSignatures: true, moto: true)
        defer { emulators.stop() }
        #expect(emulators.endpoints["ec2"] != emulators.endpoints["ecs"], "EC2 is moto's")
        let provider = try ECSProvider(
            configuration: .init(environment: emulators.environment), transport: nil, pollInterval: .milliseconds(200))
        let context = ECSRecordedTests.context("moto")
        try await provider.initialize(context: context)
        let names = ECSNames(queue: "moto")
        let resources = try await provider.prepare(names, port: 8888, logger: context.logger)
        #expect(resources.subnets.count >= 2, "the default VPC's default subnets: \(resources.subnets)")
        #expect(resources.executionRoleARN.hasSuffix(":role/\(names.executionRole)"))
        // Opening the port again is not an error: each rule exists, and moto answers InvalidPermission.Duplicate for it, as AWS does.
        try await provider.openPort(8888, in: resources.securityGroup, vpc: resources.vpc)
        #expect(try await provider.securityGroup(names) == resources.securityGroup)
        #expect(try await provider.roleIsOurs(names))
        #expect(try await provider.logGroupIsOurs(names))
        try await provider.cleanup(context: context, deep: true)
        let left = try await ECSTesting.leftovers(provider, queue: "moto")
        #expect(left.isEmpty, "left: \(left)")
        // The default VPC and its subnets were found, not made: they are still there.
        let (vpc, subnets) = try await provider.network()
        #expect(vpc == resources.vpc && subnets == resources.subnets)
    }
}

/// The provider on real AWS: runs only when `DOCKERPARALLEL_ECS_LIVE=1`, with credentials and a
/// region the AWS chain finds, and an image Fargate can pull in `DOCKERPARALLEL_ECS_IMAGE`
/// (`dockerparallel image build`, pushed to ECR). It costs a few cents: the tasks run minutes.
@Suite(.serialized, .timeLimit(.minutes(30)), .enabled(if: ECSLive.enabled, "no live AWS: set DOCKERPARALLEL_ECS_LIVE=1, AWS credentials and region, and DOCKERPARALLEL_ECS_IMAGE"))
struct ECSLiveTests {
    @Test("the provider passes the conformance kit on real Fargate, its client outside the VPC over TLS, and a deep cleanup leaves nothing it made")
    func conformanceOnRealAWS() async throws {
        let provider = try ECSProvider(configuration: .init(spotShare: 0.5))
        let queue = "conformance-live-\(UUID().uuidString.prefix(6).lowercased())"
        let kit = ConformanceKit(
            provider: provider, workerContainer: DockerWorkerContainer(image: ECSLive.image),
            options: .init(workerNumber: 2, jobSize: 100, timeout: .seconds(600), configuration: ClusterConfiguration(jobQueueName: queue)))
        do {
            try await kit.run { step in print("live ecs conformance: \(step)") }
        } catch {
            let cluster = try DockerCluster(
                provider: provider, workerContainer: DockerWorkerContainer(image: ECSLive.image),
                configuration: ClusterConfiguration(jobQueueName: queue), verbosity: 0)
            try? await cluster.cleanup(deep: true)
            throw error
        }
        let cluster = try DockerCluster(
            provider: provider, workerContainer: DockerWorkerContainer(image: ECSLive.image),
            configuration: ClusterConfiguration(jobQueueName: queue), verbosity: 0)
        try await cluster.cleanup(deep: true)
        let left = try await ECSTesting.leftovers(provider, queue: queue)
        #expect(left.isEmpty, "left: \(left)")
    }
}

enum ECSLive {
    static let environment = ProcessInfo.processInfo.environment
    static let enabled = environment["DOCKERPARALLEL_ECS_LIVE"] == "1" && environment["DOCKERPARALLEL_ECS_IMAGE"] != nil
    static var image: String { environment["DOCKERPARALLEL_ECS_IMAGE"] ?? "" }
}
