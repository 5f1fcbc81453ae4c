#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import DockerParallelCore
import DockerParallelServer
import DockerParallelWorker
import Foundation
import Logging
import ServiceLifecycle

/// The server and worker entry points of an executable.
///
/// Providers start executables with `DOCKERPARALLEL_ROLE` set to `server` or `worker`; call
/// ``runIfRequested(registry:environment:)`` first thing in `main` so that the same program that
/// maps work can also serve it:
///
/// ```swift
/// @main struct App {
///     static func main() async throws {
///         await DockerParallelMain.runIfRequested(registry: TaskRegistry([Square.self]))
///         // … the program proper: make a DockerCluster and map over it.
///     }
/// }
/// ```
public enum DockerParallelMain {
    /// Runs the server or a worker when the environment asks for one, then exits the process;
    /// returns at once otherwise.
    public static func runIfRequested(
        registry: TaskRegistry, environment: [String: String] = ProcessInfo.processInfo.environment
    ) async {
        guard let role = environment[EnvironmentKey.role] else { return }
        if environment["DOCKERPARALLEL_CONTAINER"] == "1" { ContainerStartup.run(role: role, environment: environment) }
        let status: Int32
        do {
            switch role {
            case "server": try await runServer(environment: environment)
            case "worker": try await runWorker(registry: registry, environment: environment)
            default:
                throw DockerParallelError(.invalidArgument, "\(EnvironmentKey.role) must be 'server' or 'worker', not '\(role)'")
            }
            status = 0
        } catch {
            FileHandle.standardError.write(Data("dockerparallel \(role): error: \(error)\n".utf8))
            status = 1
        }
        ContainerStartup.finish()
        exit(status)
    }

    /// Runs the server described by the environment until SIGTERM or SIGINT.
    public static func runServer(environment: [String: String]) async throws {
        let logger = makeLogger(label: "dockerparallel.server", environment: environment)
        guard let password = try secret(EnvironmentKey.password, file: EnvironmentKey.passwordFile, in: environment) else {
            throw DockerParallelError(
                .invalidArgument,
                "the server needs the cluster password in \(EnvironmentKey.password), or in a file that \(EnvironmentKey.passwordFile) names")
        }
        let port = try integer(EnvironmentKey.port, in: environment) ?? ClusterConfiguration.defaultServerPort
        var configuration = ServerConfiguration(
            host: environment[EnvironmentKey.host] ?? "127.0.0.1",
            port: port,
            password: ServerPassword(password),
            jobQueueName: environment[EnvironmentKey.jobQueueName] ?? ClusterConfiguration.defaultJobQueueName,
            leaseDuration: .seconds(try double(EnvironmentKey.leaseDuration, in: environment) ?? 30),
            storePath: environment[EnvironmentKey.storePath].flatMap { $0.isEmpty ? nil : $0 },
            unixSocketPath: environment[EnvironmentKey.unixSocketPath].flatMap { $0.isEmpty ? nil : $0 })
        configuration.writesSmallBatchesOnEventLoop = environment[EnvironmentKey.storeWritesOnEventLoop] != "0"
        configuration.preferredPort = try integer(EnvironmentKey.preferredPort, in: environment)
        configuration.tlsCertificateChain = text(EnvironmentKey.tlsCertificate, in: environment)
        configuration.tlsPrivateKey = try secret(EnvironmentKey.tlsPrivateKey, file: EnvironmentKey.tlsPrivateKeyFile, in: environment)
            .map(ServerPassword.init)
        configuration.tlsCertificateAuthority = text(EnvironmentKey.tlsCertificateAuthority, in: environment)
        configuration.tlsNames = (text(EnvironmentKey.tlsNames, in: environment) ?? "")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        configuration.tlsCertificateAuthorityKey = try secret(
            EnvironmentKey.tlsCertificateAuthorityKey, file: EnvironmentKey.tlsCertificateAuthorityKeyFile, in: environment
        ).map(ServerPassword.init)
        configuration.allowsPlainTextOffLoopback = environment[EnvironmentKey.insecurePlainText] == "1"
        try await runServer(
            configuration: configuration, endpointFile: environment[EnvironmentKey.endpointFile],
            ownerProcessID: try integer(EnvironmentKey.ownerProcessID, in: environment).map { pid_t($0) }, logger: logger)
    }

    /// Runs a server until SIGTERM or SIGINT, or until `ownerProcessID` is gone.
    /// - Parameters:
    ///   - endpointFile: Where to write the bound endpoint, for the provider and the workers.
    package static func runServer(
        configuration: ServerConfiguration, endpointFile: String?, ownerProcessID: pid_t?, logger: Logger
    ) async throws {
        let server = BrokerServer(configuration: configuration, logger: logger) { endpoint in
            logger.info("listening on \(endpoint)")
            if let endpointFile { writeAtomically(endpoint.fileLine, to: endpointFile) }
        }
        try await runGroup(server, ownerProcessID: ownerProcessID, logger: logger)
    }

