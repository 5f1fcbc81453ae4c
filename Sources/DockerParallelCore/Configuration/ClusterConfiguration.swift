/// The static settings of one cluster (the original's `CloudConfig`).
///
/// Two clusters are the same cluster when they share the ``jobQueueName``.
public struct ClusterConfiguration: Sendable, Codable, Equatable {
    /// The cluster's identity and the name of its job queue.
    public var jobQueueName: String
    /// The number of workers the user asked for.
    public var expectedWorkerNumber: Int
    /// The hardware of each worker.
    public var workerHardware: Hardware
    /// The hardware of the server.
    public var serverHardware: Hardware
    /// The port the server listens on.
    public var serverPort: Int
    /// The password every connection must present. Generated at random; never printed.
    public var serverPassword: ServerPassword
    /// Whether workers reach the server by its private address.
    public var serverWorkerSameLAN: Bool
    /// Whether the client reaches the server by its private address.
    public var serverClientSameLAN: Bool
    /// How connections off loopback are protected: TLS by default, with a certificate authority
    /// the cluster makes itself when it first starts its server (see ``TransportSecurity``).
    public var transportSecurity: TransportSecurity = .automatic

    /// The job queue name used when none is given.
    public static let defaultJobQueueName = "DockerParallelQueue"
    /// The port used when none is given.
    public static let defaultServerPort = 8888

    /// Creates a configuration with the original DockerParallel's defaults.
    /// - Parameters:
    ///   - jobQueueName: The cluster's identity (default `DockerParallelQueue`).
    ///   - expectedWorkerNumber: Workers to run (default 1).
    ///   - workerHardware: Per worker (default 1024 cpu units, 2048 MB).
    ///   - serverHardware: For the server (default 256 cpu units, 2048 MB).
    ///   - serverPort: The server's port (default 8888).
    ///   - serverPassword: The password (default: 26 random letters).
    ///   - serverWorkerSameLAN: Default `true`.
    ///   - serverClientSameLAN: Default `false`.
    public init(
        jobQueueName: String = ClusterConfiguration.defaultJobQueueName,
        expectedWorkerNumber: Int = 1,
        workerHardware: Hardware = .defaultWorker,
        serverHardware: Hardware = .defaultServer,
        serverPort: Int = ClusterConfiguration.defaultServerPort,
        serverPassword: ServerPassword = .random(),
        serverWorkerSameLAN: Bool = true,
        serverClientSameLAN: Bool = false
    ) {
        self.jobQueueName = jobQueueName
        self.expectedWorkerNumber = expectedWorkerNumber
        self.workerHardware = workerHardware
        self.serverHardware = serverHardware
        self.serverPort = serverPort
        self.serverPassword = serverPassword
        self.serverWorkerSameLAN = serverWorkerSameLAN
        self.serverClientSameLAN = serverClientSameLAN
    }

    private enum CodingKeys: String, CodingKey {
        case jobQueueName, expectedWorkerNumber, workerHardware, serverHardware, serverPort, serverPassword
        case serverWorkerSameLAN, serverClientSameLAN, transportSecurity
    }

    /// Decodes a configuration; one stored before ``transportSecurity`` existed gets the default.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        jobQueueName = try container.decode(String.self, forKey: .jobQueueName)
        expectedWorkerNumber = try container.decode(Int.self, forKey: .expectedWorkerNumber)
        workerHardware = try container.decode(Hardware.self, forKey: .workerHardware)
        serverHardware = try container.decode(Hardware.self, forKey: .serverHardware)
        serverPort = try container.decode(Int.self, forKey: .serverPort)
        serverPassword = try container.decode(ServerPassword.self, forKey: .serverPassword)
        serverWorkerSameLAN = try container.decode(Bool.self, forKey: .serverWorkerSameLAN)
        serverClientSameLAN = try container.decode(Bool.self, forKey: .serverClientSameLAN)
        transportSecurity = try container.decodeIfPresent(TransportSecurity.self, forKey: .transportSecurity) ?? .automatic
    }

    /// Checks that a job queue name can name a cluster: letters, digits, `-`, `_` and `.`, at most 64.
    /// - Throws: ``DockerParallelError`` with code `.invalidArgument` naming the problem.
    public static func validate(jobQueueName name: String) throws {
        let allowed = name.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                || $0 == "-" || $0 == "_" || $0 == "."
        }
        guard !name.isEmpty, name.count <= 64, allowed, !name.hasPrefix(".") else {
            throw DockerParallelError(
                .invalidArgument,
                "'\(name)' is not a valid cluster name: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
            )
        }
    }
}
