import DockerEngineProvider
import DockerParallelCore
import Foundation
import Logging
import ProviderKit

/// Runs the server and the workers on Kubernetes, through the API server's REST API.
///
/// In the namespace it works in, a cluster is:
/// - a Secret with the password and the server's TLS keys, mounted as files (never in an
///   environment or an annotation);
/// - a PersistentVolumeClaim for the server's durable store, kept until a deep cleanup;
/// - the server as a Deployment of one pod (strategy `Recreate`: the claim mounts once), with a
///   Service in front; its annotations hold the static data without secrets, so that a new
///   process reconnects by the cluster's name;
/// - workers as pods the provider manages, so that scaling down stops the newest first and
///   never more than asked (``ScalingPlan``).
///
/// Everything carries the labels `app.kubernetes.io/managed-by=dockerparallel` and
/// `dockerparallel.io/cluster=<name>`. A watch of the cluster's pods keeps the worker numbers
/// current without polling.
public actor KubernetesProvider: CloudProvider {
    /// Where the API server is and how the cluster's objects are made.
    public struct Configuration: Sendable {
        /// The kubeconfig file (or a `:`-separated list); `nil`: `KUBECONFIG`, then
        /// `~/.kube/config`, then the pod's service account.
        public var kubeconfig: String?
        /// The kubeconfig context; `nil`: its current context.
        public var context: String?
        /// The namespace; `nil`: the context's, else `default`.
        public var namespace: String?
        /// `pod` (default): pods get their own addresses, workers dial the Service's name.
        /// `host`: pods use their node's network (`hostNetwork`), and everyone dials the
        /// server pod's address.
        public var network: String
        /// The Service's type: `ClusterIP` (default), `NodePort` or `LoadBalancer`.
        public var serviceType: String
        /// The address at which clients outside the cluster reach the server (a `kubectl
        /// port-forward`'s `127.0.0.1`, a node's address); `nil`: a LoadBalancer's, or the
        /// Service's name inside the cluster.
        public var serverAddress: String?
        /// The store's storage class; `nil`: the cluster's default.
        public var storageClass: String?
        /// The store's size (default `1Gi`).
        public var storageSize: String
        /// Node labels every pod must match.
        public var nodeSelector: [String: String]
        /// Node labels the server's pod must also match.
        public var serverNodeSelector: [String: String]
        /// The pods' service account; `nil`: the namespace's default.
        public var serviceAccount: String?
        /// `IfNotPresent` (default), `Always` or `Never`.
        public var imagePullPolicy: String
        /// Secrets with registry credentials for the images.
        public var imagePullSecrets: [String]
        /// Whether hardware is also requested (default `false`: it is only a limit). Requested,
        /// the scheduler places a pod only on a node with that much free.
        public var reservesHardware: Bool
        /// How long to wait for the server to run and listen.
        public var startTimeout: Duration
        /// How long a stopped pod gets to exit (workers drain) before it is killed.
        public var stopGracePeriod: Duration

        /// Creates a configuration.
        public init(
            kubeconfig: String? = nil, context: String? = nil, namespace: String? = nil, network: String = "pod",
            serviceType: String = "ClusterIP", serverAddress: String? = nil, storageClass: String? = nil, storageSize: String = "1Gi",
            nodeSelector: [String: String] = [:], serverNodeSelector: [String: String] = [:], serviceAccount: String? = nil,
            imagePullPolicy: String = "IfNotPresent", imagePullSecrets: [String] = [], reservesHardware: Bool = false,
            startTimeout: Duration = .seconds(180), stopGracePeriod: Duration = .seconds(30)
        ) {
            self.kubeconfig = kubeconfig
            self.context = context
            self.namespace = namespace
            self.network = network
            self.serviceType = serviceType
            self.serverAddress = serverAddress
            self.storageClass = storageClass
            self.storageSize = storageSize
            self.nodeSelector = nodeSelector
            self.serverNodeSelector = serverNodeSelector
            self.serviceAccount = serviceAccount
            self.imagePullPolicy = imagePullPolicy
            self.imagePullSecrets = imagePullSecrets
            self.reservesHardware = reservesHardware
            self.startTimeout = startTimeout
            self.stopGracePeriod = stopGracePeriod
        }

        var usesHostNetwork: Bool { network == "host" }

        /// Checks the settings a user types.
        /// - Throws: `.invalidArgument` naming the setting and what it takes.
        public func validate() throws {
            guard ["pod", "host"].contains(network) else {
                throw DockerParallelError(.invalidArgument, "the Kubernetes network '\(network)' is unknown: use 'pod' or 'host'")
            }
            guard ["ClusterIP", "NodePort", "LoadBalancer"].contains(serviceType) else {
                throw DockerParallelError(
                    .invalidArgument, "the Service type '\(serviceType)' is unknown: use ClusterIP, NodePort or LoadBalancer")
            }
            guard ["IfNotPresent", "Always", "Never"].contains(imagePullPolicy) else {
                throw DockerParallelError(
                    .invalidArgument, "the image pull policy '\(imagePullPolicy)' is unknown: use IfNotPresent, Always or Never")
            }
        }
    }

    /// The exit status of a container whose start-up failed (packages, bad settings).
    public static let startupFailureStatus = DockerEngineProvider.startupFailureStatus

    /// The provider's configuration.
    public let configuration: Configuration
    /// The namespace it works in.
    public nonisolated let namespace: String
    /// Where the API server is, for messages.
    public nonisolated let apiDescription: String
    let client: KubernetesClient
    let pollInterval: Duration
    private var watches: [String: PodWatch] = [:]

    /// Creates a provider from a kubeconfig or the pod's service account.
    /// - Throws: `.invalidArgument` for a bad setting, or no configuration to be found.
    public init(configuration: Configuration = Configuration()) throws {
        try configuration.validate()
        let access = try KubernetesAccess.load(
            kubeconfig: configuration.kubeconfig, context: configuration.context, namespace: configuration.namespace)
        self.configuration = configuration
        self.namespace = access.namespace
        self.apiDescription = "\(access.server) (\(access.source))"
        self.client = KubernetesClient(namespace: access.namespace, transport: try KubernetesTransport(access: access))
        self.pollInterval = .milliseconds(250)
    }

    /// Creates a provider that talks to the API through `transport` (tests pass recorded answers).
    package init(
        configuration: Configuration, namespace: String, transport: any HTTPTransport, retry: RetryPolicy = .none,
        pollInterval: Duration = .milliseconds(1)
    ) {
        self.configuration = configuration
        self.namespace = namespace
        self.apiDescription = "the test API"
        self.client = KubernetesClient(namespace: namespace, transport: transport, retry: retry, sleep: { _ in })
        self.pollInterval = pollInterval
    }

    /// The objects of a cluster.
    package nonisolated func objects(_ context: ClusterContext) -> ClusterObjects {
        ClusterObjects(configuration: configuration, namespace: namespace, queue: context.configuration.jobQueueName)
    }

    func watch(_ objects: ClusterObjects, logger: Logger? = nil) -> PodWatch {
        if let watch = watches[objects.queue] { return watch }
        let watch = PodWatch(client: client, selector: objects.selector, logger: logger ?? Logger(label: "dockerparallel.kubernetes"))
        watches[objects.queue] = watch
        return watch
    }

    deinit {
        for watch in watches.values { watch.cancel() }
    }

    // MARK: CloudProvider

    /// Checks that the API answers and lets this user read the namespace's Secrets.
    /// - Throws: `.providerFailed` naming the API server and what it said.
    public func initialize(context: ClusterContext) async throws {
        try ClusterConfiguration.validate(jobQueueName: context.configuration.jobQueueName)
        do {
            _ = try await client.list(Deployment.self, .deployments, selector: objects(context).selector)
        } catch let error as RESTError {
            let hint = switch error.status {
            case 401: " The credentials were refused: log in again, or check the kubeconfig's user."
            case 403: " This user may not read Deployments in '\(namespace)': ask for a Role that allows pods, services, secrets, persistentvolumeclaims and deployments there."
            case 404: " The namespace '\(namespace)' may not exist: create it with `kubectl create namespace \(namespace)`, or choose another with --namespace."
            default: ""
            }
            throw DockerParallelError(.providerFailed, "cannot use the Kubernetes API at \(apiDescription): \(error)\(hint)")
        }
    }

    public func runServer(context: ClusterContext, container: any WorkerContainer, hardware: Hardware) async throws {
        let objects = objects(context)
        if context.isRestart, try await storedStaticData(context: context) == nil {
            throw DockerParallelError(
                .serverNotRunning, "the server of '\(context.configuration.jobQueueName)' was stopped on purpose while it was being restarted")
        }
        if try await serverDeployment(objects) != nil {
            // Running already, or started by another process: its Deployment keeps it going.
            return try await waitForServer(objects, isNew: false)
        }
        let port = context.configuration.serverPort == 0
            ? (configuration.usesHostNetwork ? try await DockerEngineProvider.freePort(on: "127.0.0.1") : 8888)
            : context.configuration.serverPort
        var environment = container.environment
        let secretName = objects.secretName()
        let secret = objects.secret(named: secretName, movingSecretsOutOf: &environment)
        var staticData = context.staticData
        staticData.configuration.serverPort = port
        let deployment = try objects.serverDeployment(
            container: container, environment: environment, hardware: hardware, port: port, secretName: secretName,
            staticData: staticData)
        do {
            try await client.create(secret, in: .secrets)
        } catch let error as RESTError where error.status == 404 {
            throw DockerParallelError(
                .providerFailed,
                "the namespace '\(namespace)' does not exist at \(apiDescription): create it with `kubectl create namespace \(namespace)`, or choose another with --namespace (\(error.message))")
        }
        try await createUnlessPresent(objects.claim(), in: .claims)
        try await createUnlessPresent(objects.service(port: port), in: .services)
        var isNew = true
        do {
            try await client.create(deployment, in: .deployments)
        } catch is AlreadyExists {
            // Another process created it first: its Secret is the one in use.
            try await client.delete(.secrets, secretName)
            isNew = false
        }
        try await waitForServer(objects, isNew: isNew)
        try await removeUnusedSecrets(objects)
        context.logger.debug("started the server deployment", metadata: ["name": "\(objects.serverName)", "port": "\(port)"])
    }

    func createUnlessPresent<T: Codable & Sendable>(_ object: T, in resource: KubernetesClient.Resource) async throws {
        do {
            try await client.create(object, in: resource)
        } catch is AlreadyExists {
            // Kept from an earlier start (the store's claim), or made by another process.
        }
    }

    /// Deletes the server's Deployment and Service, and its Secrets unless running workers still
    /// mount them, and waits until its pod is gone, so that a new server can mount the store;
    /// the store's claim stays until a deep cleanup.
    public func stopServer(context: ClusterContext) async throws {
        let objects = objects(context)
        try await deleteDeployments(objects, selector: objects.serverSelector)
        try await client.delete(.services, objects.serverName)
        try await removeUnusedSecrets(objects)
        try await waitUntilPodsAreGone(objects, selector: objects.serverSelector)
    }

    /// Deletes the Deployments with these labels once their pods are gone (foreground), and the
    /// pods with these labels that no controller owns.
    func deleteDeployments(_ objects: ClusterObjects, selector: LabelSelector) async throws {
        for deployment in try await client.list(Deployment.self, .deployments, selector: selector).items {
            if let name = deployment.metadata.name { try await client.delete(.deployments, name, propagation: "Foreground") }
        }
    }

    /// Deletes the cluster's Secrets that neither the server's Deployment nor a pod mounts: a
    /// worker left running across a server's restart keeps the one it has (Kubernetes would
    /// delete a Secret in use, and the pod could not mount it again).
    func removeUnusedSecrets(_ objects: ClusterObjects, keepingNone: Bool = false) async throws {
        var used: Set<String> = []
        if !keepingNone {
            if let deployment = try await serverDeployment(objects),
               let name = deployment.metadata.annotations?[ClusterObjects.Key.secret] {
                used.insert(name)
            }
            for pod in try await client.list(Pod.self, .pods, selector: objects.selector).items where !pod.isTerminating {
                for volume in pod.spec.volumes ?? [] { if let name = volume.secret?.secretName { used.insert(name) } }
            }
        }
        for secret in try await client.list(Secret.self, .secrets, selector: objects.selector).items {
            if let name = secret.metadata.name, !used.contains(name) { try await client.delete(.secrets, name) }
        }
    }

    public func serverStatus(context: ClusterContext) async throws -> ServerStatus {
        let objects = objects(context)
        guard let deployment = try await serverDeployment(objects) else { return .stopped }
        return try await servingPod(objects, deployment: deployment) != nil ? .running : .initializing
    }

    /// With the pods' own network, workers dial the Service's name, and clients the server
    /// address, a LoadBalancer's, or the Service's name; with the node's network, everyone
    /// dials the server pod's address.
    public func serverEndpoints(context: ClusterContext) async throws -> ServerEndpoints {
        let objects = objects(context)
        guard let deployment = try await serverDeployment(objects),
              let port = deployment.metadata.annotations?[ClusterObjects.Key.port].flatMap(Int.init)
        else {
            throw DockerParallelError(
                .serverStartFailed, "the server Deployment of '\(context.configuration.jobQueueName)' is not in the namespace '\(namespace)'")
        }
        if deployment.metadata.annotations?[ClusterObjects.Key.network] == "host" {
            let address = try await serverPodAddress(objects)
            let endpoint = Endpoint(host: address, port: port, usesTLS: !TransportSecurity.isLoopback(address))
            return ServerEndpoints(publicEndpoint: endpoint, privateEndpoint: endpoint)
        }
        let inside = Endpoint(host: objects.serviceHost, port: port, usesTLS: true)
        var outside = inside
        let service = try await client.get(Service.self, .services, objects.serverName)
        if let address = configuration.serverAddress {
            // A NodePort Service is reached at its node port, on any node's address.
            let nodePort = service?.spec.type == "NodePort" ? service?.spec.ports.first?.nodePort : nil
            outside = Endpoint(host: address, port: nodePort ?? port, usesTLS: !TransportSecurity.isLoopback(address))
        } else if let ingress = service?.status?.loadBalancer?.ingress?.first, let host = ingress.ip ?? ingress.hostname {
            outside = Endpoint(host: host, port: port, usesTLS: true)
        }
        return ServerEndpoints(publicEndpoint: outside, privateEndpoint: inside)
    }

    /// The address of the server's running pod, waiting for one until the start timeout.
    func serverPodAddress(_ objects: ClusterObjects) async throws -> String {
        let deadline = ContinuousClock.now + configuration.startTimeout
        let watch = watch(objects)
        while true {
            let server = try await watch.current().first { $0.metadata.labels?[ClusterObjects.Key.component] == "server" && !$0.isTerminating }
            if let address = server?.status?.podIP, !address.isEmpty { return address }
            guard ContinuousClock.now < deadline else {
                throw DockerParallelError(.timedOut, "the server pod of '\(objects.queue)' got no address within \(configuration.startTimeout)")
            }
            await watch.waitForChange(until: min(deadline, ContinuousClock.now + .seconds(2)))
        }
    }

    public func setWorkerNumber(
        context: ClusterContext, container: any WorkerContainer, hardware: Hardware, workerNumber: Int
    ) async throws {
        let objects = objects(context)
        let grace = Int(configuration.stopGracePeriod.components.seconds)
        if let workers = try await client.get(Deployment.self, .deployments, objects.workersName) {
            // Applied from `k8s manifests`: its workers are that Deployment's replicas.
            let slots = max(1, workers.spec.template.metadata.labels?[ClusterObjects.Key.workers].flatMap(Int.init) ?? 1)
            struct Scale: Encodable, Sendable {
                struct Spec: Encodable, Sendable { var replicas: Int }
                var spec: Spec
            }
            try await client.mergePatch(
                Deployment.self, .deployments, objects.workersName, Scale(spec: .init(replicas: (max(0, workerNumber) + slots - 1) / slots)))
            return
        }
        var current: [ScalingPlan.Container] = []
        for pod in try await client.list(Pod.self, .pods, selector: objects.workerSelector).items {
            // Pods a controller owns (a Deployment's) are that controller's to scale.
            guard let name = pod.metadata.name, !pod.isTerminating, pod.metadata.ownerReferences?.isEmpty ?? true else { continue }
            if pod.hasEnded {
                // It will not run again (evicted, or its node went): make room for a new one.
                try await client.delete(.pods, name, gracePeriod: 0)
                continue
            }
            // Each pod's worker is named after it (the downward API's metadata.name).
            current.append(ScalingPlan.Container(
                id: name, slots: pod.metadata.labels?[ClusterObjects.Key.workers].flatMap(Int.init) ?? 1, order: Self.order(of: pod),
                activity: ScalingPlan.activity(of: name, in: context.workerActivity)))
        }
        let plan = ScalingPlan(current: current, slotsPerContainer: container.maxWorkersPerContainer, wantedWorkers: workerNumber)
        for name in plan.idsToStop { try await client.delete(.pods, name, gracePeriod: grace) }
        guard !plan.sizesToStart.isEmpty else { return }
        guard let server = try await serverDeployment(objects),
              let secretName = server.metadata.annotations?[ClusterObjects.Key.secret]
        else {
            throw DockerParallelError(
                .serverNotRunning, "the server of '\(context.configuration.jobQueueName)' is not running: start the cluster first")
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for slots in plan.sizesToStart {
                let pod = objects.workerPod(
                    named: objects.workerPodName(), container: container, hardware: hardware, slots: slots, secretName: secretName)
                group.addTask {
                    do {
                        try await self.client.create(pod, in: .pods)
                    } catch let error as RESTError where error.status == 403 && error.message.contains("exceeded quota") {
                        throw DockerParallelError(
                            .providerFailed,
                            "Kubernetes refused a worker pod in '\(self.namespace)': \(error.message). Ask fewer workers or less hardware per worker, or ask the namespace's admin for a larger ResourceQuota (`kubectl describe resourcequota -n \(self.namespace)`).")
                    }
                }
            }
            try await group.waitForAll()
        }
        if let failure = try await startupFailure(of: try await client.list(Pod.self, .pods, selector: objects.workerSelector).items) {
            throw DockerParallelError(.providerFailed, failure)
        }
    }

    /// When a pod was made: the provider's annotation, else its creation time.
    static func order(of pod: Pod) -> Int64 {
        if let created = pod.metadata.annotations?[ClusterObjects.Key.created].flatMap(Int64.init) { return created }
        if let text = pod.metadata.creationTimestamp, let date = ISO8601DateFormatter().date(from: text) {
            return Int64(date.timeIntervalSince1970 * 1e9)
        }
        return 0
    }

    /// Counted from the worker pods that the watch sees: ready ones run, the others start.
    public func workerNumbers(context: ClusterContext) async throws -> WorkerNumbers {
        var numbers = WorkerNumbers(expected: context.configuration.expectedWorkerNumber, initializing: 0, running: 0)
        for pod in try await watch(objects(context)).current()
        where pod.metadata.labels?[ClusterObjects.Key.component] == "worker" && !pod.isTerminating && !pod.hasEnded {
            let slots = pod.metadata.labels?[ClusterObjects.Key.workers].flatMap(Int.init) ?? 1
            if pod.isReady { numbers.running += slots } else { numbers.initializing += slots }
        }
        return numbers
    }

    public func clusterExists(context: ClusterContext) async throws -> Bool {
        try await serverDeployment(objects(context)) != nil
    }

    public func reconnect(context: ClusterContext) async throws -> StaticData {
        guard let data = try await storedStaticData(context: context) else {
            throw DockerParallelError(
                .clusterNotFound,
                "no server Deployment of the cluster '\(context.configuration.jobQueueName)' is in the namespace '\(namespace)' at \(apiDescription)")
        }
        return data
    }

    /// The static data on the server's Deployment, with the password and TLS keys read back
    /// from its Secret; `nil` once the Deployment is gone (stopped on purpose).
    public func storedStaticData(context: ClusterContext) async throws -> StaticData? {
        let objects = objects(context)
        guard let deployment = try await serverDeployment(objects),
              let text = deployment.metadata.annotations?[ClusterObjects.Key.staticData], let data = Data(base64Encoded: text)
        else { return nil }
        var staticData = try JSONDecoder().decode(StaticData.self, from: data)
        guard let secretName = deployment.metadata.annotations?[ClusterObjects.Key.secret],
              let secret = try await client.get(Secret.self, .secrets, secretName)
        else {
            throw DockerParallelError(
                .invalidState,
                "the Secret of the cluster '\(objects.queue)' is gone: restart it with `dockerparallel down --provider kubernetes --name \(objects.queue)` and `up`")
        }
        if let password = secret.value("password") { staticData.configuration.serverPassword = ServerPassword(password) }
        if let key = secret.value("tls-key") { staticData.configuration.transportSecurity.serverPrivateKey = ServerPassword(key) }
        if let key = secret.value("tls-ca-key") { staticData.configuration.transportSecurity.certificateAuthorityKey = ServerPassword(key) }
        return staticData
    }

    /// Deletes the cluster's worker pods, server Deployment, Service and Secrets, and waits until
    /// its pods are gone; `deep` also the store's claim.
    public func cleanup(context: ClusterContext, deep: Bool) async throws {
        let objects = objects(context)
        let grace = Int(configuration.stopGracePeriod.components.seconds)
        try await deleteDeployments(objects, selector: objects.selector)
        try await client.delete(.services, objects.serverName)
        for pod in try await client.list(Pod.self, .pods, selector: objects.selector).items
        where pod.metadata.ownerReferences?.isEmpty ?? true {
            if let name = pod.metadata.name { try await client.delete(.pods, name, gracePeriod: grace) }
        }
        try await removeUnusedSecrets(objects, keepingNone: true)
        try await waitUntilPodsAreGone(objects, selector: objects.selector, forcing: true)
        await watches[objects.queue]?.stop()
        watches[objects.queue] = nil
        if deep {
            for claim in try await client.list(PersistentVolumeClaim.self, .claims, selector: objects.selector).items {
                if let name = claim.metadata.name { try await client.delete(.claims, name) }
            }
        }
    }

    /// The names of the clusters whose server Deployment is in the namespace.
    public func clusterNames() async throws -> [String] {
        let servers = try await client.list(
            Deployment.self, .deployments,
            selector: LabelSelector([ClusterObjects.Key.managedBy: "dockerparallel", ClusterObjects.Key.component: "server"]))
        return Set(servers.items.compactMap { $0.metadata.annotations?[ClusterObjects.Key.queue] }).sorted()
    }
}
