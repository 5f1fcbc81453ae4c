import ArgumentParser
import DockerParallel
import Foundation

struct Server: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a DockerParallel server (what server processes and containers execute).",
        discussion: "The password is read from $DOCKERPARALLEL_PASSWORD, never from the command line.")

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

    func run() async throws {
        var environment = ProcessInfo.processInfo.environment
        if let store { environment[EnvironmentKey.storePath] = store }
        environment[EnvironmentKey.host] = host
        environment[EnvironmentKey.port] = String(port)
        environment[EnvironmentKey.jobQueueName] = name
        environment[EnvironmentKey.leaseDuration] = String(leaseSeconds)
        guard environment[EnvironmentKey.password]?.isEmpty == false else {
            throw CLIError("set the cluster password in \(EnvironmentKey.password)")
        }
        try await DockerParallelMain.runServer(environment: environment)
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a DockerParallel worker that dials out to a server.",
        discussion: "The password is read from $DOCKERPARALLEL_PASSWORD, never from the command line.")

    @Option(help: "The server's host.")
    var host: String = "127.0.0.1"

    @Option(help: "The server's port.")
    var port: Int = ClusterConfiguration.defaultServerPort

    @Option(help: "Tasks run at once.")
    var slots: Int = 1

    func run() async throws {
        var environment = ProcessInfo.processInfo.environment
        environment[EnvironmentKey.host] = host
        environment[EnvironmentKey.port] = String(port)
        environment[EnvironmentKey.slots] = String(slots)
        guard environment[EnvironmentKey.password]?.isEmpty == false else {
            throw CLIError("set the cluster password in \(EnvironmentKey.password)")
        }
        try await DockerParallelMain.runWorker(registry: BuiltinTasks.registry, environment: environment)
    }
}
