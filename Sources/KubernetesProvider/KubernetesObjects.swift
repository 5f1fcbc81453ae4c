import Foundation

// The parts of the Kubernetes API's objects that the provider writes and reads, named as the API
// names them (https://kubernetes.io/docs/reference/kubernetes-api/). Every field is optional
// where the API's is, so that what the provider sends is exactly what it sets, and what it reads
// may lack anything (the emulator the tests use sets no status). `apiVersion` and `kind` are set
// on what is sent but optional on what is read: the items of a list come without them.

/// `metadata` of every object.
package struct ObjectMeta: Codable, Sendable, Equatable {
    package var name: String?
    package var namespace: String?
    package var labels: [String: String]?
    package var annotations: [String: String]?
    package var resourceVersion: String?
    package var uid: String?
    package var creationTimestamp: String?
    package var deletionTimestamp: String?
    package var ownerReferences: [OwnerReference]?

    package init(name: String? = nil, namespace: String? = nil, labels: [String: String]? = nil, annotations: [String: String]? = nil) {
        self.name = name
        self.namespace = namespace
        self.labels = labels
        self.annotations = annotations
    }

    package struct OwnerReference: Codable, Sendable, Equatable {
        package var apiVersion: String?
        package var kind: String?
        package var name: String?
        package var uid: String?
    }
}

/// `v1` `Secret`.
package struct Secret: Codable, Sendable, Equatable {
    package var apiVersion: String? = "v1"
    package var kind: String? = "Secret"
    package var metadata: ObjectMeta
    package var type: String?
    /// Values base64-encoded, as the API returns them.
    package var data: [String: String]?

    package init(metadata: ObjectMeta, values: [String: String]) {
        self.metadata = metadata
        self.type = "Opaque"
        self.data = values.mapValues { Data($0.utf8).base64EncodedString() }
    }

    /// A value decoded.
    package func value(_ key: String) -> String? {
        data?[key].flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }
    }
}

/// `v1` `PersistentVolumeClaim`.
package struct PersistentVolumeClaim: Codable, Sendable, Equatable {
    package var apiVersion: String? = "v1"
    package var kind: String? = "PersistentVolumeClaim"
    package var metadata: ObjectMeta
    package var spec: Spec

    package struct Spec: Codable, Sendable, Equatable {
        package var accessModes: [String]
        package var storageClassName: String?
        package var resources: VolumeResources
    }

    package struct VolumeResources: Codable, Sendable, Equatable {
        package var requests: [String: String]
    }
}

/// `v1` `Service`.
package struct Service: Codable, Sendable, Equatable {
    package var apiVersion: String? = "v1"
    package var kind: String? = "Service"
    package var metadata: ObjectMeta
    package var spec: Spec
    package var status: Status?

    package struct Spec: Codable, Sendable, Equatable {
        package var type: String?
        package var selector: [String: String]?
        package var ports: [Port]
    }

    package struct Port: Codable, Sendable, Equatable {
        package var name: String?
        package var port: Int
        package var targetPort: Int?
        package var nodePort: Int?
        package var `protocol`: String?
    }

    package struct Status: Codable, Sendable, Equatable {
        package var loadBalancer: LoadBalancer?
        package struct LoadBalancer: Codable, Sendable, Equatable {
            package var ingress: [Ingress]?
        }
        package struct Ingress: Codable, Sendable, Equatable {
            package var ip: String?
            package var hostname: String?
        }
    }
}

/// `apps/v1` `Deployment`.
package struct Deployment: Codable, Sendable, Equatable {
    package var apiVersion: String? = "apps/v1"
    package var kind: String? = "Deployment"
    package var metadata: ObjectMeta
    package var spec: Spec
    package var status: Status?

    package struct Spec: Codable, Sendable, Equatable {
        package var replicas: Int
        package var selector: Selector
        package var strategy: Strategy?
        package var template: PodTemplate
    }

    package struct Selector: Codable, Sendable, Equatable {
        package var matchLabels: [String: String]
    }

    package struct Strategy: Codable, Sendable, Equatable {
        package var type: String
    }

    package struct PodTemplate: Codable, Sendable, Equatable {
        package var metadata: ObjectMeta
        package var spec: PodSpec
    }

    package struct Status: Codable, Sendable, Equatable {
        package var replicas: Int?
        package var readyReplicas: Int?
    }
}

