import ArgumentParser
import DockerParallel
import Foundation

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a named cluster that outlives this command (processes here, or Docker containers).",
        discussion: """
            On a cluster whose server died, `up` restarts it with the password, port and settings \
            it had, so that its workers and clients carry on, and its tasks and results are kept; \
            without --workers it keeps the workers it has. On a running cluster it does nothing.
            """)

    @OptionGroup var cluster: ClusterOptions

    @Option(help: "Workers to start (default 1; on a cluster that is restarted, the workers it had).")
    var workers: Int?

    @Option(help: "The server's port (0 picks a free one).")
    var port: Int = ClusterConfiguration.defaultServerPort

    @Option(name: [.long, .customLong("slots-per-container")], help: "Worker slots per worker process (or container).")
    var slotsPerProcess: Int = 1

    @Option(help: "The server's TLS certificate chain (PEM file), instead of the cluster's own.")
    var tlsCertificate: String?

    @Option(help: "The private key (PEM file) of --tls-certificate.")
    var tlsKey: String?

    @Option(help: "The authority (PEM file) that signed --tls-certificate, for clients and workers to trust (default: the system's).")
    var tlsCa: String?

    @Flag(help: "Serve plain text off loopback too: anyone on the network path can read the password and the tasks.")
    var insecurePlaintext = false

    mutating func validate() throws {
        guard (tlsCertificate == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-certificate and --tls-key go together: give both, or neither for the cluster's own authority")
        }
        guard !insecurePlaintext || tlsCertificate == nil else {
            throw ValidationError("--insecure-plaintext and --tls-certificate contradict each other: choose one")
        }
        guard (workers ?? 0) >= 0 else { throw ValidationError("--workers must be 0 or more") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard slotsPerProcess >= 1 else { throw ValidationError("--slots-per-process must be at least 1") }
    }

    func run() async throws {
        try ClusterConfiguration.validate(jobQueueName: cluster.name)
        var configuration = ClusterConfiguration(jobQueueName: cluster.name, expectedWorkerNumber: workers ?? 1, serverPort: port)
        configuration.transportSecurity = try transportSecurity()
        try cluster.platform.applyHardware(to: &configuration)
        let handle = try DockerCluster(
            provider: cluster.provider,
            workerContainer: cluster.platform.workerContainer(slots: slotsPerProcess),
            configuration: configuration,
            verbosity: cluster.verbose ? 2 : 1, stopClusterOnExit: false, logger: CLIEnvironment.messageLogger)
        if try await handle.clusterExists() {
            let reconnected = try await cluster.reconnected()
            print("Cluster '\(cluster.name)' is already running; `dockerparallel scale N --name \(cluster.name)` changes its workers.")
            print(try await StatusReport.render(reconnected))
            return
        }
        // A server that died: restarted as it was, with the workers it has (or had).
        let stored = try await handle.storedConfiguration()
        // What was there before this command (a store, a state folder) is never removed by it.
        let existedBefore = ((try? await handle.provider.clusterNames()) ?? [cluster.name]).contains(cluster.name)
        if let stored, workers == nil {
            let live = (try? await handle.workerNumbers().total) ?? 0
            try await handle.setWorkerNumber(live > 0 ? live : stored.expectedWorkerNumber)
        }
        do {
            try await handle.startCluster()
        } catch {
            guard stored == nil, !existedBefore else {
                // A restart that failed leaves the cluster as it was (its identity, its workers),
                // for the next `up`; a new server on an old store is stopped, the store kept.
                if stored == nil { try? await handle.stopCluster(ignoreErrors: true, cleanup: false) }
                throw CLIError(
                    "could not start cluster '\(cluster.name)': \(error). Its stored tasks and results are kept: fix the cause and run `dockerparallel up --name \(cluster.name)` again")
            }
            try? await handle.stopCluster(ignoreErrors: true, cleanup: true)
            throw CLIError("could not start cluster '\(cluster.name)': \(error)")
        }
        print(try await StatusReport.render(handle))
    }

    /// The cluster's own authority (default), the user's certificate, or the opt-out.
    private func transportSecurity() throws -> TransportSecurity {
        if insecurePlaintext {
            CLIEnvironment.warn("--insecure-plaintext: off loopback, the cluster password and the tasks cross the network in plain text")
            return .insecurePlainText
        }
        guard let tlsCertificate, let tlsKey else { return .automatic }
        func read(_ path: String, _ option: String) throws -> String {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CLIError("cannot read \(option) \(path): check the path and that you may read it")
            }
            return String(decoding: data, as: UTF8.self)
        }
        return .certificate(
            chain: try read(tlsCertificate, "--tls-certificate"), privateKey: try read(tlsKey, "--tls-key"),
            authority: try tlsCa.map { try read($0, "--tls-ca") })
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a named cluster's server, workers and jobs.")

    @OptionGroup var cluster: ClusterOptions

    @Flag(help: "Print JSON, for programs (the R package reads it): whether the cluster exists and runs, its workers, its jobs.")
    var json = false

    func run() async throws {
        if json {
            print(try await StatusReport.json(cluster))
            return
        }
        let handle = try await cluster.reconnected()
        print(try await StatusReport.render(handle))
    }
}