    /// Runs a worker described by the environment until SIGTERM, SIGINT or a lost server.
    public static func runWorker(registry: TaskRegistry, environment: [String: String]) async throws {
        let logger = makeLogger(label: "dockerparallel.worker", environment: environment)
        guard let password = try secret(EnvironmentKey.password, file: EnvironmentKey.passwordFile, in: environment) else {
            throw DockerParallelError(
                .invalidArgument,
                "the worker needs the cluster password in \(EnvironmentKey.password), or in a file that \(EnvironmentKey.passwordFile) names")
        }
        guard let host = environment[EnvironmentKey.host], let port = try integer(EnvironmentKey.port, in: environment) else {
            throw DockerParallelError(
                .invalidArgument, "the worker needs the server's address in \(EnvironmentKey.host) and \(EnvironmentKey.port)")
        }
        // On ECS a worker is named after its task, which the provider can then tell busy or idle.
        let name = environment[EnvironmentKey.workerName] ?? ECSTaskMetadata.taskID(environment: environment)
            ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        var configuration = WorkerConfiguration(
            server: Endpoint(host: host, port: port, usesTLS: environment[EnvironmentKey.tls] == "1"),
            password: ServerPassword(password), name: name,
            slots: try integer(EnvironmentKey.slots, in: environment) ?? 1, registry: registry)
        configuration.certificateAuthority = text(EnvironmentKey.tlsCertificateAuthority, in: environment)
        if let endpointFile = environment[EnvironmentKey.endpointFile] {
            configuration.serverLocator = { readEndpoint(endpointFile) }
        }
        try await runWorker(
            configuration: configuration, readyFile: environment[EnvironmentKey.readyFile],
            ownerProcessID: try integer(EnvironmentKey.ownerProcessID, in: environment).map { pid_t($0) }, logger: logger)
    }

    /// Runs a worker until SIGTERM, SIGINT or a lost server, or until `ownerProcessID` is gone.
    /// - Parameters:
    ///   - readyFile: A file to create once the worker is connected.
    package static func runWorker(
        configuration: WorkerConfiguration, readyFile: String?, ownerProcessID: pid_t?, logger: Logger
    ) async throws {
        let slots = configuration.slots
        let worker = Worker(configuration: configuration, logger: logger) {
            logger.info("connected with \(slots) slot(s)")
            if let readyFile { writeAtomically(String(getpid()), to: readyFile) }
        }
        try await runGroup(worker, ownerProcessID: ownerProcessID, logger: logger)
    }

    private static func runGroup(_ service: some Service, ownerProcessID: pid_t?, logger: Logger) async throws {
        var services = [ServiceGroupConfiguration.ServiceConfiguration(
            service: service, successTerminationBehavior: .gracefullyShutdownGroup,
            failureTerminationBehavior: .gracefullyShutdownGroup)]
        if let ownerProcessID {
            services.append(.init(service: OwnerWatch(processID: ownerProcessID), successTerminationBehavior: .gracefullyShutdownGroup))
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// The logger of a server or worker process: standard error, at the level that
    /// `DOCKERPARALLEL_LOG_LEVEL` names (default `info`), as text or, with
    /// `DOCKERPARALLEL_LOG_FORMAT=json`, as one JSON object a line.
    package static func makeLogger(label: String, environment: [String: String]) -> Logger {
        var logger = environment["DOCKERPARALLEL_LOG_FORMAT"] == "json"
            ? Logger(label: label) { JSONLogHandler(label: $0) }
            : Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = environment["DOCKERPARALLEL_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        return logger
    }

    /// A variable's text; `nil` when it is unset or empty.
    private static func text(_ key: String, in environment: [String: String]) -> String? {
        environment[key].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A secret's text: the variable `key`, else the contents of the file that the variable
    /// `file` names (a swarm secret is a file under `/run/secrets`), without a final line break;
    /// `nil` when neither is set or the text is empty.
    /// - Throws: `.invalidArgument` naming the variable when its file cannot be read.
    package static func secret(_ key: String, file: String, in environment: [String: String]) throws -> String? {
        if let value = text(key, in: environment) { return value }
        guard let path = text(file, in: environment) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DockerParallelError(
                .invalidArgument, "cannot read the file \(path) that \(file) names: check that the secret is mounted there")
        }
        // Final line breaks go, `\r\n` too (one Character in Swift).
        var value = String(decoding: data, as: UTF8.self)
        while let last = value.last, last.isNewline { value.removeLast() }
        return value.isEmpty ? nil : value
    }

    private static func integer(_ key: String, in environment: [String: String]) throws -> Int? {
        guard let text = environment[key] else { return nil }
        guard let value = Int(text) else {
            throw DockerParallelError(.invalidArgument, "\(key) must be a whole number, not '\(text)'")
        }
        return value
    }

    private static func double(_ key: String, in environment: [String: String]) throws -> Double? {
        guard let text = environment[key] else { return nil }
        guard let value = Double(text), value > 0, Duration(checkedSeconds: value) != nil else {
            throw DockerParallelError(.invalidArgument, "\(key) must be a positive number, not '\(text)'")
        }
        return value
    }

    /// Reads the endpoint a server wrote to its endpoint file.
    private static func readEndpoint(_ path: String) -> Endpoint? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return Endpoint(fileLine: String(decoding: data, as: UTF8.self))
    }

    private static func writeAtomically(_ text: String, to path: String) {
        let temporary = path + ".tmp"
        _ = FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        rename(temporary, path)
    }
}

/// Ends when a given process is gone, so that a cluster started with `stopClusterOnExit` goes
/// away with the program that started it, even if that program was killed.
struct OwnerWatch: Service {
    let processID: pid_t

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            while kill(processID, 0) == 0 || errno == EPERM {
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }
}
