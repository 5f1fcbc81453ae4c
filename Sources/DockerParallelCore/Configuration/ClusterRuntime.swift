import Foundation

/// Where the server can be reached, and how many workers the provider last reported.
public struct ClusterRuntime: Sendable, Codable, Equatable {
    /// Whether the server is run by someone else (not started or stopped by the provider).
    public var serverFromOtherSource: Bool
    /// The server's endpoints, once known.
    public var serverEndpoints: ServerEndpoints?
    /// Workers the provider reported as starting.
    public var initializingWorkerNumber: Int
    /// Workers the provider reported as running.
    public var runningWorkerNumber: Int

    /// Creates an empty runtime.
    public init(serverFromOtherSource: Bool = false, serverEndpoints: ServerEndpoints? = nil) {
        self.serverFromOtherSource = serverFromOtherSource
        self.serverEndpoints = serverEndpoints
        self.initializingWorkerNumber = 0
        self.runningWorkerNumber = 0
    }
}

/// A host and port, and optionally a unix domain socket on the same machine.
public struct Endpoint: Sendable, Codable, Hashable, CustomStringConvertible {
    /// A host name or address.
    public var host: String
    /// The port.
    public var port: Int
    /// A unix domain socket of the same server: peers on its machine connect through it when it
    /// is there (a message costs the kernel less than over TCP), and through host and port otherwise.
    public var unixSocketPath: String?
    /// Whether host and port speak TLS (a server off loopback); the unix socket never does.
    public var usesTLS: Bool

    /// Creates an endpoint.
    public init(host: String, port: Int, unixSocketPath: String? = nil, usesTLS: Bool = false) {
        self.host = host
        self.port = port
        self.unixSocketPath = unixSocketPath
        self.usesTLS = usesTLS
    }

    private enum CodingKeys: String, CodingKey {
        case host, port, unixSocketPath, usesTLS
    }

    /// Decodes an endpoint; one stored before TLS existed is plain.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        host = try container.decode(String.self, forKey: .host)
        port = try container.decode(Int.self, forKey: .port)
        unixSocketPath = try container.decodeIfPresent(String.self, forKey: .unixSocketPath)
        usesTLS = try container.decodeIfPresent(Bool.self, forKey: .usesTLS) ?? false
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The line a server writes to its endpoint file: `host port`, then the socket's path if any;
    /// `tls ` first when host and port speak TLS.
    public var fileLine: String {
        (usesTLS ? "tls " : "") + ["\(host) \(port)", unixSocketPath].compactMap { $0 }.joined(separator: " ")
    }

    /// Reads a line that ``fileLine`` wrote; `nil` when it is not one.
    public init?(fileLine: String) {
        var line = Substring(fileLine.trimmingCharacters(in: .whitespacesAndNewlines))
        let usesTLS = line.hasPrefix("tls ")
        if usesTLS { line = line.dropFirst(4) }
        let parts = line.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let port = Int(parts[1]) else { return nil }
        self.init(host: String(parts[0]), port: port, unixSocketPath: parts.count == 3 ? String(parts[2]) : nil, usesTLS: usesTLS)
    }
}

/// The server's public and private endpoints; either may be unknown.
public struct ServerEndpoints: Sendable, Codable, Hashable {
    /// Where clients outside the server's network reach it.
    public var publicEndpoint: Endpoint?
    /// Where peers on the server's network reach it.
    public var privateEndpoint: Endpoint?

    /// Creates endpoints.
    public init(publicEndpoint: Endpoint?, privateEndpoint: Endpoint?) {
        self.publicEndpoint = publicEndpoint
        self.privateEndpoint = privateEndpoint
    }

    /// The endpoint to use, preferring the private one when `sameLAN` is true.
    public func endpoint(sameLAN: Bool) -> Endpoint? {
        sameLAN ? (privateEndpoint ?? publicEndpoint) : (publicEndpoint ?? privateEndpoint)
    }
}

/// What a provider reports of a server.
public enum ServerStatus: String, Sendable, Codable {
    case initializing
    case running
    case stopped
}

/// Worker numbers as the original reports them, counted in worker slots.
///
/// Providers report the initializing and running numbers, with `expected` taken from the
/// cluster's configuration; `DockerCluster` reports all three.
public struct WorkerNumbers: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Workers the user asked for.
    public var expected: Int
    /// Workers started but not yet serving.
    public var initializing: Int
    /// Workers serving.
    public var running: Int

    /// Creates worker numbers.
    public init(expected: Int, initializing: Int, running: Int) {
        self.expected = expected
        self.initializing = initializing
        self.running = running
    }

    /// Workers starting or serving.
    public var total: Int { initializing + running }

    public var description: String { "\(expected) / \(running) / \(initializing)  (expected/running/initializing)" }
}
