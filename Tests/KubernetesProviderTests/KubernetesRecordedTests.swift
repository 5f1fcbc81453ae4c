import DockerEngineProvider
import DockerParallelCore
import Foundation
import Logging
import NIOHTTP1
import ProviderKit
import Testing

@testable import KubernetesProvider

/// The Kubernetes provider against answers recorded from the Kubernetes API's documentation,
/// for what the emulator cannot show: a watch's 410 Gone, a name taken by another process, a
/// quota, a refused user.
@Suite struct KubernetesRecordedTests {
    static let password = "secretpasswordofthecluster"
    let pods = "/api/v1/namespaces/ns/pods"
    let selector = QueryItem("labelSelector", "dockerparallel.io/cluster=rec")

    func context() -> ClusterContext {
        let configuration = ClusterConfiguration(
            jobQueueName: "rec", expectedWorkerNumber: 2, serverPort: 7777, serverPassword: ServerPassword(Self.password))
        return ClusterContext(
            configuration: configuration, runtime: ClusterRuntime(),
            staticData: StaticData(
                configuration: configuration, workerContainerName: "DockerWorkerContainer", workerImage: "dockerparallel:latest",
                maxWorkersPerContainer: 1, verbosity: 0),
            stopClusterOnExit: false, verbosity: 0, logger: Logger(label: "test"))
    }

    func provider(_ transport: RecordedTransport) -> KubernetesProvider {
        KubernetesProvider(configuration: .init(startTimeout: .seconds(5)), namespace: "ns", transport: transport)
    }

    /// A pod as a real API server lists it: the items of a list carry no `apiVersion` or `kind`.
    static func pod(_ name: String, version: String, phase: String = "Running") -> String {
        #"{"metadata":{"name":"\#(name)","namespace":"ns","resourceVersion":"\#(version)","labels":{"dockerparallel.io/cluster":"rec","app.kubernetes.io/component":"worker","dockerparallel.io/workers":"1"}},"spec":{"containers":[{"name":"worker","image":"dockerparallel:latest"}]},"status":{"phase":"\#(phase)","conditions":[{"type":"Ready","status":"\#(phase == "Running" ? "True" : "False")"}]}}"#
    }

    static func list(_ pods: [String], version: String) -> String {
        #"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"\#(version)"},"items":[\#(pods.joined(separator: ","))]}"#
    }

