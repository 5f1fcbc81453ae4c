#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import DockerParallel
import DockerParallelCore
import Foundation

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command once per input, GNU parallel style, and print the outputs in input order.",
        discussion: """
            {} is replaced by the input ({.} without extension, {/} base name, {//} directory, \
            {/.} base name without extension, {#} the task number); without any, the input is \
            appended. Inputs follow ':::', or are read from standard input one per line.
            Without --cluster, an ephemeral local cluster of -j workers is started and stopped.
            The exit status is the number of failed tasks (at most 101), 0 when all succeeded.
            """)

    @Option(name: .short, help: "Workers of the ephemeral cluster.")
    var jobs: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    @Option(help: "Run on this running named cluster instead of an ephemeral one.")
    var cluster: String?

    @OptionGroup var jobOptions: JobOptionGroup

    @Option(help: "Where cluster state lives.")
    var stateDir: String?

    @OptionGroup var platform: ProviderOptions

    @Flag(name: .long, help: "Never show the progress bar.")
    var noProgress = false

    @Flag(name: .shortAndLong, help: "Show cluster messages.")
    var verbose = false

    @Flag(help: "Print the number of tasks, workers, wall time and throughput to standard error at the end.")
    var stats = false

    @Argument(parsing: .captureForPassthrough, help: "-- COMMAND ARGS… [::: INPUT…]")
    var words: [String] = []

    /// Stops an ephemeral cluster and frees all it used (containers, the store's volume).
    static func close(_ handle: DockerCluster) async {
        await handle.close()
        try? await handle.cleanup(deep: true)
    }

    mutating func validate() throws {
        guard jobs >= 1 else { throw ValidationError("-j must be at least 1, got \(jobs)") }
    }

    func run() async throws {
        let (template, inputs) = try CommandInputs.parse(words)
        let options = try jobOptions.options()
        guard !inputs.isEmpty else { return }

        let started = ContinuousClock.now
        let handle: DockerCluster
        let ephemeralState: String?
        if let name = cluster {
            var clusterOptions = try ClusterOptions.parse([])
            clusterOptions.name = name
            clusterOptions.stateDir = stateDir
            clusterOptions.verbose = verbose
            clusterOptions.platform = platform
            handle = try await clusterOptions.reconnected()
            ephemeralState = nil
        } else {
            let state = NSTemporaryDirectory() + "dockerparallel-run-\(getpid())"
            ephemeralState = state
            let provider = try platform.provider(stateDirectory: state)
            var configuration = ClusterConfiguration(
                jobQueueName: "run-\(getpid())", expectedWorkerNumber: jobs, serverPort: 0)
            try platform.applyHardware(to: &configuration)
            handle = try DockerCluster(
                provider: provider, workerContainer: platform.workerContainer(slots: 1), configuration: configuration,
                verbosity: verbose ? 2 : 0, stopClusterOnExit: true, logger: CLIEnvironment.messageLogger)
            do {
                try await handle.startCluster()
            } catch {
                await Self.close(handle)
                throw error
            }
        }
        let failures: [TaskResult]
        let taskInputs = inputs
        let submitted = SubmittedJob()
        do {
            failures = try await withThrowingTaskGroup(of: [TaskResult]?.self) { group in
                // Restart the server or workers that die while the job runs; a named cluster's
                // server restarts with its password and port, and one stopped on purpose
                // (`down`) stays stopped.
                group.addTask {
                    // A named cluster's workers are its owner's (`scale`): only its server is kept.
                    await handle.supervise(restoringWorkers: ephemeralState != nil)
                    return nil
                }
                let showProgress = !noProgress && isatty(2) == 1
                group.addTask {
                    try await Self.execute(
                        template: template, inputs: taskInputs, options: options, on: handle, showProgress: showProgress,
                        submitted: submitted)
                }
                defer { group.cancelAll() }
                while let next = try await group.next() {
                    if let failures = next { return failures }
                }
                return []
            }
        } catch {
            if ephemeralState != nil { await Self.close(handle) }
            if let name = cluster, let jobID = submitted.value {
                // The job stays on the cluster, and its workers go on with it.
                throw CLIError(
                    "\(error)\nThe job \(jobID) stays on the cluster '\(name)' and its workers go on with it: collect its results with `dockerparallel results --name \(name) --job \(jobID)`.")
            }
            throw error
        }
        if let ephemeralState {
            await Self.close(handle)
            try? FileManager.default.removeItem(atPath: ephemeralState)
        }
        if stats {
            let seconds = (ContinuousClock.now - started).inSeconds
            let kind = (try? platform.kind)?.rawValue ?? "local"
            let workers = cluster == nil ? "\(jobs) \(kind) workers" : "cluster '\(cluster ?? "")'"
            let line = String(
                format: "dockerparallel: %d tasks on %@ in %.2f s (%.0f tasks/s), %d failed\n",
                inputs.count, workers, seconds, Double(inputs.count) / max(seconds, 1e-9), failures.count)
            FileHandle.standardError.write(Data(line.utf8))
        }
        try JobOutput.finish(failures: failures, total: inputs.count) { "input \(inputs[$0])" }
    }

    /// Submits, prints outputs in input order as they become printable, returns the failures.
    private static func execute(
        template: CommandTemplate, inputs: [String], options: JobOptions, on cluster: DockerCluster, showProgress: Bool,
        submitted: SubmittedJob
    ) async throws -> [TaskResult] {
        let job = try await cluster.submitCommands(template, inputs: inputs, options: options)
        submitted.value = job.id
        let progress = ProgressBar(total: inputs.count, enabled: showProgress)
        let failures = try await JobOutput.printInOrder(try await job.results(progress: { progress.update($0) }), progress: progress)
        try? await cluster.forget(jobID: job.id)
        return failures
    }
}

/// The id of the job `run` submitted, once it has.
final class SubmittedJob: @unchecked Sendable {
    private let lock = NSLock()
    private var jobID: JobID?

    var value: JobID? {
        get { lock.withLock { jobID } }
        set { lock.withLock { jobID = newValue } }
    }
}

/// A one-line progress bar on standard error.
final class ProgressBar: Sendable {
    let total: Int
    let enabled: Bool

    init(total: Int, enabled: Bool) {
        self.total = total
        self.enabled = enabled
    }

    func update(_ status: JobStatus) {
        guard enabled else { return }
        let width = 30
        let filled = total == 0 ? width : status.finished * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        let failed = status.failed > 0 ? ", \(status.failed) failed" : ""
        FileHandle.standardError.write(Data("\r[\(bar)] \(status.finished)/\(total) done, \(status.running) running\(failed) ".utf8))
    }

    func clear() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }

    func finish() { clear() }
}
