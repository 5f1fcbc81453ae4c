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
        abstract: "Run a command per input, as GNU parallel does, and print the outputs in input order.",
        discussion: """
            The command's words form one shell command line, with each input quoted in place of \
            {} ({.} without extension, {/} base name, {//} directory, {/.} base name without \
            extension, {#} the command's number; {1}, {2.}, {-1/} … one input of several); \
            without any, the inputs are appended. -q runs the words as they are, without a shell.
            Inputs follow ':::' (several ':::' combine, ':::+' pairs), come from files ('::::', \
            -a), or from standard input, one a line.
            Without --cluster, an ephemeral local cluster of -j workers is started and stopped.
            The exit status is the number of failed commands (at most 101), 0 when all succeeded.
            """)

    @Option(name: [.customShort("j", allowingJoined: true), .customShort("P"), .customLong("jobs")], parsing: .unconditional, help: ArgumentHelp(
        "Workers of the ephemeral cluster: N, +N or -N (the cores plus or minus N), N% of the cores, or 0 (one per command, up to 64).",
        valueName: "N"))
    var jobs: String?

    @Option(help: "Run on this running named cluster instead of an ephemeral one.")
    var cluster: String?

    @OptionGroup var inputOptions: InputOptionGroup

    @Option(name: .customShort("n", allowingJoined: true), help: ArgumentHelp("The same as -N.", valueName: "count"))
    var maxArguments: Int?

    @OptionGroup var jobOptions: JobOptionGroup

    @Flag(help: "Print each command line instead of running it.")
    var dryRun = false

    @Flag(help: "Begin each line of a command's output with its inputs and a tab.")
    var tag = false

    @Flag(name: [.customShort("u"), .customLong("ungroup"), .customLong("line-buffer")], help: "Print each command's output as soon as it finishes, not in input order.")
    var asItFinishes = false

    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Stop early: now (kill running commands) or soon (start no more), once fail=, success= or done= reaches N or N%.",
        valueName: "now|soon,fail=N"))
    var halt: String?

    @Option(help: ArgumentHelp(
        "Write each command's stdout, stderr and number to files in FOLDER, as GNU parallel lays them out, instead of printing them.",
        valueName: "folder"))
    var results: String?

    @Flag(name: [.customLong("bar"), .customLong("eta"), .customLong("progress")], help: "Show the progress bar, with a rate and an ETA, even when standard error is not a terminal.")
    var showsProgress = false

    @Option(help: ArgumentHelp("Start the commands at least this long apart: seconds, or with s, m or h.", valueName: "duration"))
    var delay: String?

    @Option(help: ArgumentHelp("Log each finished command to FILE, in GNU parallel's columns.", valueName: "file"))
    var joblog: String?

    @Flag(help: ArgumentHelp(
        "Skip the commands the --joblog lists, and add to it; on a named --cluster without --joblog, those its server has done.",
        discussion: "On a named cluster the job stays on the server under an id made from the command, for the next rerun."))
    var resume = false

    @Flag(help: "As --resume, but run again the commands that failed.")
    var resumeFailed = false

    @Option(help: "Where cluster state lives.")
    var stateDir: String?

    @OptionGroup var platform: ProviderOptions

    @Flag(name: .long, help: "Never show the progress bar.")
    var noProgress = false

    @Flag(name: .shortAndLong, help: "Show cluster messages.")
    var verbose = false

    @Flag(help: "Print the number of tasks, workers, wall time and throughput to standard error at the end.")
    var stats = false

    @Argument(parsing: .captureForPassthrough, help: "[--] COMMAND ARGS… [::: INPUT… | :::+ INPUT… | :::: FILE…]…")
    var words: [String] = []

    /// Stops an ephemeral cluster and frees all it used (containers, the store's volume).
    static func close(_ handle: DockerCluster) async {
        await handle.close()
        try? await handle.cleanup(deep: true)
    }

    /// The number of workers `-j` asks for, given the cores and the commands.
    static func workers(_ jobs: String?, cores: Int, commands: Int) throws -> Int {
        guard let jobs else { return cores }
        let invalid = ValidationError("-j takes N, +N, -N, N% or 0, not '\(jobs)'")
        if jobs.hasSuffix("%") {
            guard let percent = Double(jobs.dropLast()), percent > 0 else { throw invalid }
            return max(1, Int((Double(cores) * percent / 100).rounded(.down)))
        }
        guard let number = Int(jobs) else { throw invalid }
        if jobs.hasPrefix("+") || jobs.hasPrefix("-") { return max(1, cores + number) }
        return number == 0 ? max(1, min(commands, 64)) : number
    }

    func run() async throws {
        var job = try CommandJob.parse(
            words, options: inputOptions, inputsPerCommand: maxArguments, known: UnknownOption.names(of: Self.self))
        let options = try jobOptions.options()
        var storedResume: (jobID: JobID, failedToo: Bool)?
        if resume || resumeFailed {
            if let joblog {
                job = job.skipping(try JobLog.done(in: joblog, failedToo: !resumeFailed))
            } else if cluster != nil {
                storedResume = (StoredResume.defaultJobID(for: job.command), !resumeFailed)
            } else {
                throw ValidationError(
                    "--resume and --resume-failed read the log that --joblog FILE names, or, on a named --cluster, the job its server keeps")
            }
        }
        let jobs = try Self.workers(self.jobs, cores: ProcessInfo.processInfo.activeProcessorCount, commands: job.arguments.count)
        if dryRun {
            for index in job.arguments.indices { print(job.commandLine(index)) }
            return
        }
        let haltPolicy: HaltPolicy?
        do {
            haltPolicy = try halt.flatMap { try HaltPolicy.parse($0) }
        } catch let error as DockerParallelError {
            throw ValidationError(error.message)
        }
        // Checked now; written for the commands each run prints (resuming: those it runs).
        let files = try results.map { try ResultFiles(folder: $0, job: job) }
        let timeoutShare = try jobOptions.timeoutShareOfMedian()
        let spacing = try delay.map(Self.duration)
        if spacing != nil, storedResume != nil {
            throw ValidationError("--delay does not go with resuming from the server's store: give --joblog FILE to resume, or leave out --delay")
        }
        let log = try joblog.map { try JobLog(path: $0, appending: resume || resumeFailed) }
        defer { log?.close() }
        guard !job.arguments.isEmpty else { return }

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
        let submitted = SubmittedJob()
        let style = JobOutput.Style(tags: tag ? job.arguments.map { $0.joined(separator: " ") } : nil, inOrder: !asItFinishes)
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
                let showProgress = !noProgress && (showsProgress || isatty(2) == 1)
                let watch = Watch(files: files, halt: haltPolicy, timeoutShare: timeoutShare, log: log, delay: spacing)
                let commands = job
                let resume = storedResume
                group.addTask {
                    try await Self.execute(
                        commands, options: options, on: handle, style: style, watch: watch, resume: resume,
                        showProgress: showProgress, submitted: submitted)
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
            let count = (submitted.printed ?? job).arguments.count
            let line = String(
                format: "dockerparallel: %d tasks on %@ in %.2f s (%.0f tasks/s), %d failed\n",
                count, workers, seconds, Double(count) / max(seconds, 1e-9), failures.count)
            FileHandle.standardError.write(Data(line.utf8))
        }
        let shown = submitted.printed ?? job
        // With --halt N%, GNU parallel exits with the failures' share even when it did not halt.
        let status = submitted.haltStatus ?? haltPolicy?.statusWithoutHalting(failed: failures.count, total: shown.arguments.count)
        try JobOutput.finish(failures: failures, total: shown.arguments.count, status: status, describe: shown.describe)
    }

    /// Submits (or, resuming, submits what the job lacks), prints outputs in input order as they
    /// become printable, returns the failures.
    private static func execute(
        _ all: CommandJob, options: JobOptions, on cluster: DockerCluster, style: JobOutput.Style, watch: Watch,
        resume: (jobID: JobID, failedToo: Bool)?, showProgress: Bool, submitted: SubmittedJob
    ) async throws -> [TaskResult] {
        let log = watch.log
        // The commands this run prints, in order, and (resuming) their indices in the job.
        var commands = all
        var style = style
        let indices: [Int]?
        let jobID: JobID
        let total: Int
        var paced: [TaskSpec] = []
        if let resume {
            let plan = try await StoredResume.prepare(all, on: cluster, jobID: resume.jobID, failedToo: resume.failedToo, options: options)
            FileHandle.standardError.write(Data(plan.summary.utf8))
            commands = all.selecting(plan.positions)
            style.tags = style.tags.map { tags in plan.positions.map { tags[$0] } }
            indices = plan.indices
            jobID = plan.jobID
            total = plan.total
        } else if watch.delay != nil {
            // --delay: the first command now, each next one a delay later (below).
            let tasks = try DockerCluster.commandLineTasks(all.command, arguments: all.arguments, numbers: all.numbers)
            jobID = JobID.random()
            try await cluster.submit(Array(tasks.prefix(1)), jobID: jobID, options: options)
            paced = Array(tasks.dropFirst())
            indices = nil
            total = all.arguments.count
        } else {
            let job = try await cluster.submitCommandLines(
                all.command, arguments: all.arguments, numbers: all.numbers, options: options)
            indices = nil
            jobID = job.id
            total = all.arguments.count
        }
        submitted.value = jobID
        submitted.printed = commands
        guard !commands.arguments.isEmpty else { return [] }
        let files = watch.files.map { ResultFiles(folder: $0.folder, commands: commands) }
        let pacer = watch.delay.map { _ in Pacer() }
        let pacing = watch.delay.map { delay in
            Task { [paced] in
                do {
                    for task in paced {
                        try await Task.sleep(for: delay)
                        try await cluster.submit([task], jobID: jobID, options: options)
                    }
                    pacer?.end(nil)
                } catch {
                    pacer?.end(error)
                }
            }
        }
        defer { pacing?.cancel() }
        let progress = ProgressBar(total: commands.arguments.count, enabled: showProgress, finishedBefore: total - commands.arguments.count)
        var results: AsyncThrowingStream<TaskResult, any Error>
        if let pacer {
            results = Self.everyResult(of: jobID, count: total, on: cluster, progress: { progress.update($0) }, while: pacer)
        } else {
            results = try await cluster.results(jobID: jobID, progress: { progress.update($0) })
        }
        if let indices { results = Self.only(indices, of: results) }
        // Each command's line in the job log, with its worker and times from the attempt log,
        // in the order of the output (as GNU parallel writes it), apart from the printing.
        let (toLog, logging) = AsyncStream.makeStream(of: TaskResult.self)
        let logged = log.map { [commands] log in
            Task {
                for await result in toLog {
                    let attempt = try? await cluster.attemptLog(jobID: jobID, index: indices?[result.index] ?? result.index).last
                    log.record(number: commands.numbers[result.index], result: result, attempt: attempt, command: commands.commandLine(result.index))
                }
            }
        }
        let halt = watch.halt.map { policy in
            HaltTracker(policy: policy, total: commands.arguments.count) { running in
                pacing?.cancel()
                await Self.cancel(jobID, on: cluster, running: running)
            }
        }
        // --timeout N%: commands that run longer than that share of the median are killed.
        let numbers = Dictionary((indices ?? Array(commands.numbers.indices)).enumerated().map { ($1, commands.numbers[$0]) }, uniquingKeysWith: { first, _ in first })
        let timeouts = watch.timeoutShare.map { share in
            Task { await Self.killSlowCommands(jobID, on: cluster, share: share, numbers: numbers) }
        }
        defer { timeouts?.cancel() }
        let failures: [TaskResult]
        do {
            failures = try await JobOutput.print(
                results, style: style, progress: progress, files: files, halt: halt,
                printed: { if log != nil { logging.yield($0) } })
        } catch {
            // The log's writer ends before the log is closed.
            logging.finish()
            await logged?.value
            throw error
        }
        logging.finish()
        submitted.haltStatus = halt?.exitStatus
        await logged?.value
        // A resumable job stays on the server for the next rerun.
        if indices == nil { try? await cluster.forget(jobID: jobID) }
        return failures
    }

    /// Every result of a job whose tasks are still being added (`--delay`): the server's stream
    /// ends whenever every task added so far has its result, so it is watched again, the
    /// results already seen skipped, until `count` have come or adding ended early.
    static func everyResult(
        of jobID: JobID, count: Int, on cluster: DockerCluster, progress: @escaping @Sendable (JobStatus) -> Void,
        while pacer: Pacer
    ) -> AsyncThrowingStream<TaskResult, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: TaskResult.self)
        let forwarding = Task {
            var seen = Set<Int>()
            do {
                while seen.count < count {
                    for try await result in try await cluster.results(jobID: jobID, progress: progress)
                    where seen.insert(result.index).inserted {
                        continuation.yield(result)
                    }
                    guard seen.count < count else { break }
                    if let ending = pacer.ending, try await cluster.jobStatus(jobID: jobID).total <= seen.count {
                        // Adding stopped early (a halt) or failed: what came is all there is.
                        if let error = ending, !(error is CancellationError) { throw error }
                        break
                    }
                    // The next command is not added yet.
                    try await Task.sleep(for: .milliseconds(50))
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in forwarding.cancel() }
        return stream
    }

    /// `--delay`'s duration: seconds, or a number with s, m or h.
    static func duration(_ text: String) throws -> Duration {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        let scale = text.last.flatMap { units[$0] } ?? 1
        let number = units[text.last ?? " "] == nil ? Substring(text) : text.dropLast()
        guard let value = Double(number), value >= 0, let duration = Duration(checkedSeconds: value * scale) else {
            throw ValidationError("--delay takes seconds, or a number with s, m or h (2.5, 30s, 1m), not '\(text)'")
        }
        return duration
    }

    /// The results of the job's tasks at `indices`, numbered by their place in `indices`,
    /// ending once each has one.
    static func only(_ indices: [Int], of results: AsyncThrowingStream<TaskResult, any Error>) -> AsyncThrowingStream<TaskResult, any Error> {
        let place = Dictionary(indices.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: TaskResult.self)
        let forwarding = Task {
            var seen = 0
            do {
                for try await result in results {
                    guard let position = place[result.index] else { continue }
                    var result = result
                    result.index = position
                    continuation.yield(result)
                    seen += 1
                    if seen == indices.count { break }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in forwarding.cancel() }
        return stream
    }
}

/// Whether the commands `--delay` adds one by one are all added, or adding ended early (with
/// its error).
final class Pacer: @unchecked Sendable {
    private let lock = NSLock()
    private var ended: (any Error)??

    /// `nil` while adding; then `.some(nil)` when every command was added, else its error.
    var ending: (any Error)?? { lock.withLock { ended } }

    func end(_ error: (any Error)?) { lock.withLock { ended = .some(error) } }
}

/// What `run` watches as its commands finish besides printing them.
struct Watch: Sendable {
    var files: ResultFiles?
    var halt: HaltPolicy?
    var timeoutShare: Double?
    var log: JobLog?
    /// How long apart commands start (`--delay`).
    var delay: Duration?
}

extension Run {
    /// Cancels a job's unfinished commands, or (`running` false) only those no worker has
    /// started (`--halt soon`).
    static func cancel(_ jobID: JobID, on cluster: DockerCluster, running: Bool) async {
        if running {
            _ = try? await cluster.cancel(jobID: jobID)
        } else {
            _ = try? await cluster.stopStarting(jobID: jobID)
        }
    }

    /// Kills, every half second, the commands that have run longer than `share` of the median
    /// run time of the commands finished so far (once three have).
    /// - Parameter numbers: Each task's command number, by its index in the job.
    static func killSlowCommands(_ jobID: JobID, on cluster: DockerCluster, share: Double, numbers: [Int: Int]) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(500))
            guard let attempts = try? await cluster.attemptLog(jobID: jobID) else { continue }
            let runtimes = attempts.compactMap { attempt in attempt.outcome == .succeeded ? attempt.ended.map { $0 - attempt.started } : nil }.sorted()
            guard runtimes.count >= 3 else { continue }
            let median = runtimes[runtimes.count / 2]
            let now = Date().timeIntervalSince1970
            for attempt in attempts where attempt.outcome == .running && now - attempt.started > max(median * share, 0.001) {
                _ = try? await cluster.cancel(jobID: jobID, index: attempt.index)
                FileHandle.standardError.write(Data(String(
                    format: "dockerparallel: command #%d killed: it ran %.1f s, over %.0f%% of the median %.3f s (--timeout)\n",
                    numbers[attempt.index] ?? attempt.index + 1, now - attempt.started, share * 100, median).utf8))
            }
        }
    }
}

