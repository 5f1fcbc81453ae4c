import DockerEngineProvider
import DockerParallelCore
import Foundation
import Logging
import NIOHTTP1
import ProviderKit
import Testing

/// The Docker Engine provider against recorded answers of the Engine API: no daemon needed.
@Suite struct DockerRecordedTests {
    static let queue = "rec"
    let api = "/v1.41"

    func context(expected: Int = 3) -> ClusterContext {
        let configuration = ClusterConfiguration(
            jobQueueName: Self.queue, expectedWorkerNumber: expected, workerHardware: Hardware(cpu: 512, memory: 1024))
        return ClusterContext(
            configuration: configuration, runtime: ClusterRuntime(),
            staticData: StaticData(
                configuration: configuration, workerContainerName: "DockerWorkerContainer", workerImage: "dockerparallel:latest",
                maxWorkersPerContainer: 1, verbosity: 0),
            stopClusterOnExit: false, verbosity: 0, logger: Logger(label: "test"))
    }

    func provider(_ transport: RecordedTransport) -> DockerEngineProvider {
        DockerEngineProvider(
            configuration: .init(host: .defaultSocket, stopGracePeriod: .seconds(10)), transport: transport,
            retry: RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(1)), sleep: { _ in })
    }

    /// `GET /containers/json` of this cluster's workers.
    func listWorkers(status: Int = 200, _ json: String) -> RecordedTransport.Exchange {
        .json(.GET, "\(api)/containers/json", query: [
            QueryItem("all", "true"),
            QueryItem("filters", #"{"label":["dockerparallel.queue=rec","dockerparallel.role=worker"]}"#),
        ], status: status, json)
    }

    func worker(_ id: String, state: String = "running", slots: Int = 1, created: Int = 100) -> String {
        #"{"Id":"\#(id)","Names":["/dockerparallel-rec-worker-\#(id)"],"State":"\#(state)","Created":\#(created),"Labels":{"dockerparallel.queue":"rec","dockerparallel.role":"worker","dockerparallel.workers":"\#(slots)"}}"#
    }

    /// The parts of a `POST /containers/create` body the tests check.
    struct CreateBody: Decodable {
        struct HostConfig: Decodable {
            var NetworkMode: String
            var NanoCpus: Int64?
            var Memory: Int64?
            var Init: Bool?
        }

        var Image: String
        var Env: [String]
        var Labels: [String: String]
        var HostConfig: HostConfig
    }

    func workerContainer() -> any WorkerContainer {
        DockerWorkerContainer(image: "dockerparallel:latest").configuredAsWorker(
            configuration: context().configuration, server: Endpoint(host: "127.0.0.1", port: 8888), workerNumber: 1)
    }

    @Test func scalingFromOneToThreeCreatesAndStartsTwoLabelledLimitedContainers() async throws {
        let create: @Sendable (RESTRequest) throws -> Void = { request in
            let name = try #require(request.query.first { $0.name == "name" }?.value)
            #expect(name.hasPrefix("dockerparallel-rec-worker-"))
            let body = try JSONDecoder().decode(CreateBody.self, from: try #require(request.body))
            #expect(body.Image == "dockerparallel:latest")
            #expect(body.Labels == ["dockerparallel.queue": "rec", "dockerparallel.role": "worker", "dockerparallel.workers": "1"])
            for entry in ["DOCKERPARALLEL_ROLE=worker", "DOCKERPARALLEL_SLOTS=1", "DOCKERPARALLEL_QUEUE=rec",
                          "DOCKERPARALLEL_HOST=127.0.0.1", "DOCKERPARALLEL_PORT=8888", "DOCKERPARALLEL_CONTAINER=1",
                          "DOCKERPARALLEL_WORKER_NAME=\(name)"] {
                #expect(body.Env.contains(entry), "\(entry) is not in \(body.Env)")
            }
            // 512 CPU units are half a core; 1024 MB.
            #expect(body.HostConfig.NanoCpus == 500_000_000)
            #expect(body.HostConfig.Memory == Int64(1 << 30))
            #expect(body.HostConfig.NetworkMode == "host")
            #expect(body.HostConfig.Init == true)
        }
        let transport = RecordedTransport([
            listWorkers("[\(worker("w1"))]"),
            .json(.GET, "\(api)/images/dockerparallel:latest/json", #"{"Id":"sha256:1"}"#),
            .json(.POST, "\(api)/containers/create", query: nil, status: 201, #"{"Id":"new1"}"#, check: create),
            .json(.POST, "\(api)/containers/create", query: nil, status: 201, #"{"Id":"new2"}"#, check: create),
            .init(.POST, "\(api)/containers/new1/start", status: 204),
            .init(.POST, "\(api)/containers/new2/start", status: 204),
        ])
        try await provider(transport).setWorkerNumber(
            context: context(), container: workerContainer(), hardware: Hardware(cpu: 512, memory: 1024), workerNumber: 3)
        try await transport.verify()
        let names = await transport.received(.POST, "\(api)/containers/create").compactMap { $0.query.first?.value }
        #expect(Set(names).count == 2, "two containers with distinct names: \(names)")
    }

    @Test func scalingDownStopsAndRemovesTheNewestContainers() async throws {
        let transport = RecordedTransport([
            listWorkers("[\(worker("old", created: 100)),\(worker("mid", created: 200)),\(worker("new", created: 300))]"),
            .init(.POST, "\(api)/containers/new/stop", query: [QueryItem("t", "10")], status: 204),
            .init(.DELETE, "\(api)/containers/new", query: [QueryItem("force", "true")], status: 204),
            .init(.POST, "\(api)/containers/mid/stop", query: [QueryItem("t", "10")], status: 304),
            .init(.DELETE, "\(api)/containers/mid", query: [QueryItem("force", "true")], status: 404),
        ])
        try await provider(transport).setWorkerNumber(
            context: context(expected: 1), container: workerContainer(), hardware: .defaultWorker, workerNumber: 1)
        try await transport.verify()
    }

    @Test func workerNumbersCountSlotsByContainerState() async throws {
        let transport = RecordedTransport([
            listWorkers("[\(worker("a", slots: 2)),\(worker("b", state: "created")),\(worker("c", state: "restarting")),\(worker("d", state: "exited", slots: 3))]"),
        ])
        let numbers = try await provider(transport).workerNumbers(context: context())
        #expect(numbers == WorkerNumbers(expected: 3, initializing: 2, running: 2))
        try await transport.verify()
    }

    @Test func clusterNamesAreTheQueuesOfServerContainers() async throws {
        let server = { (queue: String) in
            #"{"Id":"s-\#(queue)","Names":["/dockerparallel-\#(queue)-server"],"State":"running","Labels":{"dockerparallel.queue":"\#(queue)","dockerparallel.role":"server"}}"#
        }
        let transport = RecordedTransport([
            .json(.GET, "\(api)/containers/json", query: [
                QueryItem("all", "true"), QueryItem("filters", #"{"label":["dockerparallel.role=server"]}"#),
            ], "[\(server("b")),\(server("a")),\(server("b"))]"),
        ])
        #expect(try await provider(transport).clusterNames() == ["a", "b"])
        try await transport.verify()
    }

    @Test func aMissingImageSaysToBuildIt() async throws {
        let transport = RecordedTransport([
            listWorkers("[]"),
            .json(.GET, "\(api)/images/none:latest/json", status: 404, #"{"message":"No such image: none:latest"}"#),
        ])
        let container = DockerWorkerContainer(image: "none:latest")
        let error = await #expect(throws: DockerParallelError.self) {
            try await provider(transport).setWorkerNumber(
                context: context(), container: container, hardware: .defaultWorker, workerNumber: 1)
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("the image 'none:latest' is not on the Docker engine") == true)
        #expect(error?.message.contains("build it with `dockerparallel image build --tag none:latest`") == true)
        try await transport.verify()
    }

    @Test(arguments: [429, 503])
    func aThrottledAnswerIsRetried(status: Int) async throws {
        let transport = RecordedTransport([
            listWorkers(status: status, #"{"message":"too many requests"}"#),
            listWorkers(status: status, #"{"message":"too many requests"}"#),
            listWorkers("[\(worker("a"))]"),
        ])
        let numbers = try await provider(transport).workerNumbers(context: context())
        #expect(numbers.running == 1)
        try await transport.verify()
    }

    @Test func aDaemonThatStaysThrottledIsReportedWithItsMessage() async throws {
        let transport = RecordedTransport(Array(repeating: listWorkers(status: 429, #"{"message":"slow down"}"#), count: 3))
        let error = await #expect(throws: RESTError.self) { try await provider(transport).workerNumbers(context: context()) }
        #expect(error?.description == "the Docker daemon answered 429: slow down")
        try await transport.verify()
    }

    /// The production transport, with no daemon behind the socket: a clear error at once.
    @Test func noDaemonIsAClearErrorNotAHang() async throws {
        let provider = try DockerEngineProvider(configuration: .init(host: DockerHost(address: .unix("/nonexistent/docker.sock"))))
        let error = await #expect(throws: DockerParallelError.self) { try await provider.initialize(context: context()) }
        #expect(error?.message.contains("cannot reach the Docker daemon at unix:///nonexistent/docker.sock") == true)
        #expect(error?.message.contains("DOCKER_HOST") == true)
    }
}
