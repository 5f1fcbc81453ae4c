import DockerEngineProvider
import DockerParallel
import DockerParallelTestKit
import Foundation
import Logging
import ProviderKit
import Testing

@testable import KubernetesProvider

/// The harness that starts the emulator (and plays the kubelet).
enum KubernetesTesting {
    static let harness = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Harness/kube_emulator.py").path
    static let dockerHost: DockerHost = (try? DockerHost.fromEnvironment()) ?? .defaultSocket

    /// The built `dockerparallel` binary, next to the test bundle.
    static var binary: String { BuiltProducts.path(of: "dockerparallel") }

    /// A provider on the emulator, with the node's network (the harness runs pods on the host's).
    static func provider(_ emulator: KubernetesEmulator, _ transport: RecordingTransport) -> KubernetesProvider {
        KubernetesProvider(
            configuration: .init(network: "host", startTimeout: .seconds(60), stopGracePeriod: .seconds(5)),
            namespace: emulator.namespace, transport: transport, retry: RetryPolicy(), pollInterval: .milliseconds(100))
    }

    /// The test image, built once per test run.
    static let image = ImageOnce()

    actor ImageOnce {
        private var tag: String?

        func get() async throws -> String {
            if let tag { return tag }
            let name = "dockerparallel-test/kubernetes:latest"
            _ = try await ImageBuilder(host: KubernetesTesting.dockerHost).build(.init(
                tag: name, dockerparallelBinary: KubernetesTesting.binary, extraPrograms: ["/bin/sh", "/bin/sleep", "/bin/echo"]))
            tag = name
            return name
        }
    }

    /// Every object of the namespace that carries `dockerparallel.io/cluster=<slug>`, as `kind/name`.
    static func leftovers(_ client: KubernetesClient, queue: String) async throws -> [String] {
        let selector = LabelSelector([ClusterObjects.Key.cluster: ClusterObjects.slug(queue)])
        var names: [String] = []
        names += try await client.list(Pod.self, .pods, selector: selector).items.map { "pod/\($0.metadata.name ?? "")" }
        names += try await client.list(Deployment.self, .deployments, selector: selector).items.map { "deployment/\($0.metadata.name ?? "")" }
        names += try await client.list(Service.self, .services, selector: selector).items.map { "service/\($0.metadata.name ?? "")" }
        names += try await client.list(Secret.self, .secrets, selector: selector).items.map { "secret/\($0.metadata.name ?? "")" }
        names += try await client.list(PersistentVolumeClaim.self, .claims, selector: selector).items.map { "claim/\($0.metadata.name ?? "")" }
        return names
    }

    /// Checks JSON objects against the official schemas of a current Kubernetes version with
    /// `kubernetes-validate --strict` (unknown fields are errors); returns its complaints.
    static func schemaProblems(_ objects: [Data]) throws -> String? {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dp-schema-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var files: [String] = []
        for (index, object) in objects.enumerated() {
            let file = directory.appendingPathComponent("object-\(index).json").path
            try object.write(to: URL(fileURLWithPath: file))
            files.append(file)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["kubernetes-validate", "--strict", "--quiet"] + files
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return process.terminationStatus == 0 ? nil : output
    }
}

/// Passes requests to the emulator and keeps the body of every object created, so that a test
/// can check each one against the official schema.
actor RecordingTransport: HTTPTransport {
    let inner: AsyncHTTPTransport
    private(set) var created: [Data] = []

    init(port: Int) {
        inner = AsyncHTTPTransport(endpoint: .url("http://127.0.0.1:\(port)"))
    }

    func send(_ request: RESTRequest) async throws -> RESTResponse {
        if request.method == .POST, let body = request.body { created.append(body) }
        return try await inner.send(request)
    }

    nonisolated func streamLines(_ request: RESTRequest) async throws -> StreamedResponse {
        try await inner.streamLines(request)
    }
}

/// The REST client and the provider against the Kubernetes API emulator (PyPI's `kmock`), with
/// a harness that plays the kubelet by running the pods on the private Docker daemon.
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: KubernetesEmulator.enabled, "no kmock: `pip install kmock kubernetes-validate`"))
struct KubernetesEmulatorTests {
    static let logger = Logger(label: "test")

