import DockerEngineProvider
import DockerParallelCore
import Foundation
import Logging
import NIOHTTP1
import ProviderKit
import Testing

@testable import SwarmProvider

/// The Swarm provider against recorded answers of the Engine API (v1.41): no swarm needed.
@Suite struct SwarmRecordedTests {
    let api = "/v1.41"
    static let password = "secretpasswordofthecluster"

    func context(port: Int = 7777) -> ClusterContext {
        let configuration = ClusterConfiguration(
            jobQueueName: "rec", expectedWorkerNumber: 3, workerHardware: Hardware(cpu: 512, memory: 1024),
            serverPort: port, serverPassword: ServerPassword(Self.password))
        return ClusterContext(
            configuration: configuration, runtime: ClusterRuntime(),
            staticData: StaticData(
                configuration: configuration, workerContainerName: "DockerWorkerContainer", workerImage: "dockerparallel:latest",
                maxWorkersPerContainer: 2, verbosity: 0),
            stopClusterOnExit: false, verbosity: 0, logger: Logger(label: "test"))
    }

    func provider(_ transport: RecordedTransport, network: String = "host") -> SwarmProvider {
        SwarmProvider(
            configuration: .init(host: .defaultSocket, network: network, constraints: ["node.labels.pool==batch"]),
            transport: transport)
    }