/// `v1` `Pod`.
package struct Pod: Codable, Sendable, Equatable {
    package var apiVersion: String? = "v1"
    package var kind: String? = "Pod"
    package var metadata: ObjectMeta
    package var spec: PodSpec
    package var status: Status?

    package init(metadata: ObjectMeta, spec: PodSpec) {
        self.metadata = metadata
        self.spec = spec
    }

    package struct Status: Codable, Sendable, Equatable {
        package var phase: String?
        package var podIP: String?
        package var reason: String?
        package var message: String?
        package var conditions: [Condition]?
        package var containerStatuses: [ContainerStatus]?
    }

    package struct Condition: Codable, Sendable, Equatable {
        package var type: String
        package var status: String
        package var reason: String?
        package var message: String?
    }

    package struct ContainerStatus: Codable, Sendable, Equatable {
        package var name: String?
        package var ready: Bool?
        package var restartCount: Int?
        package var state: ContainerState?
        package var lastState: ContainerState?
    }

    package struct ContainerState: Codable, Sendable, Equatable {
        package var waiting: Reason?
        package var running: Running?
        package var terminated: Terminated?
        package struct Reason: Codable, Sendable, Equatable {
            package var reason: String?
            package var message: String?
        }
        package struct Running: Codable, Sendable, Equatable {
            package var startedAt: String?
        }
        package struct Terminated: Codable, Sendable, Equatable {
            package var exitCode: Int?
            package var reason: String?
            package var message: String?
        }
    }

    /// Whether the API server is deleting it.
    package var isTerminating: Bool { metadata.deletionTimestamp != nil }
    /// Whether it ended for good (a pod with restart policy `Never`, or evicted).
    package var hasEnded: Bool { status?.phase == "Succeeded" || status?.phase == "Failed" }
    /// Whether its containers run and are ready.
    package var isReady: Bool {
        guard status?.phase == "Running" else { return false }
        if let ready = status?.conditions?.first(where: { $0.type == "Ready" }) { return ready.status == "True" }
        return status?.containerStatuses?.allSatisfy { $0.ready == true } ?? true
    }
}

/// `PodSpec`, of a pod or a pod template.
package struct PodSpec: Codable, Sendable, Equatable {
    package var containers: [Container]
    package var restartPolicy: String?
    package var hostNetwork: Bool?
    package var shareProcessNamespace: Bool?
    package var dnsPolicy: String?
    package var nodeSelector: [String: String]?
    package var serviceAccountName: String?
    package var automountServiceAccountToken: Bool?
    package var terminationGracePeriodSeconds: Int?
    package var volumes: [Volume]?
    package var imagePullSecrets: [LocalObjectReference]?

    package struct LocalObjectReference: Codable, Sendable, Equatable {
        package var name: String
    }
}

/// One container of a pod.
package struct Container: Codable, Sendable, Equatable {
    package var name: String
    package var image: String
    package var imagePullPolicy: String?
    package var env: [EnvVar]?
    package var ports: [ContainerPort]?
    package var resources: Resources?
    package var volumeMounts: [VolumeMount]?
    package var readinessProbe: Probe?

    package struct EnvVar: Codable, Sendable, Equatable {
        package var name: String
        package var value: String?
        package var valueFrom: Source?

        package struct Source: Codable, Sendable, Equatable {
            package var fieldRef: FieldReference?
        }

        package struct FieldReference: Codable, Sendable, Equatable {
            package var fieldPath: String
        }
    }

    package struct ContainerPort: Codable, Sendable, Equatable {
        package var name: String?
        package var containerPort: Int
        package var `protocol`: String?
    }

    package struct Resources: Codable, Sendable, Equatable {
        package var requests: [String: String]?
        package var limits: [String: String]?
    }

    package struct VolumeMount: Codable, Sendable, Equatable {
        package var name: String
        package var mountPath: String
        package var readOnly: Bool?
    }

    package struct Probe: Codable, Sendable, Equatable {
        package var tcpSocket: TCPSocket?
        package var periodSeconds: Int?
        package struct TCPSocket: Codable, Sendable, Equatable {
            package var port: Int
        }
    }
}

/// A volume of a pod.
package struct Volume: Codable, Sendable, Equatable {
    package var name: String
    package var secret: SecretSource?
    package var persistentVolumeClaim: ClaimSource?
    package var emptyDir: EmptyDir?

    package struct SecretSource: Codable, Sendable, Equatable {
        package var secretName: String
        package var defaultMode: Int?
        package var items: [KeyToPath]?
    }

    package struct KeyToPath: Codable, Sendable, Equatable {
        package var key: String
        package var path: String
    }

    package struct ClaimSource: Codable, Sendable, Equatable {
        package var claimName: String
    }

    package struct EmptyDir: Codable, Sendable, Equatable {}
}

/// A list's answer.
package struct ObjectList<Item: Codable & Sendable>: Codable, Sendable {
    package var metadata: ListMeta?
    package var items: [Item]

    package struct ListMeta: Codable, Sendable {
        package var resourceVersion: String?
    }
}

/// One event of a watch.
package struct WatchEvent<Item: Codable & Sendable>: Decodable, Sendable {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    package var type: String
    package var object: Item
}

/// The API's answer when something failed (`kind: Status`), also the object of a watch's
/// `ERROR` event.
package struct APIStatus: Codable, Sendable {
    package var code: Int?
    package var reason: String?
    package var message: String?
}