    @Test("a pod watch over HTTP sees pods come and go, and ignores other clusters' pods")
    func theWatchFollowsPods() async throws {
        let emulator = try await KubernetesEmulator(harness: KubernetesTesting.harness, kubelet: false)
        defer { emulator.stop() }
        let client = KubernetesClient(namespace: "dp-test", transport: AsyncHTTPTransport(endpoint: .url("http://127.0.0.1:\(emulator.port)")))
        let objects = ClusterObjects(configuration: .init(), namespace: "dp-test", queue: "watched")
        let others = ClusterObjects(configuration: .init(), namespace: "dp-test", queue: "other")
        let watch = PodWatch(client: client, selector: objects.selector, logger: Self.logger)
        #expect(try await watch.current().isEmpty)
        let container = DockerWorkerContainer(image: "none:latest")
        let first = objects.workerPod(named: "w-1", container: container, hardware: .defaultWorker, slots: 2, secretName: "s")
        try await client.create(first, in: .pods)
        try await client.create(
            others.workerPod(named: "o-1", container: container, hardware: .defaultWorker, slots: 1, secretName: "s"), in: .pods)
        try await waitUntil("the watch sees w-1", timeout: 10) {
            try await watch.current().compactMap(\.metadata.name) == ["w-1"] ? true : nil
        }
        try await client.delete(.pods, "w-1")
        try await waitUntil("the watch sees w-1 go", timeout: 10) { try await watch.current().isEmpty ? true : nil }
        await watch.stop()
        emulator.stop()
    }

    @Test("the Kubernetes provider passes the conformance kit, every object it creates is schema-valid, and a deep cleanup leaves nothing")
    func conformance() async throws {
        try await HeavyTests.oneAtATime {
            let image = try await KubernetesTesting.image.get()
            let emulator = try await KubernetesEmulator(harness: KubernetesTesting.harness, kubelet: true)
            defer { emulator.stop() }
            let transport = RecordingTransport(port: emulator.port)
            let provider = KubernetesTesting.provider(emulator, transport)
            let queue = "conformance-k8s"
            let kit = ConformanceKit(
                provider: provider, workerContainer: DockerWorkerContainer(image: image),
                options: .init(workerNumber: 3, jobSize: 100, timeout: .seconds(60), configuration: ClusterConfiguration(jobQueueName: queue, serverPort: 0)))
            let started = ContinuousClock.now
            do {
                try await kit.run { step in print("kubernetes conformance (+\(ContinuousClock.now - started)): \(step)") }
            } catch {
                Issue.record("the conformance kit failed: \(error)\nthe emulator's log ends:\n\(emulator.log.suffix(3000))")
                throw error
            }
            let cluster = try DockerCluster(
                provider: provider, workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(jobQueueName: queue), verbosity: 0)
            try await cluster.cleanup(deep: true)
            let client = KubernetesClient(namespace: emulator.namespace, transport: transport)
            #expect(try await KubernetesTesting.leftovers(client, queue: queue).isEmpty, "the kit's cluster left objects")
            let created = await transport.created
            #expect(created.count >= 6, "a Secret, a claim, a Service, a Deployment and worker pods were created")
            #expect(try KubernetesTesting.schemaProblems(created) == nil)
        }
    }

    /// The `dockerparallel` binary's built-in `square` task, by its name.
    struct Square: ParallelTask {
        static let name = "square"
        static func run(_ input: Int) async throws -> Int { input * input }
    }