/// The id of the job `run` submitted, once it has, the commands it printed, and the exit status
/// `--halt` set.
final class SubmittedJob: @unchecked Sendable {
    private let lock = NSLock()
    private var jobID: JobID?
    private var halted: Int32?
    private var commands: CommandJob?

    var value: JobID? {
        get { lock.withLock { jobID } }
        set { lock.withLock { jobID = newValue } }
    }

    var haltStatus: Int32? {
        get { lock.withLock { halted } }
        set { lock.withLock { halted = newValue } }
    }

    /// The commands the run printed (resuming: those it ran now).
    var printed: CommandJob? {
        get { lock.withLock { commands } }
        set { lock.withLock { commands = newValue } }
    }
}

/// A one-line progress bar on standard error, with the rate so far and the time left at it.
final class ProgressBar: Sendable {
    let total: Int
    let enabled: Bool
    /// Tasks of the job that had finished before (resuming), which the bar leaves out.
    let finishedBefore: Int
    let started = ContinuousClock.now

    init(total: Int, enabled: Bool, finishedBefore: Int = 0) {
        self.total = total
        self.enabled = enabled
        self.finishedBefore = finishedBefore
    }

    func update(_ status: JobStatus) {
        guard enabled else { return }
        var status = status
        var before = finishedBefore
        for count in [\JobStatus.succeeded, \JobStatus.failed, \JobStatus.cancelled] {
            let taken = min(before, status[keyPath: count])
            status[keyPath: count] -= taken
            before -= taken
        }
        FileHandle.standardError.write(Data("\r\(Self.line(status, total: total, seconds: (ContinuousClock.now - started).inSeconds)) ".utf8))
    }

    /// The bar's text after `seconds`: `[####    ] 40/100 done, 2 running, 12.5/s, ETA 0:05`.
    static func line(_ status: JobStatus, total: Int, seconds: Double) -> String {
        let width = 30
        let filled = total == 0 ? width : min(width, status.finished * width / total)
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        let failed = status.failed > 0 ? ", \(status.failed) failed" : ""
        var speed = ""
        if status.finished > 0, seconds > 0 {
            let rate = Double(status.finished) / seconds
            let left = Int((Double(max(total - status.finished, 0)) / rate).rounded(.up))
            speed = String(format: ", %.1f/s, ETA %d:%02d", rate, left / 60, left % 60)
        }
        return "[\(bar)] \(status.finished)/\(total) done, \(status.running) running\(failed)\(speed)"
    }

    func clear() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }

    func finish() { clear() }
}
