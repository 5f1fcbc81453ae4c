import DockerEngineProvider
import DockerParallelCore
import Foundation
import ProviderKit

/// The Kubernetes objects of one cluster, built in one place for both the provider (which
/// creates them) and `dockerparallel k8s manifests` (which prints them): the server's Secret,
/// its store's PersistentVolumeClaim, its Service and Deployment, and the worker pods.
package struct ClusterObjects: Sendable {
    /// Label keys and annotation keys.
    package enum Key {
        /// `dockerparallel` on everything.
        package static let name = "app.kubernetes.io/name"
        /// `dockerparallel` on everything.
        package static let managedBy = "app.kubernetes.io/managed-by"
        /// `server` or `worker`.
        package static let component = "app.kubernetes.io/component"
        /// The cluster's name as Kubernetes names allow it (``ClusterObjects/slug``).
        package static let cluster = "dockerparallel.io/cluster"
        /// Worker slots in a worker pod.
        package static let workers = "dockerparallel.io/workers"
        /// Annotation: the job queue name as the user wrote it.
        package static let queue = "dockerparallel.io/queue"
        /// Annotation on the server's Deployment: its port.
        package static let port = "dockerparallel.io/port"
        /// Annotation on the server's Deployment: the Secret its containers use.
        package static let secret = "dockerparallel.io/secret"
        /// Annotation on the server's Deployment: the static data (base64 JSON) without its secrets.
        package static let staticData = "dockerparallel.io/static-data"
        /// Annotation on the server's Deployment: `host` when its pods use their node's network.
        package static let network = "dockerparallel.io/network"
        /// Annotation on a worker pod: when it was made, in nanoseconds since 1970 (the
        /// scaling plan stops the newest first; an API server's `creationTimestamp` has seconds only).
        package static let created = "dockerparallel.io/created"
    }

    /// Where the Secret's files are mounted.
    package static let secretDirectory = "/run/secrets/dockerparallel"
    /// Where the store's claim is mounted in the server's container.
    package static let storeDirectory = "/workspace/store"

    /// The configuration the objects follow.
    package var configuration: KubernetesProvider.Configuration
    /// The namespace they go in.
    package var namespace: String
    /// The job queue name.
    package var queue: String

    /// Creates the builder for a cluster.
    package init(configuration: KubernetesProvider.Configuration, namespace: String, queue: String) {
        self.configuration = configuration
        self.namespace = namespace
        self.queue = queue
    }

    // MARK: Names

    /// The job queue name as a DNS label: lower case, `_` and `.` as `-`; a name changed that way
    /// (or shortened to fit) ends with a digest of the original, so that no two clusters share one.
    package static func slug(_ queue: String) -> String {
        var text = String(queue.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" })
        while text.hasSuffix("-") { text.removeLast() }
        while text.hasPrefix("-") { text.removeFirst() }
        guard text != queue || text.count > 41 else { return text }
        let digest = String(NameDigest.fnv1a(Data(queue.utf8)) & 0xff_ffff, radix: 16)
        return String(text.prefix(34)) + (text.isEmpty ? "" : "-") + digest
    }

    /// `dockerparallel-<slug>`: the prefix of every name.
    package var base: String { "dockerparallel-\(Self.slug(queue))" }
    /// The server's Deployment and Service.
    package var serverName: String { "\(base)-server" }
    /// The store's claim.
    package var claimName: String { "\(base)-store" }
    /// The Deployment that `k8s manifests` prints for the workers.
    package var workersName: String { "\(base)-workers" }
    /// A new worker pod's name.
    package func workerPodName() -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return "\(base)-worker-" + String((0..<5).map { _ in letters.randomElement() ?? "x" })
    }
    /// A new Secret's name.
    package func secretName() -> String {
        "\(base)-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    }
    /// The server's name inside the cluster, as workers dial it.
    package var serviceHost: String { "\(serverName).\(namespace).svc" }

    // MARK: Labels

    /// The labels that select everything of the cluster.
    package var selector: LabelSelector { LabelSelector([Key.cluster: Self.slug(queue)]) }
    /// The labels that select the server's pods.
    package var serverSelector: LabelSelector { selector.adding(Key.component, "server") }
    /// The labels that select the worker pods.
    package var workerSelector: LabelSelector { selector.adding(Key.component, "worker") }

    func labels(_ component: String?) -> [String: String] {
        var labels = [Key.name: "dockerparallel", Key.managedBy: "dockerparallel", Key.cluster: Self.slug(queue)]
        if let component { labels[Key.component] = component }
        return labels
    }

    func meta(_ name: String, component: String?, annotations: [String: String] = [:]) -> ObjectMeta {
        ObjectMeta(name: name, namespace: namespace, labels: labels(component), annotations: [Key.queue: queue].merging(annotations) { $1 })
    }

    // MARK: Objects

    /// The Secret with the password and the server's TLS keys, under the keys `password`,
    /// `tls-key` and `tls-ca-key`, taken out of `environment`, which then names their files.
    package func secret(named name: String, movingSecretsOutOf environment: inout [String: String]) -> Secret {
        var values: [String: String] = [:]
        for (key, fileKey, item) in Self.secretItems {
            guard let value = environment.removeValue(forKey: key), !value.isEmpty else { continue }
            values[item] = value
            environment[fileKey] = "\(Self.secretDirectory)/\(item)"
        }
        return Secret(metadata: meta(name, component: nil), values: values)
    }

    static let secretItems = [
        (EnvironmentKey.password, EnvironmentKey.passwordFile, "password"),
        (EnvironmentKey.tlsPrivateKey, EnvironmentKey.tlsPrivateKeyFile, "tls-key"),
        (EnvironmentKey.tlsCertificateAuthorityKey, EnvironmentKey.tlsCertificateAuthorityKeyFile, "tls-ca-key"),
    ]

    /// The store's claim.
    package func claim() -> PersistentVolumeClaim {
        PersistentVolumeClaim(
            metadata: meta(claimName, component: "server"),
            spec: .init(
                accessModes: ["ReadWriteOnce"], storageClassName: configuration.storageClass,
                resources: .init(requests: ["storage": configuration.storageSize])))
    }

    /// The server's Service.
    package func service(port: Int) -> Service {
        Service(
            metadata: meta(serverName, component: "server"),
            spec: .init(
                type: configuration.serviceType, selector: serverSelector.labels,
                ports: [.init(name: "broker", port: port, targetPort: port, protocol: "TCP")]))
    }

    /// The server's Deployment: one pod, replaced only after the old one stopped (its store's
    /// claim can be mounted once).
    /// - Parameters:
    ///   - container: The server container, configured.
    ///   - environment: Its environment, secrets moved out (``secret(named:movingSecretsOutOf:)``).
    ///   - secretName: The Secret its files come from.
    ///   - staticData: What `reconnect` reads back, without secrets.
    package func serverDeployment(
        container: any WorkerContainer, environment: [String: String], hardware: Hardware, port: Int, secretName: String,
        staticData: StaticData
    ) throws -> Deployment {
        var environment = environment
        environment[EnvironmentKey.host] = "0.0.0.0"
        environment[EnvironmentKey.port] = String(port)
        environment[EnvironmentKey.storePath] = "\(Self.storeDirectory)/broker.sqlite"
        var names = [serverName, "\(serverName).\(namespace)", serviceHost, "\(serviceHost).cluster.local"]
        if let address = configuration.serverAddress { names.append(address) }
        environment[EnvironmentKey.tlsNames] = names.joined(separator: ",")
        var serverContainer = podContainer(
            name: "server", container: container, environment: environment, hardware: hardware,
            mounts: [
                .init(name: "secrets", mountPath: Self.secretDirectory, readOnly: true),
                .init(name: "store", mountPath: Self.storeDirectory),
            ])
        serverContainer.ports = [.init(name: "broker", containerPort: port, protocol: "TCP")]
        serverContainer.readinessProbe = .init(tcpSocket: .init(port: port), periodSeconds: 2)
        var spec = podSpec(containers: [serverContainer], volumes: [
            Volume(name: "secrets", secret: .init(secretName: secretName, defaultMode: 0o444)),
            Volume(name: "store", persistentVolumeClaim: .init(claimName: claimName)),
        ])
        spec.nodeSelector = configuration.nodeSelector.merging(configuration.serverNodeSelector) { $1 }.nilIfEmpty
        let annotations = [
            Key.port: String(port), Key.secret: secretName,
            Key.staticData: try JSONEncoder().encode(Self.withoutSecrets(staticData)).base64EncodedString(),
            Key.network: configuration.usesHostNetwork ? "host" : "pod",
        ]
        return Deployment(
            metadata: meta(serverName, component: "server", annotations: annotations),
            spec: .init(
                replicas: 1, selector: .init(matchLabels: serverSelector.labels), strategy: .init(type: "Recreate"),
                template: .init(metadata: ObjectMeta(labels: labels("server"), annotations: [Key.queue: queue]), spec: spec)))
    }

    /// A worker pod running `slots` worker slots that dial the server with the password from `secretName`.
    package func workerPod(
        named name: String, container: any WorkerContainer, hardware: Hardware, slots: Int, secretName: String
    ) -> Pod {
        var environment = container.environment
        environment[EnvironmentKey.password] = nil
        environment[EnvironmentKey.passwordFile] = "\(Self.secretDirectory)/password"
        environment[EnvironmentKey.slots] = String(slots)
        environment[EnvironmentKey.workerName] = nil
        var workerContainer = podContainer(
            name: "worker", container: container, environment: environment, hardware: hardware,
            mounts: [.init(name: "secrets", mountPath: Self.secretDirectory, readOnly: true)])
        workerContainer.env?.append(.init(name: EnvironmentKey.workerName, valueFrom: .init(fieldRef: .init(fieldPath: "metadata.name"))))
        var spec = podSpec(containers: [workerContainer], volumes: [
            Volume(name: "secrets", secret: .init(secretName: secretName, defaultMode: 0o444, items: [.init(key: "password", path: "password")]))
        ])
        spec.nodeSelector = configuration.nodeSelector.nilIfEmpty
        var metadata = meta(name, component: "worker", annotations: [Key.created: String(Self.nanosecondsSince1970())])
        metadata.labels?[Key.workers] = String(slots)
        return Pod(metadata: metadata, spec: spec)
    }

    /// The worker pods as one Deployment, for `k8s manifests`: the same pod, scaled by its replicas.
    package func workerDeployment(container: any WorkerContainer, hardware: Hardware, slots: Int, replicas: Int, secretName: String)
        -> Deployment
    {
        let pod = workerPod(named: workersName, container: container, hardware: hardware, slots: slots, secretName: secretName)
        var templateLabels = pod.metadata.labels ?? [:]
        templateLabels[Key.workers] = String(slots)
        return Deployment(
            metadata: meta(workersName, component: "worker"),
            spec: .init(
                replicas: replicas, selector: .init(matchLabels: workerSelector.labels), strategy: nil,
                template: .init(metadata: ObjectMeta(labels: templateLabels, annotations: [Key.queue: queue]), spec: pod.spec)))
    }

    func podSpec(containers: [Container], volumes: [Volume]) -> PodSpec {
        // With the process namespace shared, the pod's pause container is PID 1: it reaps the
        // tasks' orphans, and the worker gets signals like any process (PID 1 ignores a SIGKILL
        // sent from inside its container), as the Docker providers' `Init` does.
        PodSpec(
            containers: containers, restartPolicy: "Always", hostNetwork: configuration.usesHostNetwork ? true : nil,
            shareProcessNamespace: true, dnsPolicy: configuration.usesHostNetwork ? "ClusterFirstWithHostNet" : nil, nodeSelector: nil,
            serviceAccountName: configuration.serviceAccount, automountServiceAccountToken: false,
            terminationGracePeriodSeconds: Int(configuration.stopGracePeriod.components.seconds), volumes: volumes,
            imagePullSecrets: configuration.imagePullSecrets.isEmpty ? nil : configuration.imagePullSecrets.map { .init(name: $0) })
    }

    func podContainer(
        name: String, container: any WorkerContainer, environment: [String: String], hardware: Hardware, mounts: [Container.VolumeMount]
    ) -> Container {
        let environment = DockerEngineProvider.startupEnvironment(container, environment)
        return Container(
            name: name, image: container.image, imagePullPolicy: configuration.imagePullPolicy,
            env: environment.sorted { $0.key < $1.key }.map { Container.EnvVar(name: $0.key, value: $0.value) },
            resources: Self.resources(hardware, reserving: configuration.reservesHardware), volumeMounts: mounts)
    }

    /// Hardware as limits (and, when reserved, requests): 1024 cpu units are one core.
    package static func resources(_ hardware: Hardware, reserving: Bool) -> Container.Resources? {
        var values: [String: String] = [:]
        if hardware.cpu > 0 { values["cpu"] = "\(max(1, hardware.cpu * 1000 / 1024))m" }
        if hardware.memory > 0 { values["memory"] = "\(hardware.memory)Mi" }
        guard !values.isEmpty else { return nil }
        return Container.Resources(requests: reserving ? values : nil, limits: values)
    }

    /// Static data without the password and the TLS keys, for an annotation.
    package static func withoutSecrets(_ data: StaticData) -> StaticData {
        var copy = data
        copy.configuration.serverPassword = ServerPassword("")
        copy.configuration.transportSecurity.serverPrivateKey = nil
        copy.configuration.transportSecurity.certificateAuthorityKey = nil
        return copy
    }

    static func nanosecondsSince1970() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1e9)
    }
}

/// FNV-1a, stable across processes and platforms.
enum NameDigest {
    static func fnv1a(_ data: Data) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}

extension Dictionary {
    var nilIfEmpty: Self? { isEmpty ? nil : self }
}