    @Test("a watch whose version expired (410 Gone) lists the pods again and goes on from the new list")
    func watchExpiryListsAgain() async throws {
        let expired = #"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 100 (250)","reason":"Expired","code":410}}"#
        let transport = RecordedTransport([
            .json(.GET, pods, query: [selector], Self.list([Self.pod("w-a", version: "90")], version: "100")),
            .json(.GET, pods, query: nil, #"{"type":"ADDED","object":\#(Self.pod("w-b", version: "101", phase: "Pending"))}"# + "\n" + expired + "\n"),
            .json(.GET, pods, query: [selector], Self.list([Self.pod("w-a", version: "90"), Self.pod("w-c", version: "240")], version: "250")),
        ])
        // Afterwards the watch goes on; these answer it for the rest of the test.
        let bookmark = #"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"260"}}}"#
        await transport.append((0..<40).flatMap { _ in [
            RecordedTransport.Exchange.json(.GET, pods, query: [selector], Self.list([Self.pod("w-a", version: "90"), Self.pod("w-c", version: "240")], version: "250")),
            RecordedTransport.Exchange.json(.GET, pods, query: nil, bookmark + "\n"),
        ] })
        let watch = PodWatch(
            client: KubernetesClient(namespace: "ns", transport: transport, retry: .none), selector: LabelSelector(["dockerparallel.io/cluster": "rec"]),
            logger: Logger(label: "test"))
        let deadline = ContinuousClock.now + .seconds(10)
        var names: [String] = []
        while ContinuousClock.now < deadline {
            names = try await watch.current().compactMap(\.metadata.name).sorted()
            if names == ["w-a", "w-c"] { break }
            await watch.waitForChange(until: min(deadline, ContinuousClock.now + .milliseconds(200)))
        }
        await watch.stop()
        // w-b came from the expired watch and was gone from the new list: it is forgotten.
        #expect(names == ["w-a", "w-c"])
        let requests = await transport.requests.filter { $0.path == pods }
        #expect(requests.count >= 3)
        let watchRequest = requests.first { $0.query.contains(QueryItem("watch", "true")) }
        #expect(watchRequest?.query.contains(QueryItem("resourceVersion", "100")) == true, "the watch starts from the list's version: \(requests.map(\.summary))")
    }

    @Test("a quota that refuses a worker pod is an error naming the quota and what to do")
    func quotaExceeded() async throws {
        let refusal = #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"dockerparallel-rec-worker-abcde\" is forbidden: exceeded quota: compute-resources, requested: limits.cpu=1, used: limits.cpu=4, limited: limits.cpu=4","reason":"Forbidden","details":{"name":"dockerparallel-rec-worker-abcde","kind":"pods"},"code":403}"#
        let server = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"dockerparallel-rec-server","annotations":{"dockerparallel.io/secret":"dockerparallel-rec-1234","dockerparallel.io/port":"7777"}},"spec":{"replicas":1,"selector":{"matchLabels":{}},"template":{"metadata":{},"spec":{"containers":[]}}}}"#
        let transport = RecordedTransport([
            .json(.GET, "/apis/apps/v1/namespaces/ns/deployments/dockerparallel-rec-workers", status: 404, #"{"kind":"Status","code":404,"reason":"NotFound","message":"deployments.apps \"dockerparallel-rec-workers\" not found"}"#),
            .json(.GET, pods, query: [QueryItem("labelSelector", "app.kubernetes.io/component=worker,dockerparallel.io/cluster=rec")], Self.list([], version: "5")),
            .json(.GET, "/apis/apps/v1/namespaces/ns/deployments/dockerparallel-rec-server", server),
            .json(.POST, pods, status: 403, refusal),
        ])
        let container = DockerWorkerContainer().configuredAsWorker(
            configuration: context().configuration, server: Endpoint(host: "s", port: 7777), workerNumber: 1)
        let error = await #expect(throws: DockerParallelError.self) {
            try await provider(transport).setWorkerNumber(
                context: context(), container: container, hardware: .defaultWorker, workerNumber: 1)
        }
        #expect(error?.message.contains("exceeded quota: compute-resources") == true)
        #expect(error?.message.contains("ResourceQuota") == true, "it says what to do")
        try await transport.verify()
    }

    @Test("a server Deployment another process created first wins: this process's Secret goes and it waits for that server")
    func deploymentCreatedByAnother() async throws {
        let deployments = "/apis/apps/v1/namespaces/ns/deployments"
        let taken = #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"dockerparallel-rec-server\" already exists","reason":"AlreadyExists","details":{"name":"dockerparallel-rec-server","group":"apps","kind":"deployments"},"code":409}"#
        let theirs = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"dockerparallel-rec-server","annotations":{"dockerparallel.io/secret":"dockerparallel-rec-theirs","dockerparallel.io/port":"7777","dockerparallel.io/network":"pod"}},"spec":{"replicas":1,"selector":{"matchLabels":{}},"template":{"metadata":{},"spec":{"containers":[]}}}}"#
        let serverPod = #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"dockerparallel-rec-server-1-x","labels":{"dockerparallel.io/cluster":"rec","app.kubernetes.io/component":"server"}},"spec":{"containers":[]},"status":{"phase":"Running","podIP":"10.1.2.3","conditions":[{"type":"Ready","status":"True"}]}}"#
        let transport = RecordedTransport([
            .json(.GET, "\(deployments)/dockerparallel-rec-server", status: 404, #"{"kind":"Status","code":404,"reason":"NotFound","message":"not found"}"#),
            .json(.POST, "/api/v1/namespaces/ns/secrets", status: 201, "{}"),
            .json(.POST, "/api/v1/namespaces/ns/persistentvolumeclaims", status: 201, "{}"),
            .json(.POST, "/api/v1/namespaces/ns/services", status: 201, "{}"),
            .json(.POST, deployments, status: 409, taken),
            .json(.DELETE, "/api/v1/namespaces/ns/secrets/*", query: nil, "{}"),
            .json(.GET, "\(deployments)/dockerparallel-rec-server", theirs),
            .json(.GET, pods, query: [selector], Self.list([serverPod], version: "9")),
            // Its Secrets that nothing mounts go: the other's stays.
            .json(.GET, "\(deployments)/dockerparallel-rec-server", theirs),
            .json(.GET, "/api/v1/namespaces/ns/secrets", query: nil, #"{"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"dockerparallel-rec-theirs","labels":{"dockerparallel.io/cluster":"rec"}}}]}"#),
        ])
        let server = try DockerWorkerContainer().serverContainer().configuredAsServer(configuration: context().configuration)
        // The watch may list again meanwhile: answer it as often as it asks.
        await transport.append((0..<20).map { _ in .json(.GET, pods, query: nil, Self.list([serverPod], version: "9")) })
        try await provider(transport).runServer(context: context(), container: server, hardware: .defaultServer)
        let created = await transport.received(.POST, "/api/v1/namespaces/ns/secrets")
        let deleted = await transport.requests.filter { $0.method == .DELETE }
        let body = try #require(created.first?.body)
        let name = try #require((try JSONSerialization.jsonObject(with: body) as? [String: Any]).flatMap { ($0["metadata"] as? [String: Any])?["name"] as? String })
        #expect(deleted.map(\.path) == ["/api/v1/namespaces/ns/secrets/\(name)"], "its own Secret is deleted, not the other's")
    }

    @Test("a user the API refuses gets told what permission is missing")
    func forbiddenUser() async throws {
        let refusal = #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps is forbidden: User \"system:serviceaccount:ns:default\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"ns\"","reason":"Forbidden","details":{"group":"apps","kind":"deployments"},"code":403}"#
        let transport = RecordedTransport([
            .json(.GET, "/apis/apps/v1/namespaces/ns/deployments", query: nil, status: 403, refusal),
        ])
        let error = await #expect(throws: DockerParallelError.self) {
            try await provider(transport).initialize(context: context())
        }
        #expect(error?.message.contains("cannot list resource \"deployments\"") == true)
        #expect(error?.message.contains("Role") == true)
    }
}
