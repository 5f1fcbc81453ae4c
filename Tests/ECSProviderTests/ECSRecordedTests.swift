import DockerParallelCore
import Foundation
import Logging
import NIOHTTP1
import ProviderKit
import Testing

@testable import ECSProvider

/// The provider's decisions against answers recorded from the AWS API references: how it batches
/// and splits RunTask, what its errors say, where it finds the server.
@Suite struct ECSRecordedTests {
    static let environment = [
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/c", "AWS_CONFIG_FILE": "/nonexistent/c",
    ]

    static func provider(_ exchanges: [RecordedTransport.Exchange], spot: Double = 0, sameLAN: Bool = false) throws -> (ECSProvider, RecordedTransport) {
        let transport = RecordedTransport(exchanges)
        let provider = try ECSProvider(
            configuration: .init(serverClientSameLAN: sameLAN, spotShare: spot, environment: environment), transport: transport,
            retry: RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(1), maxDelay: .milliseconds(1), isThrottling: AWSClient.isThrottling),
            pollInterval: .milliseconds(1))
        return (provider, transport)
    }

    static let resources = ECSProvider.Resources(
        cluster: "dockerparallel-q", subnets: ["subnet-1", "subnet-2"], vpc: "vpc-1", securityGroup: "sg-1",
        executionRoleARN: "arn:aws:iam::1:role/r", logGroup: "/dockerparallel/q")

    /// A RunTask answer with `count` tasks, checking the request's target.
    static func runTask(_ count: Int, check: @escaping @Sendable ([String: Any]) throws -> Void = { _ in }) -> RecordedTransport.Exchange {
        let tasks = (0..<count).map { _ in #"{"taskArn":"arn:aws:ecs:eu-west-1:1:task/dockerparallel-q/\#(UUID().uuidString)","lastStatus":"PROVISIONING"}"# }
        return .json(.POST, "/", #"{"tasks":[\#(tasks.joined(separator: ","))],"failures":[]}"#) { request in
            #expect(request.headers.first(name: "X-Amz-Target") == "AmazonEC2ContainerServiceV20141113.RunTask")
            try check(try JSONSerialization.jsonObject(with: request.body ?? Data()) as? [String: Any] ?? [:])
        }
    }

    static func provider(of body: [String: Any]) -> String {
        ((body["capacityProviderStrategy"] as? [[String: Any]])?.first?["capacityProvider"] as? String) ?? "none"
    }

    @Test func twentyThreeWorkersGoInBatchesOfTenWithTheSpotShareInEach() {
        let plan = ECSProvider.launchPlan(count: 23, spotShare: 0.8)
        #expect(plan.map(\.provider) == ["FARGATE_SPOT", "FARGATE", "FARGATE_SPOT", "FARGATE", "FARGATE_SPOT", "FARGATE"])
        #expect(plan.map(\.count) == [8, 2, 8, 2, 2, 1])
        #expect(ECSProvider.launchPlan(count: 3, spotShare: 0).map(\.provider) == ["FARGATE"])
        #expect(ECSProvider.launchPlan(count: 12, spotShare: 1).map(\.count) == [10, 2])
        #expect(ECSProvider.launchPlan(count: 0, spotShare: 0.5).isEmpty)
        // Workers added one at a time still mix: the share counts those running.
        var running = (total: 0, spot: 0)
        for _ in 0..<4 {
            let one = ECSProvider.launchPlan(count: 1, spotShare: 0.5, running: running)
            running.total += 1
            running.spot += one.filter { $0.provider == "FARGATE_SPOT" }.reduce(0) { $0 + $1.count }
        }
        #expect(running.spot == 2)
    }

    @Test func everyRunTaskCarriesTheNetworkTagsAndStartedBy() async throws {
        let (provider, transport) = try Self.provider([
            Self.runTask(2) { body in
                #expect(body["startedBy"] as? String == "dockerparallel")
                #expect(body["count"] as? Int == 2)
                let network = (body["networkConfiguration"] as? [String: Any])?["awsvpcConfiguration"] as? [String: Any]
                #expect(network?["subnets"] as? [String] == ["subnet-1", "subnet-2"])
                #expect(network?["securityGroups"] as? [String] == ["sg-1"])
                #expect(network?["assignPublicIp"] as? String == "ENABLED")
                let tags = body["tags"] as? [[String: String]] ?? []
                #expect(tags.contains(["key": "dockerparallel:queue", "value": "q"]))
                #expect(tags.contains(["key": "dockerparallel:workers", "value": "2"]))
                // On-demand alone: the FARGATE launch type, which needs no capacity provider on the cluster.
                #expect(body["launchType"] as? String == "FARGATE")
                #expect(body["capacityProviderStrategy"] == nil)
            },
        ])
        let started = try await provider.runTasks(
            ECSNames(queue: "q"), resources: Self.resources, definition: "td", count: 2, spotShare: 0,
            tags: [ECSNames.workersTag: "2"], overrides: nil)
        #expect(started.count == 2)
        try await transport.verify()
    }

    @Test func tasksECSCouldNotPlaceAreNamedWithTheirReason() async throws {
        let (provider, _) = try Self.provider([
            .json(.POST, "/", #"{"tasks":[],"failures":[{"arn":"x","reason":"Capacity is unavailable at this time. Please try again later or in a different availability zone"}]}"#)
        ], spot: 1)
        await #expect {
            try await provider.runTasks(ECSNames(queue: "q"), resources: Self.resources, definition: "td", count: 1, spotShare: 1, tags: [:], overrides: nil)
        } throws: { error in
            let text = "\(error)"
            return text.contains("started 0 of 1 FARGATE_SPOT") && text.contains("Capacity is unavailable") && text.contains("lower --spot")
        }
    }

    @Test func theAccountsTaskQuotaIsNamed() async throws {
        let (provider, _) = try Self.provider([
            .json(.POST, "/", status: 400, #"{"__type":"ClientException","message":"You've reached the limit on the number of tasks you can run concurrently"}"#)
        ])
        await #expect {
            try await provider.runTasks(ECSNames(queue: "q"), resources: Self.resources, definition: "td", count: 1, spotShare: 0, tags: [:], overrides: nil)
        } throws: { error in
            "\(error)".contains("quota") && "\(error)".contains("Service Quotas")
        }
    }

    @Test func throttledRunTaskIsSentAgain() async throws {
        let (provider, transport) = try Self.provider([
            .json(.POST, "/", status: 400, #"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
            Self.runTask(1),
        ])
        let started = try await provider.runTasks(
            ECSNames(queue: "q"), resources: Self.resources, definition: "td", count: 1, spotShare: 0, tags: [:], overrides: nil)
        #expect(started.count == 1)
        try await transport.verify()
    }

    @Test func aNewRoleThatECSCannotAssumeYetIsWaitedFor() async throws {
        let (provider, transport) = try Self.provider([
            .json(.POST, "/", status: 400, #"{"__type":"ClientException","message":"ECS was unable to assume the role 'arn:aws:iam::1:role/r' that was provided for this task."}"#),
            Self.runTask(1),
        ])
        let started = try await provider.runTasks(
            ECSNames(queue: "q"), resources: Self.resources, definition: "td", count: 1, spotShare: 0, tags: [:], overrides: nil)
        #expect(started.count == 1)
        try await transport.verify()
    }

    /// ListTasks then DescribeTasks answering `tasks`.
    static func listed(_ tasks: [String]) -> [RecordedTransport.Exchange] {
        let arns = tasks.map { task -> String in
            let object = try? JSONSerialization.jsonObject(with: Data(task.utf8)) as? [String: Any]
            return "\"\(object?["taskArn"] as? String ?? "")\""
        }
        return [
            .json(.POST, "/", #"{"taskArns":[\#(arns.joined(separator: ","))]}"#) { request in
                #expect(request.headers.first(name: "X-Amz-Target")?.hasSuffix(".ListTasks") == true)
            },
            .json(.POST, "/", #"{"tasks":[\#(tasks.joined(separator: ","))],"failures":[]}"#),
        ]
    }

    @Test func aServerWithAPublicIPIsReachedThereOverTLSAndWorkersDialItsPrivateAddress() async throws {
        let server = #"{"taskArn":"arn:aws:ecs:eu-west-1:1:task/c/s1","lastStatus":"RUNNING","desiredStatus":"RUNNING","createdAt":1700000000.5,"tags":[{"key":"dockerparallel:port","value":"8888"}],"attachments":[{"type":"ElasticNetworkInterface","status":"ATTACHED","details":[{"name":"networkInterfaceId","value":"eni-1"},{"name":"privateIPv4Address","value":"10.0.1.7"}]}]}"#
        let interfaces = Data("""
            <DescribeNetworkInterfacesResponse><networkInterfaceSet><item><networkInterfaceId>eni-1</networkInterfaceId>
            <association><publicIp>203.0.113.9</publicIp></association></item></networkInterfaceSet></DescribeNetworkInterfacesResponse>
            """.utf8)
        let (provider, transport) = try Self.provider(Self.listed([server]) + [
            .init(.POST, "/", body: interfaces) { request in
                #expect(String(decoding: request.body ?? Data(), as: UTF8.self).contains("Action=DescribeNetworkInterfaces"))
                #expect(String(decoding: request.body ?? Data(), as: UTF8.self).contains("NetworkInterfaceId.1=eni-1"))
            },
        ])
        let endpoints = try await provider.serverEndpoints(context: Self.context("q"))
        #expect(endpoints.publicEndpoint == Endpoint(host: "203.0.113.9", port: 8888, usesTLS: true))
        #expect(endpoints.privateEndpoint == Endpoint(host: "10.0.1.7", port: 8888, usesTLS: true))
        try await transport.verify()
    }

    @Test func scalingDownStopsTheNewestWorkersFirst() async throws {
        func worker(_ id: String, created: Double) -> String {
            #"{"taskArn":"arn:aws:ecs:eu-west-1:1:task/c/\#(id)","lastStatus":"RUNNING","desiredStatus":"RUNNING","createdAt":\#(created),"tags":[{"key":"dockerparallel:workers","value":"1"}]}"#
        }
        let stopped = Seen()
        let stop: @Sendable (RESTRequest) throws -> Void = { request in
            let body = try JSONSerialization.jsonObject(with: request.body ?? Data()) as? [String: Any]
            stopped.add(body?["task"] as? String ?? "", 0)
        }
        let (provider, transport) = try Self.provider(
            Self.listed([worker("old", created: 100), worker("newest", created: 300), worker("middle", created: 200)]) + [
                .json(.POST, "/", #"{"task":{"taskArn":"x"}}"#, check: stop), .json(.POST, "/", #"{"task":{"taskArn":"y"}}"#, check: stop),
            ])
        try await provider.setWorkerNumber(
            context: Self.context("q"), container: TestContainer(), hardware: .defaultWorker, workerNumber: 1)
        #expect(stopped.runs.map(\.provider) == ["arn:aws:ecs:eu-west-1:1:task/c/newest", "arn:aws:ecs:eu-west-1:1:task/c/middle"])
        try await transport.verify()
    }

    @Test func scalingDownStopsIdleWorkersBeforeBusyOnesWhateverTheirAge() async throws {
        func worker(_ id: String, created: Double) -> String {
            #"{"taskArn":"arn:aws:ecs:eu-west-1:1:task/c/\#(id)","lastStatus":"RUNNING","desiredStatus":"RUNNING","createdAt":\#(created),"tags":[{"key":"dockerparallel:workers","value":"1"}]}"#
        }
        let stopped = Seen()
        let (provider, transport) = try Self.provider(
            Self.listed([worker("old", created: 100), worker("newest", created: 300), worker("middle", created: 200)]) + [
                .json(.POST, "/", #"{"task":{"taskArn":"x"}}"#) { request in
                    let body = try JSONSerialization.jsonObject(with: request.body ?? Data()) as? [String: Any]
                    stopped.add(body?["task"] as? String ?? "", 0)
                },
            ])
        // The newest runs a task; the old one is connected and idle; the middle one has not connected.
        var context = Self.context("q")
        context.workerActivity = ["newest": 1, "old": 0]
        try await provider.setWorkerNumber(context: context, container: TestContainer(), hardware: .defaultWorker, workerNumber: 2)
        #expect(stopped.runs.map(\.provider) == ["arn:aws:ecs:eu-west-1:1:task/c/middle"])
        try await transport.verify()
    }

    @Test func theSecurityGroupsDescriptionUsesOnlyWhatEC2Takes() throws {
        // botocore's model: GroupDescription ^[a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*]*$ (AWS refuses others).
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789. _-:/()#,@[]+=&;{}!$*")
        for queue in ["a", "nightly.run_2", String(repeating: "q", count: 64)] {
            let text = ECSProvider.securityGroupDescription(queue)
            #expect(text.allSatisfy { allowed.contains($0) }, "\(text)")
            #expect(text.count <= 255)
        }
    }

    @Test func eachIngressRuleIsItsOwnCallSoAnOldRuleDoesNotKeepANewOneOut() {
        let rules = ECSProvider.ingressRules(port: 8888, group: "sg-1", clientRange: "10.0.0.0/16")
        #expect(rules.count == 2)
        #expect(rules[0]["IpPermissions.1.Groups.1.GroupId"] == "sg-1" && rules[0]["IpPermissions.1.IpRanges.1.CidrIp"] == nil)
        #expect(rules[1]["IpPermissions.1.IpRanges.1.CidrIp"] == "10.0.0.0/16" && rules[1]["IpPermissions.1.Groups.1.GroupId"] == nil)
        #expect(rules.allSatisfy { $0["IpPermissions.1.FromPort"] == "8888" && $0["IpPermissions.1.ToPort"] == "8888" && $0["GroupId"] == "sg-1" })
    }

    @Test func theSecretHoldsOnlyTheKeysTheClusterHasAndTheServerAsksForThoseOnly() async throws {
        let (provider, transport) = try Self.provider([
            .json(.POST, "/", #"{"taskDefinition":{"taskDefinitionArn":"arn:aws:ecs:eu-west-1:1:task-definition/dockerparallel-q-server:1"}}"#) { request in
                let body = try JSONSerialization.jsonObject(with: request.body ?? Data()) as? [String: Any]
                let container = (body?["containerDefinitions"] as? [[String: Any]])?.first
                let secrets = container?["secrets"] as? [[String: String]] ?? []
                #expect(secrets == [["name": "DOCKERPARALLEL_PASSWORD", "valueFrom": "arn:s:password::"]])
                let environment = container?["environment"] as? [[String: String]] ?? []
                #expect(!environment.contains { $0["name"] == "DOCKERPARALLEL_PASSWORD" }, "the password is in no task definition")
                #expect(!String(decoding: request.body ?? Data(), as: UTF8.self).contains("the-password"))
            },
        ])
        // A plain-text cluster: a password, no TLS keys.
        var environment = ["DOCKERPARALLEL_PASSWORD": "the-password", "OTHER": "1"]
        let context = Self.context("q")
        let (value, keys) = try await provider.secretValue(environment: &environment, staticData: context.staticData)
        #expect(keys == ["password"])
        #expect(environment == ["OTHER": "1"], "the secrets left the environment")
        #expect(value.contains("the-password"))
        _ = try await provider.registerTaskDefinition(
            family: "dockerparallel-q-server", names: ECSNames(queue: "q"), resources: Self.resources, container: TestContainer(),
            environment: environment, secretARN: "arn:s", keys: keys, size: try FargateSize(holding: 256, memory: 512), component: "server",
            port: 8888)
        try await transport.verify()
    }

    static func context(_ queue: String) -> ClusterContext {
        let configuration = ClusterConfiguration(jobQueueName: queue)
        return ClusterContext(
            configuration: configuration, runtime: ClusterRuntime(),
            staticData: StaticData(configuration: configuration, workerContainerName: "test", workerImage: "i", maxWorkersPerContainer: 1, verbosity: 0),
            stopClusterOnExit: false, verbosity: 0, logger: Logger(label: "test"))
    }
}

/// What a check saw, across the recorded transport's calls.
final class Seen: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [(provider: String, count: Int)] = []

    func add(_ provider: String, _ count: Int) {
        lock.lock()
        values.append((provider, count))
        lock.unlock()
    }

    var runs: [(provider: String, count: Int)] {
        lock.lock()
        defer { lock.unlock() }
        return values
    }
}

struct TestContainer: WorkerContainer {
    var name = "test"
    var image = "registry.example/dp:1"
    var environment: [String: String] = [:]
    var maxWorkersPerContainer = 1
    var systemPackages: [String] = []
    var languagePackages: [String] = []
    var sshPublicKey: String? = nil
    func configuredAsServer(configuration: ClusterConfiguration) -> TestContainer { self }
    func configuredAsWorker(configuration: ClusterConfiguration, server: Endpoint, workerNumber: Int) -> TestContainer { self }
    func serverContainer() throws -> any WorkerContainer { self }
}