    func workers(_ json: String) -> RecordedTransport.Exchange {
        .json(.GET, "\(api)/services", query: [
            QueryItem("filters", #"{"label":["dockerparallel.queue=rec","dockerparallel.role=worker"]}"#),
        ], json)
    }

    func service(id: String, name: String, version: Int = 10, replicas: Int, labels: String) -> String {
        #"{"ID":"\#(id)","Version":{"Index":\#(version)},"UpdatedAt":"2026-12-02T14:00:00.5Z","Spec":{"Name":"\#(name)","Labels":{\#(labels)},"TaskTemplate":{"ContainerSpec":{"Image":"dockerparallel:latest"}},"Mode":{"Replicated":{"Replicas":\#(replicas)}}}}"#
    }

    var server: String {
        service(
            id: "srv", name: "dockerparallel-rec-server", replicas: 1,
            labels: #""dockerparallel.queue":"rec","dockerparallel.role":"server","dockerparallel.port":"7777","dockerparallel.password-secret":"dockerparallel-rec-password-abc""#)
    }

    var overlayServer: String {
        server.replacingOccurrences(
            of: #""Mode":{"Replicated""#,
            with: #""EndpointSpec":{"Mode":"dnsrr","Ports":[{"Protocol":"tcp","TargetPort":7777,"PublishedPort":7777,"PublishMode":"host"}]},"Mode":{"Replicated""#)
    }

    func workerContainer(slots: Int = 2) -> any WorkerContainer {
        DockerWorkerContainer(image: "dockerparallel:latest", maxWorkersPerContainer: slots).configuredAsWorker(
            configuration: context().configuration, server: Endpoint(host: "127.0.0.1", port: 7777), workerNumber: 1)
    }

    @Test(arguments: [(0, 2, [Int: Int]()), (4, 2, [2: 2]), (3, 2, [2: 1, 1: 1]), (5, 1, [1: 5]), (2, 4, [2: 1])])
    func workersAreLaidOutInAsFewTasksAsCanBeWithExactlyTheWantedSlots(workers: Int, perContainer: Int, replicas: [Int: Int]) {
        let layout = WorkerLayout(workers: workers, slotsPerContainer: perContainer)
        #expect(layout.replicas == replicas)
        #expect(layout.slots == workers)
    }

    /// Three workers of at most two slots: a 2-slot service of one replica and a 1-slot one; the
    /// password comes as the server's secret, never in the environment.
    @Test func scalingCreatesLabelledLimitedServicesThatReadThePasswordFromASecret() async throws {
        let check: @Sendable (RESTRequest) throws -> Void = { request in
            let body = try #require(request.body)
            #expect(!String(decoding: body, as: UTF8.self).contains(Self.password), "the password is in the service spec")
            let spec = try JSONDecoder().decode(ServiceSpec.self, from: body)
            let slots = spec.Name == "dockerparallel-rec-worker-2" ? 2 : 1
            #expect(spec.Name == "dockerparallel-rec-worker-\(slots)")
            #expect(spec.Labels["dockerparallel.queue"] == "rec")
            #expect(spec.Labels["dockerparallel.role"] == "worker")
            #expect(spec.Labels["dockerparallel.workers"] == "\(slots)")
            #expect(spec.Mode.Replicated?.Replicas == 1)
            let task = spec.TaskTemplate
            #expect(task.ContainerSpec.Image == "dockerparallel:latest")
            let env = task.ContainerSpec.Env ?? []
            for entry in ["DOCKERPARALLEL_ROLE=worker", "DOCKERPARALLEL_SLOTS=\(slots)", "DOCKERPARALLEL_HOST=127.0.0.1",
                          "DOCKERPARALLEL_PORT=7777", "DOCKERPARALLEL_CONTAINER=1",
                          "DOCKERPARALLEL_PASSWORD_FILE=/run/secrets/dockerparallel-rec-password-abc",
                          "DOCKERPARALLEL_WORKER_NAME={{.Service.Name}}.{{.Task.Slot}}"] {
                #expect(env.contains(entry), "\(entry) is not in \(env)")
            }
            #expect(!env.contains { $0.hasPrefix("DOCKERPARALLEL_PASSWORD=") })
            #expect(task.ContainerSpec.Secrets == [SwarmProvider.reference(id: "sec1", name: "dockerparallel-rec-password-abc")])
            // 512 CPU units are half a core; 1024 MB; a limit, not a reservation (by default).
            #expect(task.Resources?.Limits == .init(NanoCPUs: 500_000_000, MemoryBytes: 1 << 30))
            #expect(task.Resources?.Reservations == nil)
            #expect(task.Networks == [.init(Target: "hostnet")])
            #expect(task.RestartPolicy?.Condition == "any")
            #expect(task.Placement?.Constraints == ["node.labels.pool==batch"])
            #expect(spec.EndpointSpec == nil)
        }
        let transport = RecordedTransport([
            workers("[]"),
            .json(.GET, "\(api)/services/dockerparallel-rec-server", server),
            .json(.GET, "\(api)/secrets/dockerparallel-rec-password-abc", #"{"ID":"sec1","Spec":{"Name":"dockerparallel-rec-password-abc"}}"#),
            .json(.GET, "\(api)/networks/host", #"{"Id":"hostnet","Name":"host"}"#),
            .json(.GET, "\(api)/images/dockerparallel:latest/json", #"{"Id":"sha256:1"}"#),
            .json(.POST, "\(api)/services/create", status: 201, #"{"ID":"w2"}"#, check: check),
            .json(.POST, "\(api)/services/create", status: 201, #"{"ID":"w1"}"#, check: check),
            workers("[]"),
        ])
        try await provider(transport).setWorkerNumber(
            context: context(), container: workerContainer(), hardware: Hardware(cpu: 512, memory: 1024), workerNumber: 3)
        try await transport.verify()
    }

    /// Another process updated the service meanwhile: its version is stale, the daemon answers
    /// 500, and the update is read again and sent with the new version.
    @Test func aStaleVersionIsReadAgainAndRetriedNotFatal() async throws {
        let worker = service(
            id: "w1", name: "dockerparallel-rec-worker-1", replicas: 1,
            labels: #""dockerparallel.queue":"rec","dockerparallel.role":"worker","dockerparallel.workers":"1""#)
        let replicas: @Sendable (RESTRequest) throws -> Void = { request in
            let spec = try JSONDecoder().decode(ServiceSpec.self, from: try #require(request.body))
            #expect(spec.Mode.Replicated?.Replicas == 2)
        }
        let transport = RecordedTransport([
            workers("[\(worker)]"),
            .json(.GET, "\(api)/services/dockerparallel-rec-server", server),
            .json(.GET, "\(api)/secrets/dockerparallel-rec-password-abc", #"{"ID":"sec1","Spec":{"Name":"dockerparallel-rec-password-abc"}}"#),
            .json(.GET, "\(api)/networks/host", #"{"Id":"hostnet","Name":"host"}"#),
            .json(.GET, "\(api)/images/dockerparallel:latest/json", #"{"Id":"sha256:1"}"#),
            .json(.POST, "\(api)/services/w1/update", query: [QueryItem("version", "10")], status: 500,
                  #"{"message":"rpc error: code = Unknown desc = update out of sequence"}"#),
            .json(.GET, "\(api)/services/w1", service(
                id: "w1", name: "dockerparallel-rec-worker-1", version: 12, replicas: 1,
                labels: #""dockerparallel.queue":"rec","dockerparallel.role":"worker","dockerparallel.workers":"1""#)),
            .json(.POST, "\(api)/services/w1/update", query: [QueryItem("version", "12")], #"{"Warnings":null}"#, check: replicas),
            workers("[\(worker)]"),
            .json(.GET, "\(api)/tasks", query: nil, "[]"),
        ])
        try await provider(transport).setWorkerNumber(
            context: context(), container: workerContainer(slots: 1), hardware: Hardware(cpu: 512, memory: 1024), workerNumber: 2)
        try await transport.verify()
    }

    /// A server whose task fails at start-up is a clear error with swarm's reason and the
    /// service's log, at once, not a wait until the timeout.
    @Test func aServerThatCannotStartIsAnErrorWithTheTasksStatusErr() async throws {
        let failed = #"[{"ID":"t1","ServiceID":"srv","CreatedAt":"2026-12-02T14:00:01.123456789Z","DesiredState":"running","Status":{"State":"failed","Err":"task: non-zero exit (78)","ContainerStatus":{"ContainerID":"c1","ExitCode":78}}}]"#
        var log = Data([2, 0, 0, 0, 0, 0, 0, 43])
        log.append(Data("start-up failed: apt-get: command not found\n".utf8.prefix(43)))
        let transport = RecordedTransport([
            .json(.GET, "\(api)/services/dockerparallel-rec-server", server),
            .json(.GET, "\(api)/tasks", query: nil, failed),
            .json(.GET, "\(api)/tasks", query: nil, failed),
            RecordedTransport.Exchange(.GET, "\(api)/services/srv/logs", query: nil, body: log),
        ])
        let error = await #expect(throws: DockerParallelError.self) {
            try await provider(transport).runServer(
                context: context(), container: DockerWorkerContainer().configuredAsServer(configuration: context().configuration),
                hardware: Hardware(cpu: 256, memory: 512))
        }
        #expect(error?.code == .serverStartFailed)
        #expect(error?.message.contains("dockerparallel-rec-server could not start: task: non-zero exit (78)") == true, "\(String(describing: error))")
        #expect(error?.message.contains("apt-get: command not found") == true, "\(String(describing: error))")
        try await transport.verify()
    }

    /// A worker task that swarm rejects (no such image on its node) is reported with its reason.
    @Test func aRejectedWorkerTaskIsReportedWithItsReason() async throws {
        let worker = service(
            id: "w1", name: "dockerparallel-rec-worker-1", replicas: 1,
            labels: #""dockerparallel.queue":"rec","dockerparallel.role":"worker","dockerparallel.workers":"1","dockerparallel.spec":"x""#)
        let rejected = #"[{"ID":"t1","ServiceID":"w1","CreatedAt":"2026-12-02T14:00:02Z","DesiredState":"running","Status":{"State":"rejected","Err":"No such image: nope:latest"}}]"#
        let transport = RecordedTransport([
            workers("[\(worker)]"),
            .json(.GET, "\(api)/services/dockerparallel-rec-server", server),
            .json(.GET, "\(api)/secrets/dockerparallel-rec-password-abc", #"{"ID":"sec1","Spec":{"Name":"dockerparallel-rec-password-abc"}}"#),
            .json(.GET, "\(api)/networks/host", #"{"Id":"hostnet","Name":"host"}"#),
            .json(.GET, "\(api)/images/dockerparallel:latest/json", #"{"Id":"sha256:1"}"#),
            .json(.POST, "\(api)/services/w1/update", query: [QueryItem("version", "10")], #"{}"#),
            workers("[\(worker)]"),
            .json(.GET, "\(api)/tasks", query: nil, rejected),
            RecordedTransport.Exchange(.GET, "\(api)/services/w1/logs", query: nil, body: Data()),
        ])
        let error = await #expect(throws: DockerParallelError.self) {
            try await provider(transport).setWorkerNumber(
                context: context(), container: workerContainer(slots: 1), hardware: Hardware(cpu: 512, memory: 1024), workerNumber: 1)
        }
        #expect(error?.message.contains("No such image: nope:latest") == true, "\(String(describing: error))")
        try await transport.verify()
    }

    /// On an overlay network the server's service is reached by DNS round robin, publishes its
    /// port on its node, and gets the password (only) as a new secret.
    @Test func theServerOnAnOverlayNetworkUsesDNSRoundRobinAndAPasswordSecret() async throws {
        let secret: @Sendable (RESTRequest) throws -> Void = { request in
            let data = try #require(request.body)
            let body = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect((body["Name"] as? String)?.hasPrefix("dockerparallel-rec-password-") == true)
            #expect((body["Data"] as? String).flatMap { Data(base64Encoded: $0) } == Data(Self.password.utf8))
        }
        let create: @Sendable (RESTRequest) throws -> Void = { request in
            let body = try #require(request.body)
            #expect(!String(decoding: body, as: UTF8.self).contains(Self.password), "the password is in the service spec")
            let spec = try JSONDecoder().decode(ServiceSpec.self, from: body)
            #expect(spec.Name == "dockerparallel-rec-server")
            #expect(spec.EndpointSpec == .init(Mode: "dnsrr", Ports: [.init(Protocol: "tcp", TargetPort: 7777, PublishedPort: 7777, PublishMode: "host")]))
            #expect(spec.TaskTemplate.Networks == [.init(Target: "net1")])
            #expect(spec.TaskTemplate.ContainerSpec.Mounts == [.init(Type: "volume", Source: "dockerparallel-swarm-rec-store", Target: "/workspace/store")])
            let env = spec.TaskTemplate.ContainerSpec.Env ?? []
            #expect(env.contains("DOCKERPARALLEL_HOST=0.0.0.0"))
            #expect(env.contains { $0.hasPrefix("DOCKERPARALLEL_PASSWORD_FILE=/run/secrets/dockerparallel-rec-password-") })
            #expect(spec.TaskTemplate.ContainerSpec.Secrets?.first?.SecretID == "sec9")
            #expect(spec.Labels["dockerparallel.password-secret"]?.hasPrefix("dockerparallel-rec-password-") == true)
        }
        let running = #"[{"ID":"t1","ServiceID":"srv","DesiredState":"running","Status":{"State":"running","Timestamp":"2026-12-02T14:00:03.5Z"}}]"#
        let transport = RecordedTransport([
            RecordedTransport.Exchange(.GET, "\(api)/services/dockerparallel-rec-server", status: 404, body: Data(#"{"message":"service dockerparallel-rec-server not found"}"#.utf8)),
            .json(.GET, "\(api)/images/dockerparallel:latest/json", #"{"Id":"sha256:1"}"#),
            .json(.GET, "\(api)/networks/dp-net", #"{"Id":"net1","Name":"dp-net"}"#),
            .json(.POST, "\(api)/secrets/create", status: 201, #"{"ID":"sec9"}"#, check: secret),
            .json(.POST, "\(api)/services/create", status: 201, #"{"ID":"srv"}"#, check: create),
            .json(.GET, "\(api)/services/dockerparallel-rec-server", overlayServer),
            .json(.GET, "\(api)/tasks", query: nil, running),
            // The published port's proxy accepts before the server listens: the server's log tells.
            RecordedTransport.Exchange(.GET, "\(api)/services/srv/logs", query: nil, body: Data("opened the store\n".utf8)),
            .json(.GET, "\(api)/tasks", query: nil, running),
            .json(.GET, "\(api)/tasks", query: nil, running),
            RecordedTransport.Exchange(.GET, "\(api)/services/srv/logs", query: nil, body: Data("listening on 0.0.0.0:7777\n".utf8)),
            .json(.GET, "\(api)/secrets", query: nil, "[]"),
        ])
        try await provider(transport, network: "dp-net").runServer(
            context: context(), container: DockerWorkerContainer().configuredAsServer(configuration: context().configuration),
            hardware: Hardware(cpu: 256, memory: 512))
        try await transport.verify()
    }

    @Test func aDaemonThatIsNotASwarmManagerIsAnErrorNamingTheFix() async throws {
        let transport = RecordedTransport([
            .json(.GET, "\(api)/info", #"{"Swarm":{"NodeID":"","LocalNodeState":"inactive","ControlAvailable":false}}"#),
            .json(.GET, "\(api)/info", #"{"Swarm":{"NodeID":"n1","LocalNodeState":"active","ControlAvailable":false}}"#),
        ])
        let provider = provider(transport)
        let inactive = await #expect(throws: DockerParallelError.self) { try await provider.initialize(context: context()) }
        #expect(inactive?.message.contains("is not part of a swarm") == true)
        #expect(inactive?.message.contains("docker swarm init") == true)
        let worker = await #expect(throws: DockerParallelError.self) { try await provider.initialize(context: context()) }
        #expect(worker?.message.contains("a swarm worker, not a manager") == true)
        try await transport.verify()
    }

    @Test func swarmTimesWithNineDecimalsAreRead() {
        #expect(SwarmTime.seconds("1970-01-01T00:00:01.5Z") == 1.5)
        #expect(SwarmTime.seconds("2026-12-02T14:00:01.123456789Z") > SwarmTime.seconds("2026-12-02T14:00:01.12Z"))
        #expect(SwarmTime.seconds(nil) == 0)
    }
}
