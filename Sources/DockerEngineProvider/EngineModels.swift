import Foundation

// The parts of the Engine API's JSON that the provider reads and writes.

/// `POST /containers/create` body.
struct ContainerCreate: Encodable {
    struct HostConfig: Encodable {
        struct PortBinding: Encodable {
            var HostIp: String
            var HostPort: String
        }

        var NetworkMode: String
        var NanoCpus: Int64?
        var Memory: Int64?
        var Binds: [String]?
        var Init: Bool?
        var PortBindings: [String: [PortBinding]]?
    }

    struct Empty: Encodable {}

    var Image: String
    var Env: [String]
    var Labels: [String: String]
    var Cmd: [String]?
    var Entrypoint: [String]?
    var WorkingDir: String?
    var ExposedPorts: [String: Empty]?
    var HostConfig: HostConfig
}

/// `POST /containers/create` answer.
struct ContainerCreated: Decodable {
    var Id: String
}

/// One entry of `GET /containers/json`.
struct ContainerSummary: Decodable {
    var Id: String
    var Names: [String]
    var State: String
    var Labels: [String: String]?
    var Created: Int64?
}

/// `GET /containers/{id}/json`.
struct ContainerInspect: Decodable {
    struct State: Decodable {
        var Status: String
        var Running: Bool
        var ExitCode: Int
        var Error: String?
    }

    struct Config: Decodable {
        var Labels: [String: String]?
    }

    struct NetworkSettings: Decodable {
        struct Network: Decodable {
            var IPAddress: String?
        }

        var Networks: [String: Network]?
    }

    var Id: String
    var Name: String
    var State: State
    var Config: Config
    var NetworkSettings: NetworkSettings?

    /// The container's address on a network.
    func address(on network: String) -> String? {
        self.NetworkSettings?.Networks?[network]?.IPAddress.flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// `POST /networks/create` body.
struct NetworkCreate: Encodable {
    var Name: String
    var Labels: [String: String]
    var CheckDuplicate = true
}

/// `GET /images/{name}/json` (only whether it exists matters).
struct ImageInspect: Decodable {
    var Id: String
}

/// `GET /version`.
struct EngineVersion: Decodable {
    var Version: String
    var ApiVersion: String
}