    @Test("a Swift map of 200 inputs on emulated Kubernetes returns every square in order, and stopping leaves nothing")
    func swiftMap() async throws {
        try await HeavyTests.oneAtATime {
            let image = try await KubernetesTesting.image.get()
            let emulator = try await KubernetesEmulator(harness: KubernetesTesting.harness, kubelet: true)
            defer { emulator.stop() }
            let transport = RecordingTransport(port: emulator.port)
            let provider = KubernetesTesting.provider(emulator, transport)
            let queue = "map-k8s"
            let cluster = try DockerCluster(
                provider: provider, workerContainer: DockerWorkerContainer(image: image, maxWorkersPerContainer: 2),
                configuration: ClusterConfiguration(jobQueueName: queue, expectedWorkerNumber: 3, serverPort: 0), verbosity: 0)
            try await cluster.startCluster()
            let squares = try await cluster.map(Array(1...200), using: Square.self)
            #expect(squares == (1...200).map { $0 * $0 })
            let numbers = try await cluster.workerNumbers()
            #expect(numbers.running + numbers.initializing == 3, "\(numbers)")
            try await cluster.stopCluster(cleanup: true)
            try await cluster.cleanup(deep: true)
            let client = KubernetesClient(namespace: emulator.namespace, transport: transport)
            #expect(try await KubernetesTesting.leftovers(client, queue: queue).isEmpty)
        }
    }

    @Test("a server whose image is missing fails with Kubernetes' reason, not a hang")
    func missingImage() async throws {
        try await HeavyTests.oneAtATime {
            let emulator = try await KubernetesEmulator(harness: KubernetesTesting.harness, kubelet: true)
            defer { emulator.stop() }
            let transport = RecordingTransport(port: emulator.port)
            let provider = KubernetesTesting.provider(emulator, transport)
            let cluster = try DockerCluster(
                provider: provider, workerContainer: DockerWorkerContainer(image: "dockerparallel-test/no-such-image:1"),
                configuration: ClusterConfiguration(jobQueueName: "missing-image", serverPort: 0), verbosity: 0)
            let started = ContinuousClock.now
            let error = await #expect(throws: DockerParallelError.self) { try await cluster.startServer() }
            #expect(ContinuousClock.now - started < .seconds(30), "it failed at once, not at the deadline")
            #expect(error?.code == .serverStartFailed)
            #expect(error?.message.contains("no-such-image") == true, "\(String(describing: error))")
            try await cluster.cleanup(deep: true)
            let client = KubernetesClient(namespace: emulator.namespace, transport: transport)
            #expect(try await KubernetesTesting.leftovers(client, queue: "missing-image").isEmpty)
        }
    }
}

/// The provider on a real cluster: runs only when `DOCKERPARALLEL_KUBERNETES_LIVE=1`, with the
/// cluster that `KUBECONFIG` (or `~/.kube/config`) names and an image its nodes can pull in
/// `DOCKERPARALLEL_KUBERNETES_IMAGE` (`dockerparallel image build`, pushed to a registry).
@Suite(.serialized, .timeLimit(.minutes(15)), .enabled(if: KubernetesLive.enabled, "no live cluster: set DOCKERPARALLEL_KUBERNETES_LIVE=1, KUBECONFIG and DOCKERPARALLEL_KUBERNETES_IMAGE"))
struct KubernetesLiveTests {
    @Test("the provider passes the conformance kit on a real cluster")
    func conformanceOnALiveCluster() async throws {
        let provider = try KubernetesProvider(configuration: .init(namespace: KubernetesLive.environment["DOCKERPARALLEL_KUBERNETES_NAMESPACE"]))
        let kit = ConformanceKit(
            provider: provider, workerContainer: DockerWorkerContainer(image: KubernetesLive.image),
            options: .init(workerNumber: 3, jobSize: 100, timeout: .seconds(300), configuration: ClusterConfiguration(jobQueueName: "conformance-live")))
        try await kit.run { step in print("live kubernetes conformance: \(step)") }
        let cluster = try DockerCluster(
            provider: provider, workerContainer: DockerWorkerContainer(image: KubernetesLive.image),
            configuration: ClusterConfiguration(jobQueueName: "conformance-live"), verbosity: 0)
        try await cluster.cleanup(deep: true)
    }
}

enum KubernetesLive {
    static let environment = ProcessInfo.processInfo.environment
    static let enabled = environment["DOCKERPARALLEL_KUBERNETES_LIVE"] == "1" && environment["DOCKERPARALLEL_KUBERNETES_IMAGE"] != nil
    static var image: String { environment["DOCKERPARALLEL_KUBERNETES_IMAGE"] ?? "" }
}
