import ArgumentParser
import Logging
import DockerEngineProvider
import DockerParallel
import Foundation
import KubernetesProvider
import ECSProvider
import SwarmProvider

@main
struct DockerParallelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dockerparallel",
        abstract: "Run parallel work on a cluster of workers launched on demand.",
        discussion: """
            Run a command per input on an ephemeral local cluster:
              dockerparallel run -j 4 'echo $(( {} * {} ))' ::: 1 2 3
            Manage a named cluster that outlives this process:
              dockerparallel up --name demo --workers 2
              dockerparallel run --cluster demo -- gzip -k {} ::: *.csv
              dockerparallel status --name demo
              dockerparallel scale 4 --name demo
              dockerparallel submit --name demo -- ./simulate {} ::: $(seq 1 1000)   # prints a job id
              dockerparallel results --name demo --job JOB_ID
              dockerparallel down --name demo
            """,
        subcommands: [Run.self, Up.self, Status.self, Scale.self, Down.self, List.self, Submit.self, Results.self, Logs.self, Retry.self, Dashboard.self, API.self, Supervise.self, Image.self, KubernetesCommand.self, Server.self, WorkerCommand.self]
    )

    static func main() async {
        // Providers start this executable with DOCKERPARALLEL_ROLE set; it then serves that role.
        await DockerParallelMain.runIfRequested(registry: BuiltinTasks.registry)
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Options shared by the commands that name a cluster.
struct ClusterOptions: ParsableArguments {
    @Option(name: [.short, .long, .customLong("cluster")], help: "The cluster's name (its job queue name).")
    var name: String = ClusterConfiguration.defaultJobQueueName

    @Option(help: ArgumentHelp("Where cluster state lives.", discussion: "Default: $DOCKERPARALLEL_HOME/clusters, or ~/.dockerparallel/clusters."))
    var stateDir: String?

    @Flag(name: .shortAndLong, help: "Show more detail.")
    var verbose = false

    @OptionGroup var platform: ProviderOptions

    var provider: any CloudProvider {
        get throws { try platform.provider(stateDirectory: CLIEnvironment.stateDirectory(stateDir)) }
    }

    func cluster(verbosity: Int = 1, configuration: ClusterConfiguration? = nil, stopClusterOnExit: Bool = false) throws -> DockerCluster {
        try ClusterConfiguration.validate(jobQueueName: name)
        var configuration = configuration ?? ClusterConfiguration()
        configuration.jobQueueName = name
        return try DockerCluster(
            provider: provider, workerContainer: platform.workerContainer(slots: 1), configuration: configuration,
            verbosity: verbose ? 2 : verbosity, stopClusterOnExit: stopClusterOnExit,
            logger: CLIEnvironment.messageLogger)
    }

    /// A handle on the running cluster, or a clear error when it does not run.
    func reconnected() async throws -> DockerCluster {
        let cluster = try cluster(verbosity: verbose ? 2 : 0)
        do {
            try await cluster.reconnect()
        } catch let error as DockerParallelError where error.code == .clusterNotFound {
            if (try? await cluster.storedConfiguration()) != nil {
                throw CLIError("the server of the cluster '\(name)' has stopped; its tasks and results are kept. `dockerparallel up --name \(name)` restarts it with its password and port, and its workers reconnect.")
            }
            throw CLIError("no cluster named '\(name)' is running. Start it with `dockerparallel up --name \(name)` (a cluster whose server died resumes its stored jobs), or list clusters with `dockerparallel list`.")
        }
        return cluster
    }
}

/// Where clusters run: this machine's processes, or containers on a Docker engine.
struct ProviderOptions: ParsableArguments {
    enum Kind: String, ExpressibleByArgument, CaseIterable {
        case local
        case docker
        case swarm
        case kubernetes
        case ecs
    }

    @Option(help: ArgumentHelp(
        "Where the server and workers run: local (processes on this machine), docker (containers), swarm (Docker Swarm services), kubernetes (a Deployment and pods) or ecs (AWS ECS Fargate tasks).",
        discussion: "Default: $DOCKERPARALLEL_PROVIDER, or local."))
    var provider: Kind?

    @Option(help: ArgumentHelp("The Docker daemon (docker provider; a swarm manager's, swarm provider).", discussion: "Default: $DOCKER_HOST, or unix:///var/run/docker.sock."))
    var dockerHost: String?

    @Option(help: "The server and worker image (docker, swarm, kubernetes and ecs providers), as built by `dockerparallel image build`.")
    var image: String = "dockerparallel:latest"

    @Option(name: .customLong("system-package"), help: ArgumentHelp(
        "A Debian package each worker container installs with apt-get at start-up (repeatable; the image needs apt-get).",
        valueName: "name"))
    var systemPackages: [String] = []

    @Option(name: .customLong("r-package"), help: ArgumentHelp(
        "An R package each worker container installs at start-up, as the original's RPackages (repeatable): Debian's r-cran-/r-bioc- package when apt has it, else from CRAN.",
        valueName: "name"))
    var rPackages: [String] = []

    @Option(help: ArgumentHelp(
        "The containers' network mode (docker provider), the services' network (swarm provider), or the pods' (kubernetes provider).",
        discussion: "Default host, for kubernetes pod. For swarm: host, or an overlay network's name (created when missing; its services are reached by DNS round robin). For kubernetes: pod (workers dial the server's Service) or host (pods use their node's network)."))
    var network: String?

    @Option(name: .customLong("constraint"), help: ArgumentHelp(
        "A placement constraint of every swarm service, as `docker service create --constraint` takes it (swarm provider; repeatable).",
        valueName: "expression"))
    var constraints: [String] = []

    @Option(name: .customLong("server-constraint"), help: ArgumentHelp(
        "A placement constraint of the server's swarm service only (swarm provider; repeatable).", valueName: "expression"))
    var serverConstraints: [String] = []

    @Flag(help: "Reserve the hardware on swarm or Kubernetes nodes, not only limit it (swarm and kubernetes providers).")
    var reserveHardware = false

    @Option(help: ArgumentHelp(
        "The address the server listens on and is reached at (for kubernetes and ecs: at which clients outside the cluster reach it).",
        discussion: "Default 127.0.0.1 (for kubernetes: a LoadBalancer Service's address, or the Service's name inside the cluster). Off loopback the server speaks TLS, with the cluster's own certificate authority unless `up` is given a certificate."))
    var listen: String?

    @Option(help: ArgumentHelp("The kubeconfig file (kubernetes provider).", discussion: "Default: $KUBECONFIG, ~/.kube/config, or the pod's service account."))
    var kubeconfig: String?

    @Option(help: "The kubeconfig context (kubernetes provider; default its current context).")
    var kubeContext: String?

    @Option(help: "The namespace (kubernetes provider; default the context's, else default).")
    var namespace: String?

    @Option(help: "The server Service's type: ClusterIP, NodePort or LoadBalancer (kubernetes provider).")
    var serviceType: String = "ClusterIP"

    @Option(help: "The storage class of the server's store (kubernetes provider; default the cluster's default).")
    var storageClass: String?

    @Option(name: .customLong("node-selector"), help: ArgumentHelp(
        "A node label every pod must carry, as key=value (kubernetes provider; repeatable).", valueName: "key=value"))
    var nodeSelectors: [String] = []

    @Option(help: "The image pull policy: IfNotPresent, Always or Never (kubernetes provider).")
    var imagePullPolicy: String = "IfNotPresent"

    @Option(help: ArgumentHelp("The AWS region (ecs provider).", discussion: "Default: $AWS_REGION, $AWS_DEFAULT_REGION, or the profile's region."))
    var region: String?

    @Option(help: "The profile of ~/.aws/credentials and ~/.aws/config (ecs provider; default $AWS_PROFILE, else default).")
    var awsProfile: String?

    @Option(help: "An existing ECS cluster to run the tasks in (ecs provider; default one made for the cluster, dockerparallel-<name>).")
    var ecsCluster: String?

    @Option(name: .customLong("subnet"), help: ArgumentHelp(
        "A subnet of the tasks (ecs provider; repeatable; default the default VPC's default subnets).", valueName: "subnet-id"))
    var subnets: [String] = []

    @Option(name: .customLong("security-group"), help: ArgumentHelp(
        "Another security group for every task, besides the one made for the cluster (ecs provider; repeatable).", valueName: "sg-id"))
    var securityGroups: [String] = []

    @Option(help: ArgumentHelp(
        "The share of workers on Fargate Spot, from 0 to 1 (ecs provider; default 0).",
        discussion: "Spot tasks cost up to 70% less and may be stopped with two minutes' notice: their workers hand their tasks back, and `supervise` or `scale` starts replacements."))
    var spot: Double = 0

    @Option(help: "The task execution role's name or ARN (ecs provider; default one made for the cluster).")
    var executionRole: String?

    @Option(help: "The IAM role the containers act as (ecs provider; default none).")
    var taskRole: String?

    @Flag(help: "The client runs in the tasks' VPC and dials the server's private address (ecs provider; the original's serverClientSameLAN).")
    var sameLan = false

    @Flag(help: "Give the tasks no public IP: their subnets need a NAT gateway or VPC endpoints to pull images (ecs provider).")
    var noPublicIp = false

    @Option(help: "The addresses allowed to reach the server's port from outside the VPC, as a CIDR block (ecs provider; default 0.0.0.0/0, guarded by the password and TLS).")
    var clientCidr: String = "0.0.0.0/0"

    @Option(help: ArgumentHelp(
        "CPU units per worker container, 1024 a core (docker, swarm, kubernetes and ecs providers; default 1024).",
        discussion: "On ECS, with --memory, rounded up to the smallest Fargate size that holds it."))
    var cpu: Int?

    @Option(help: "Memory per worker container in MB (docker, swarm, kubernetes and ecs providers; default 2048).")
    var memory: Int?

    @Option(help: "CPU units of the server's container, 1024 a core (default 256).")
    var serverCpu: Int?

    @Option(help: "Memory of the server's container in MB (default 2048).")
    var serverMemory: Int?

    /// Sets the hardware options given on a new cluster's configuration.
    func applyHardware(to configuration: inout ClusterConfiguration) throws {
        for (name, value) in [("--cpu", cpu), ("--memory", memory), ("--server-cpu", serverCpu), ("--server-memory", serverMemory)] {
            if let value, value < 0 { throw CLIError("\(name) must be 0 or more, not \(value)") }
        }
        if let cpu { configuration.workerHardware.cpu = cpu }
        if let memory { configuration.workerHardware.memory = memory }
        if let serverCpu { configuration.serverHardware.cpu = serverCpu }
        if let serverMemory { configuration.serverHardware.memory = serverMemory }
    }

    var address: String { listen ?? "127.0.0.1" }

    var kind: Kind {
        get throws {
            if let provider { return provider }
            guard let text = ProcessInfo.processInfo.environment["DOCKERPARALLEL_PROVIDER"], !text.isEmpty else { return .local }
            guard let kind = Kind(rawValue: text) else {
                throw CLIError("DOCKERPARALLEL_PROVIDER must be 'local', 'docker', 'swarm', 'kubernetes' or 'ecs', not '\(text)'")
            }
            return kind
        }
    }

    var dockerConfiguration: DockerEngineProvider.Configuration {
        get throws {
            let host = try dockerHost.map { try DockerHost(parsing: $0) } ?? DockerHost.fromEnvironment()
            return DockerEngineProvider.Configuration(host: host, networkMode: network ?? "host", serverAddress: address)
        }
    }

    var swarmConfiguration: SwarmProvider.Configuration {
        get throws {
            let host = try dockerHost.map { try DockerHost(parsing: $0) } ?? DockerHost.fromEnvironment()
            return SwarmProvider.Configuration(
                host: host, network: network ?? "host", serverAddress: address, constraints: constraints,
                serverConstraints: serverConstraints, reservesHardware: reserveHardware)
        }
    }

    var kubernetesConfiguration: KubernetesProvider.Configuration {
        get throws {
            var selector: [String: String] = [:]
            for pair in nodeSelectors {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty else {
                    throw CLIError("--node-selector takes key=value (a node label), not '\(pair)'")
                }
                selector[parts[0]] = parts[1]
            }
            let configuration = KubernetesProvider.Configuration(
                kubeconfig: kubeconfig, context: kubeContext, namespace: namespace, network: network ?? "pod",
                serviceType: serviceType, serverAddress: listen, storageClass: storageClass, nodeSelector: selector,
                imagePullPolicy: imagePullPolicy, reservesHardware: reserveHardware)
            try configuration.validate()
            return configuration
        }
    }

    var ecsConfiguration: ECSProvider.Configuration {
        get throws {
            let configuration = ECSProvider.Configuration(
                region: region, profile: awsProfile, cluster: ecsCluster, subnets: subnets, securityGroups: securityGroups,
                assignsPublicIP: !noPublicIp, serverClientSameLAN: sameLan, clientCIDR: clientCidr, spotShare: spot,
                executionRole: executionRole, taskRole: taskRole, serverAddress: listen)
            try configuration.validate()
            return configuration
        }
    }

    func provider(stateDirectory: String) throws -> any CloudProvider {
        switch try kind {
        case .local: LocalProvider(configuration: .init(stateDirectory: stateDirectory, host: address))
        case .docker: try DockerEngineProvider(configuration: dockerConfiguration)
        case .swarm: try SwarmProvider(configuration: swarmConfiguration)
        case .kubernetes: try KubernetesProvider(configuration: kubernetesConfiguration)
        case .ecs: try ECSProvider(configuration: ecsConfiguration)
        }
    }

    func workerContainer(slots: Int) throws -> any WorkerContainer {
        switch try kind {
        case .local:
            guard systemPackages.isEmpty, rPackages.isEmpty else {
                throw CLIError("--system-package and --r-package are installed in worker containers at start-up: the local provider runs processes on this machine, which has what it has")
            }
            return LocalProcessContainer(maxWorkersPerContainer: slots)
        case .docker, .swarm, .kubernetes, .ecs:
            return DockerWorkerContainer(
                image: image, maxWorkersPerContainer: slots, systemPackages: systemPackages, languagePackages: rPackages)
        }
    }
}

enum CLIEnvironment {
    /// Writes a warning to standard error.
    static func warn(_ text: String) {
        FileHandle.standardError.write(Data("dockerparallel: warning: \(text)\n".utf8))
    }

    static func stateDirectory(_ option: String?) -> String {
        if let option { return option }
        if let home = ProcessInfo.processInfo.environment["DOCKERPARALLEL_HOME"], !home.isEmpty {
            return (home as NSString).appendingPathComponent("clusters")
        }
        return LocalProvider.defaultStateDirectory
    }

    /// A logger that prints the cluster's messages to standard error, one line each.
    static let messageLogger = Logger(label: "dockerparallel") { _ in MessageLogHandler() }
}

/// An error the CLI prints as it is, without a type name.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Prints each log message as a line on standard error, without metadata: what the CLI shows of
/// a cluster's progress.
struct MessageLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        FileHandle.standardError.write(Data("\(event.message)\n".utf8))
    }
}
