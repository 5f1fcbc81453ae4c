import ArgumentParser
import DockerEngineProvider
import DockerParallel
import Foundation
import KubernetesProvider

struct KubernetesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "k8s",
        abstract: "Kubernetes helpers: print a cluster's objects for your own tools.",
        subcommands: [KubernetesManifests.self])
}

struct KubernetesManifests: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifests",
        abstract: "Print a cluster's Kubernetes objects as YAML, the same ones `up --provider kubernetes` creates.",
        discussion: """
            The output holds a Secret with the cluster's new password and TLS keys, a claim for \
            the server's store, the server's Service and Deployment, and the workers as a \
            Deployment: pipe it to `kubectl apply -f -` rather than keeping it in a repository. \
            Once applied, `dockerparallel status --provider kubernetes --name NAME` and the other \
            commands reconnect to it as to a cluster `up` made. No API server is contacted.
            """)

    @Option(name: [.short, .long, .customLong("cluster")], help: "The cluster's name (its job queue name).")
    var name: String = ClusterConfiguration.defaultJobQueueName

    @Option(help: "The namespace of the objects.")
    var namespace: String = "default"

    @Option(help: "Worker slots to run.")
    var workers: Int = 1

    @Option(help: "The server's port.")
    var port: Int = ClusterConfiguration.defaultServerPort

    @Option(name: [.long, .customLong("slots-per-container")], help: "Worker slots per worker pod.")
    var slotsPerProcess: Int = 1

    @Option(help: "The server and worker image, as built by `dockerparallel image build` and pushed to a registry the cluster pulls from.")
    var image: String = "dockerparallel:latest"

    @Option(help: "The server Service's type: ClusterIP, NodePort or LoadBalancer.")
    var serviceType: String = "ClusterIP"

    @Option(help: "The address at which clients outside the cluster reach the server (added to its certificate).")
    var serverAddress: String?

    @Option(help: "The storage class of the server's store (default the cluster's default).")
    var storageClass: String?

    @Option(help: "The size of the server's store.")
    var storageSize: String = "1Gi"

    @Option(help: "The image pull policy: IfNotPresent, Always or Never.")
    var imagePullPolicy: String = "IfNotPresent"

    mutating func validate() throws {
        guard workers >= 0 else { throw ValidationError("--workers must be 0 or more") }
        guard (1...65535).contains(port) else { throw ValidationError("--port must be between 1 and 65535") }
        guard slotsPerProcess >= 1 else { throw ValidationError("--slots-per-process must be at least 1") }
    }

    func run() async throws {
        try ClusterConfiguration.validate(jobQueueName: name)
        let providerConfiguration = KubernetesProvider.Configuration(
            namespace: namespace, serviceType: serviceType, serverAddress: serverAddress, storageClass: storageClass,
            storageSize: storageSize, imagePullPolicy: imagePullPolicy)
        try providerConfiguration.validate()
        let configuration = ClusterConfiguration(jobQueueName: name, expectedWorkerNumber: workers, serverPort: port)
        let handle = try DockerCluster(
            provider: ManifestOnlyProvider(),
            workerContainer: DockerWorkerContainer(image: image, maxWorkersPerContainer: slotsPerProcess),
            configuration: configuration, verbosity: 0, stopClusterOnExit: false, logger: CLIEnvironment.messageLogger)
        let probe = try await handle.deploymentPlan(workersDialing: Endpoint(host: "", port: port)).context
        let endpoint = KubernetesProvider.workerEndpoint(configuration: providerConfiguration, namespace: namespace, context: probe)
        let plan = try await handle.deploymentPlan(workersDialing: endpoint)
        let text = try KubernetesProvider.manifests(
            configuration: providerConfiguration, namespace: namespace, context: plan.context, server: plan.server,
            worker: plan.worker, workers: workers)
        FileHandle.standardOutput.write(Data(text.utf8))
        CLIEnvironment.warn("the Secret above holds the cluster's password and TLS keys: apply it (`| kubectl apply -f -`), do not commit it")
    }
}

/// A provider for a handle that only plans: it never runs anything.
struct ManifestOnlyProvider: CloudProvider {
    func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws {
        throw DockerParallelError(.unsupported, "k8s manifests starts nothing")
    }
    func stopServer(context: ClusterContext) async throws {}
    func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints {
        throw DockerParallelError(.unsupported, "k8s manifests starts nothing")
    }
    func setWorkerNumber(context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int) async throws {}
}