struct Scale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set the number of workers of a named cluster.")

    @Argument(help: "The number of workers.")
    var workers: Int

    @OptionGroup var cluster: ClusterOptions

    mutating func validate() throws {
        guard workers >= 0 else { throw ValidationError("the worker number must be 0 or more, got \(workers)") }
    }

    func run() async throws {
        let handle = try await cluster.reconnected()
        await handle.setVerbosity(cluster.verbose ? 2 : 1)
        try await handle.requestWorkerNumber(workers)
        print(try await StatusReport.render(handle))
    }
}

struct Supervise: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep a named cluster whole until interrupted.",
        discussion: """
            Every half second: restarts its server if it died (with its store, password and port), re-deploys workers that died, and applies the worker number asked of the server (`scale` from any process, or `PUT /api/v1/workers` over HTTP). Stops when the cluster is stopped with `down`, or on Ctrl-C or SIGTERM (the cluster keeps running).
            """)

    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let handle = try await cluster.reconnected()
        var expected = await handle.configuration.expectedWorkerNumber
        // Each line is flushed at once: a log or a pipe shows it as it happens.
        func say(_ line: String) {
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
        say("Supervising '\(cluster.name)' with \(expected) worker(s): Ctrl-C to stop (the cluster keeps running)")
        var lastError: String?
        while true {
            try await Task.sleep(for: .milliseconds(500))
            do {
                try await handle.update(restoringWorkers: true, followingRequests: true)
                lastError = nil
            } catch let error as DockerParallelError where error.code == .serverNotRunning {
                say("'\(cluster.name)' was stopped: nothing left to supervise")
                return
            } catch {
                // Said once, not every turn, while the same error lasts.
                let text = "\(error)"
                if text != lastError { CLIEnvironment.warn("could not update '\(cluster.name)', trying again every half second: \(text)") }
                lastError = text
            }
            let now = await handle.configuration.expectedWorkerNumber
            if now != expected {
                say("Worker number now \(now), as asked of the server")
                expected = now
            }
        }
    }
}

struct Down: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop a named cluster and remove its state.")

    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let handle: DockerCluster
        do {
            handle = try await cluster.reconnected()
        } catch let error as DockerParallelError
            where [.connectionFailed, .serverNotRunning, .serverStartFailed, .timedOut].contains(error.code) {
            // A cluster whose server cannot be reached (it died, or this client cannot see its
            // address) is still removed: the provider's cleanup needs no server.
            CLIEnvironment.warn("cannot reach the server of '\(cluster.name)' (\(error.message)); removing the cluster without it")
            let orphan = try DockerCluster(
                provider: cluster.provider, configuration: ClusterConfiguration(jobQueueName: cluster.name),
                verbosity: cluster.verbose ? 2 : 1, stopClusterOnExit: false, logger: CLIEnvironment.messageLogger)
            try await orphan.removeWithoutServer(deep: true)
            print("Cluster '\(cluster.name)' stopped.")
            return
        }
        await handle.setVerbosity(cluster.verbose ? 2 : 1)
        try await handle.stopCluster(cleanup: true)
        // Down means gone: also the store's volume of a Docker cluster.
        try await handle.cleanup(deep: true)
        print("Cluster '\(cluster.name)' stopped.")
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the named clusters on this machine.")

    @Option(help: "Where cluster state lives.")
    var stateDir: String?

    @OptionGroup var platform: ProviderOptions

    func run() async throws {
        let provider = try platform.provider(stateDirectory: CLIEnvironment.stateDirectory(stateDir))
        let names = try await provider.clusterNames()
        if names.isEmpty { print("No clusters.") }
        for name in names {
            let handle = try DockerCluster(
                provider: provider, configuration: ClusterConfiguration(jobQueueName: name), verbosity: 0,
                stopClusterOnExit: false)
            let running = (try? await handle.clusterExists()) ?? false
            print("\(name)\t\(running ? "running" : "stopped")")
        }
    }
}

