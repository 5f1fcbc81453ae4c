import DockerParallelCore
import Foundation
import Yams

extension KubernetesProvider {
    /// The cluster's objects as YAML documents, for users who apply them with their own tools
    /// (`kubectl apply -f -`, a GitOps repository): the same Secret, claim, Service and server
    /// Deployment the provider creates, and the workers' pod as a Deployment of
    /// `workers / slots` replicas. The Secret holds the cluster's password and TLS keys.
    ///
    /// - Parameters:
    ///   - context: The cluster's context, with its authority made (``ClusterObjects``).
    ///   - server: The server container, configured.
    ///   - worker: The worker container, configured to dial ``workerEndpoint(configuration:namespace:queue:port:)``.
    ///   - workers: The worker slots wanted.
    /// - Throws: `.invalidArgument` with host networking, where workers dial an address known
    ///   only once the server runs.
    package static func manifests(
        configuration: Configuration, namespace: String, context: ClusterContext, server: any WorkerContainer,
        worker: any WorkerContainer, workers: Int
    ) throws -> String {
        guard !configuration.usesHostNetwork else {
            throw DockerParallelError(
                .invalidArgument,
                "manifests need --network pod: with the node's network, workers dial the server pod's address, which is known only once it runs. Use `dockerparallel up --provider kubernetes --network host` instead.")
        }
        let objects = ClusterObjects(configuration: configuration, namespace: namespace, queue: context.configuration.jobQueueName)
        let port = serverPort(context)
        var environment = server.environment
        let secretName = "\(objects.base)-secrets"
        let secret = objects.secret(named: secretName, movingSecretsOutOf: &environment)
        var staticData = context.staticData
        staticData.configuration.serverPort = port
        let deployment = try objects.serverDeployment(
            container: server, environment: environment, hardware: context.configuration.serverHardware, port: port,
            secretName: secretName, staticData: staticData)
        let slots = max(1, worker.maxWorkersPerContainer)
        let workerDeployment = objects.workerDeployment(
            container: worker, hardware: context.configuration.workerHardware, slots: slots,
            replicas: (max(0, workers) + slots - 1) / slots, secretName: secretName)
        let encoder = YAMLEncoder()
        // The same objects print the same text: diffs in a repository show only what changed.
        encoder.options.sortKeys = true
        let documents: [String] = [
            try encoder.encode(secret), try encoder.encode(objects.claim()), try encoder.encode(objects.service(port: port)),
            try encoder.encode(deployment), try encoder.encode(workerDeployment),
        ]
        return documents.map { "---\n" + $0 }.joined()
    }

    /// Where workers dial the server with the pods' own network: its Service's name.
    package static func workerEndpoint(configuration: Configuration, namespace: String, context: ClusterContext) -> Endpoint {
        let objects = ClusterObjects(configuration: configuration, namespace: namespace, queue: context.configuration.jobQueueName)
        return Endpoint(host: objects.serviceHost, port: serverPort(context), usesTLS: true)
    }

    /// The server's port with the pods' own network: the one asked for, or 8888 for "any"
    /// (each pod has its own address, so no port is taken already).
    static func serverPort(_ context: ClusterContext) -> Int {
        context.configuration.serverPort == 0 ? 8888 : context.configuration.serverPort
    }
}
