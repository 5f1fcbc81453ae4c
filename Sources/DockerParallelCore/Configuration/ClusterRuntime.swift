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

/// A host and port.
public struct Endpoint: Sendable, Codable, Hashable, CustomStringConvertible {
    /// A host name or address.
    public var host: String
    /// The port.
    public var port: Int

    /// Creates an endpoint.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
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

/// Worker numbers as the original reports them.
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

    public var description: String { "\(expected) / \(running) / \(initializing)  (expected/running/initializing)" }
}