enum StatusReport {
    static func render(_ cluster: DockerCluster) async throws -> String {
        let configuration = await cluster.configuration
        let runtime = await cluster.runtime
        let numbers = try await cluster.workerNumbers()
        var lines = ["Cluster:        \(configuration.jobQueueName)"]
        let report = try? await cluster.serverReport()
        if let endpoint = runtime.serverEndpoints?.endpoint(sameLAN: configuration.serverClientSameLAN) {
            lines.append("Server status:  Running at \(endpoint)\(report.map { ", up \(Self.duration($0.uptime))" } ?? "")")
        } else {
            lines.append("Server status:  Stopped")
        }
        if let report, let first = report.firstStarted {
            let restarts = report.restarts == 1 ? "1 time" : "\(report.restarts) times"
            lines.append("Restarts:       \(restarts) since it first started at \(Self.timestamp(first))")
        }
        lines.append("Worker number:  \(numbers)")
        if let desired = report?.desiredWorkers {
            lines.append("Asked for:      \(desired) worker(s) (`dockerparallel supervise` keeps that number)")
        }
        if let report {
            lines.append("Connected:      \(report.workers.count) worker process(es), \(report.workerSlots) slot(s)")
            for job in report.jobs {
                lines.append("Job \(job.jobID): \(job.finished)/\(job.total) done, \(job.running) running, \(job.queued) queued, \(job.failed) failed, \(job.cancelled) cancelled")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The status as JSON: `exists` is false for a cluster this machine does not know (no error).
    static func json(_ options: ClusterOptions) async throws -> String {
        struct Job: Encodable {
            var id: String
            var total, queued, running, succeeded, failed, cancelled: Int
        }
        struct Status: Encodable {
            var name: String
            var exists: Bool
            var running: Bool
            var server: String?
            var workers: WorkerNumbers?
            var connectedWorkers: Int?
            var slots: Int?
            var jobs: [Job] = []
        }
        let provider = try options.provider
        let known = try await provider.clusterNames().contains(options.name)
        var status = Status(name: options.name, exists: known, running: false)
        // A known cluster whose server stopped has no handle: it exists, and does not run.
        if known, let handle = try? await options.reconnected() {
            status.running = try await handle.clusterExists()
            let configuration = await handle.configuration
            status.server = await handle.runtime.serverEndpoints?.endpoint(sameLAN: configuration.serverClientSameLAN)?.description
            status.workers = try? await handle.workerNumbers()
            if status.running, let report = try? await handle.serverReport() {
                status.connectedWorkers = report.workers.count
                status.slots = report.workerSlots
                status.jobs = report.jobs.map {
                    Job(id: $0.jobID.rawValue, total: $0.total, queued: $0.queued, running: $0.running,
                        succeeded: $0.succeeded, failed: $0.failed, cancelled: $0.cancelled)
                }
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(status), as: UTF8.self)
    }

    /// `2h 05m`, `3m 07s` or `12s`.
    static func duration(_ duration: Duration) -> String {
        let seconds = Int(duration.inSeconds)
        if seconds >= 3600 { return String(format: "%dh %02dm", seconds / 3600, seconds % 3600 / 60) }
        if seconds >= 60 { return String(format: "%dm %02ds", seconds / 60, seconds % 60) }
        return "\(seconds)s"
    }

    /// A time in the local time zone, to the second.
    static func timestamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter.string(from: date)
    }
}
