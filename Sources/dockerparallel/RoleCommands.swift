import ArgumentParser
import DockerParallel
import DockerParallelCore
import DockerParallelServer
import DockerParallelWorker
import Foundation

struct Server: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a DockerParallel server in the foreground, configured by these options.",
        discussion: "The password is read from $DOCKERPARALLEL_PASSWORD (or the file $DOCKERPARALLEL_PASSWORD_FILE names), never from the command line. (Providers start this executable with DOCKERPARALLEL_ROLE and the rest of its settings in the environment instead.)")

    @Option(help: "The address to bind.")
    var host: String = "127.0.0.1"

    @Option(help: "The port (0 picks a free one).")
    var port: Int = ClusterConfiguration.defaultServerPort

    @Option(help: "The cluster's job queue name.")
    var name: String = ClusterConfiguration.defaultJobQueueName

    @Option(help: "Seconds a lease lasts without a heartbeat.")
    var leaseSeconds: Double = 30

    @Option(help: "The SQLite file that keeps tasks and results across restarts (default: memory only).")
    var store: String?

    @Option(help: "A TLS certificate chain (PEM file) to serve off loopback (or $DOCKERPARALLEL_TLS_CERTIFICATE).")
    var tlsCertificate: String?

    @Option(help: "The private key (PEM file) of --tls-certificate (or $DOCKERPARALLEL_TLS_KEY).")
    var tlsKey: String?

    @Flag(help: "Serve plain text off loopback: anyone on the network path can read the password and the tasks.")
    var insecurePlaintext = false

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let password = try DockerParallelMain.secret(EnvironmentKey.password, file: EnvironmentKey.passwordFile, in: environment) else {
            throw CLIError("set the cluster password in \(EnvironmentKey.password), or name a file holding it in \(EnvironmentKey.passwordFile)")
        }
        guard leaseSeconds > 0, let lease = Duration(checkedSeconds: leaseSeconds) else {
            throw CLIError("--lease-seconds must be a positive number of seconds, not \(leaseSeconds)")
        }
        var configuration = ServerConfiguration(
            host: host, port: port, password: ServerPassword(password), jobQueueName: name,
            leaseDuration: lease, storePath: store)
        func pem(_ path: String?, _ key: String) throws -> String? {
            guard let path else { return environment[key].flatMap { $0.isEmpty ? nil : $0 } }
            guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
            return String(decoding: data, as: UTF8.self)
        }
        configuration.tlsCertificateChain = try pem(tlsCertificate, EnvironmentKey.tlsCertificate)
        configuration.tlsPrivateKey = try pem(tlsKey, EnvironmentKey.tlsPrivateKey).map(ServerPassword.init)
        configuration.allowsPlainTextOffLoopback = insecurePlaintext || environment[EnvironmentKey.insecurePlainText] == "1"
        try await DockerParallelMain.runServer(
            configuration: configuration, endpointFile: nil, ownerProcessID: nil,
            logger: DockerParallelMain.makeLogger(label: "dockerparallel.server", environment: environment))
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a DockerParallel worker in the foreground that dials out to a server.",
        discussion: "The password is read from $DOCKERPARALLEL_PASSWORD (or the file $DOCKERPARALLEL_PASSWORD_FILE names), never from the command line. (Providers start this executable with DOCKERPARALLEL_ROLE and the rest of its settings in the environment instead.)")

    @Option(help: "The server's host.")
    var host: String = "127.0.0.1"

    @Option(help: "The server's port.")
    var port: Int = ClusterConfiguration.defaultServerPort

    @Option(help: "Tasks run at once.")
    var slots: Int = 1

    @Option(help: "The worker's name, shown in status (default: host name and process id).")
    var name: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let password = try DockerParallelMain.secret(EnvironmentKey.password, file: EnvironmentKey.passwordFile, in: environment) else {
            throw CLIError("set the cluster password in \(EnvironmentKey.password), or name a file holding it in \(EnvironmentKey.passwordFile)")
        }
        let configuration = WorkerConfiguration(
            server: Endpoint(host: host, port: port), password: ServerPassword(password),
            name: name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())", slots: slots, registry: BuiltinTasks.registry)
        try await DockerParallelMain.runWorker(
            configuration: configuration, readyFile: nil, ownerProcessID: nil,
            logger: DockerParallelMain.makeLogger(label: "dockerparallel.worker", environment: environment))
    }
}
