import Foundation

// The parts of the Engine API's swarm JSON (v1.41) that the provider reads and writes.

/// A service's spec: the body of `POST /services/create` and `POST /services/{id}/update`.
struct ServiceSpec: Codable, Equatable, Sendable {
    var Name: String
    var Labels: [String: String]
    var TaskTemplate: TaskSpec
    var Mode: ServiceMode
    var EndpointSpec: EndpointSpec?
}

/// `TaskTemplate`: what each task (container) of a service is.
struct TaskSpec: Codable, Equatable, Sendable {
    struct ContainerSpec: Codable, Equatable, Sendable {
        var Image: String
        var Labels: [String: String]?
        var Env: [String]?
        var Init: Bool?
        var Mounts: [Mount]?
        var Secrets: [SecretReference]?
        /// Nanoseconds.
        var StopGracePeriod: Int64?
    }

    struct Mount: Codable, Equatable, Sendable {
        var `Type`: String
        var Source: String
        var Target: String
    }

    struct SecretReference: Codable, Equatable, Sendable {
        struct File: Codable, Equatable, Sendable {
            var Name: String
            var UID: String
            var GID: String
            var Mode: UInt32
        }

        var File: File
        var SecretID: String
        var SecretName: String
    }

    struct ResourceValues: Codable, Equatable, Sendable {
        var NanoCPUs: Int64?
        var MemoryBytes: Int64?
    }

    struct Resources: Codable, Equatable, Sendable {
        var Limits: ResourceValues?
        var Reservations: ResourceValues?
    }

    struct RestartPolicy: Codable, Equatable, Sendable {
        var Condition: String
        /// Nanoseconds.
        var Delay: Int64?
    }

    struct Placement: Codable, Equatable, Sendable {
        var Constraints: [String]?
    }

    struct NetworkAttachment: Codable, Equatable, Sendable {
        var Target: String
    }

    var ContainerSpec: ContainerSpec
    var Resources: Resources?
    var RestartPolicy: RestartPolicy?
    var Placement: Placement?
    var Networks: [NetworkAttachment]?
}

/// `Mode`: replicated with a number of replicas.
struct ServiceMode: Codable, Equatable, Sendable {
    struct Replicated: Codable, Equatable, Sendable {
        var Replicas: Int
    }

    var Replicated: Replicated?
}

/// `EndpointSpec`: how a service is reached (`dnsrr`, or `vip`) and its published ports.
struct EndpointSpec: Codable, Equatable, Sendable {
    struct PortConfig: Codable, Equatable, Sendable {
        var `Protocol`: String
        var TargetPort: Int
        var PublishedPort: Int
        var PublishMode: String
    }

    var Mode: String?
    var Ports: [PortConfig]?
}

/// One entry of `GET /services`, or `GET /services/{id}`.
struct Service: Decodable, Sendable {
    struct Version: Decodable, Sendable {
        var Index: UInt64
    }

    var ID: String
    var Version: Version
    var Spec: ServiceSpec
    var UpdatedAt: String?

    var labels: [String: String] { Spec.Labels }
    var replicas: Int { Spec.Mode.Replicated?.Replicas ?? 0 }
}

/// `POST /services/create` answer.
struct ServiceCreated: Decodable {
    var ID: String
}

/// One entry of `GET /tasks`.
struct SwarmTask: Decodable, Sendable {
    struct TaskStatus: Decodable, Sendable {
        struct ContainerStatus: Decodable, Sendable {
            var ContainerID: String?
            var ExitCode: Int?
        }

        var Timestamp: String?
        var State: String
        var Message: String?
        var Err: String?
        var ContainerStatus: ContainerStatus?
    }

    var ID: String
    var ServiceID: String
    var NodeID: String?
    var Slot: Int?
    var CreatedAt: String?
    var Status: TaskStatus
    var DesiredState: String

    /// States before `running`: the task is on its way.
    static let startingStates: Set<String> = ["new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"]

    var isRunning: Bool { DesiredState == "running" && self.Status.State == "running" }
    var isStarting: Bool { DesiredState == "running" && Self.startingStates.contains(self.Status.State) }
}

/// `POST /secrets/create` body.
struct SecretCreate: Encodable {
    var Name: String
    var Labels: [String: String]
    /// Base64.
    var Data: String
}

/// `POST /secrets/create` answer, or an entry of `GET /secrets`.
struct SecretSummary: Decodable {
    struct Spec: Decodable {
        var Name: String
        var Labels: [String: String]?
    }

    var ID: String
    var Spec: Spec
}

/// `GET /info`, the part about the swarm.
struct EngineInfo: Decodable {
    struct Swarm: Decodable {
        var NodeID: String?
        var LocalNodeState: String?
        var ControlAvailable: Bool?
    }

    var Swarm: Swarm?
}

/// `POST /networks/create` body.
struct OverlayNetworkCreate: Encodable {
    var Name: String
    var Driver = "overlay"
    var Attachable = true
    var CheckDuplicate = true
    var Labels: [String: String]
}

/// An entry of `GET /networks` or `GET /networks/{id}`.
struct NetworkSummary: Decodable {
    var Id: String
    var Name: String
    var Labels: [String: String]?
}

/// An entry of `GET /containers/json`.
struct LocalContainer: Decodable {
    var Id: String
    var State: String
    var Labels: [String: String]?
}

/// `POST /containers/{id}/exec` body.
struct ExecCreate: Encodable {
    var AttachStdout = true
    var AttachStderr = false
    var Cmd: [String]
}

/// `POST /containers/{id}/exec` answer.
struct ExecCreated: Decodable {
    var Id: String
}

/// `POST /exec/{id}/start` body.
struct ExecStart: Encodable {
    var Detach = false
    var Tty = false
}
