#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import DockerParallel
import Foundation

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit a command per input to a named cluster, print the job's id and return at once.",
        discussion: "Collect the outputs later, from any process, with `dockerparallel results --name NAME --job ID`.")

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var jobOptions: JobOptionGroup

    @Option(help: "The job's id (default: a new one). Submitting again with the same id adds nothing twice.")
    var job: JobID?

    @OptionGroup var inputOptions: InputOptionGroup

    @Flag(help: ArgumentHelp(
        "Skip every command the job already has a result for, and add the rest to it.",
        discussion: "The job is --job, or else one with an id made from the command: rerunning the same submit resumes it."))
    var resume = false

    @Flag(help: "As --resume, but queue again the commands that failed (after a fix).")
    var resumeFailed = false

    @Argument(parsing: .captureForPassthrough, help: "[--] COMMAND ARGS… [::: INPUT… | :::+ INPUT… | :::: FILE…]…")
    var words: [String] = []

    func run() async throws {
        let commands = try CommandJob.parse(words, options: inputOptions, known: UnknownOption.names(of: Self.self))
        let options = try jobOptions.options()
        if try jobOptions.timeoutShareOfMedian() != nil {
            throw ValidationError("--timeout N% needs run, which watches the job; give submit a number of seconds")
        }
        let handle = try await cluster.reconnected()
        if resume || resumeFailed {
            let plan = try await StoredResume.prepare(
                commands, on: handle, jobID: job ?? StoredResume.defaultJobID(for: commands.command), failedToo: !resumeFailed, options: options)
            FileHandle.standardError.write(Data(plan.summary.utf8))
            print(plan.jobID)
            return
        }
        let submitted = try await handle.submitCommandLines(
            commands.command, arguments: commands.arguments, numbers: commands.numbers, options: options, jobID: job ?? .random())
        print(submitted.id)
    }
}

struct Results: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait for a job and print its outputs in input order.",
        discussion: "The exit status is the number of failed tasks (at most 101). The results stay on the server unless --forget is given.")

    @OptionGroup var cluster: ClusterOptions

    @Option(help: "The job's id, as `submit` printed it; without it, the cluster's jobs are listed.")
    var job: JobID?

    @Flag(help: "Remove the job and its results from the server once they are printed.")
    var forget = false

    @Flag(help: "Never show the progress bar.")
    var noProgress = false

    func run() async throws {
        let handle = try await cluster.reconnected()
        guard let job else {
            let jobs = try await handle.serverReport().jobs
            if jobs.isEmpty { print("No jobs on '\(cluster.name)'.") }
            for job in jobs {
                print("\(job.jobID)\t\(job.finished)/\(job.total) done, \(job.failed) failed, \(job.cancelled) cancelled")
            }
            return
        }
        let status = try await handle.jobStatus(jobID: job)
        let progress = ProgressBar(total: status.total, enabled: !noProgress && isatty(2) == 1)
        let failures = try await JobOutput.print(
            try await handle.results(jobID: job, progress: { progress.update($0) }), progress: progress)
        if forget { try await handle.forget(jobID: job) }
        try JobOutput.finish(failures: failures, total: status.total) { "task \($0 + 1)" }
    }
}

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the standard error, exit status and error of a job's finished tasks.")

    @OptionGroup var cluster: ClusterOptions

    @Option(help: "The job's id.")
    var job: JobID

    @Option(help: "Only this task (numbered from 1).")
    var task: Int?

    @Flag(help: "Only tasks that failed or were cancelled.")
    var failed = false

    @Flag(help: "Print the attempt log instead: every attempt, its worker, its times and how it ended.")
    var attempts = false

    func run() async throws {
        let handle = try await cluster.reconnected()
        if attempts {
            try await printAttempts(handle)
            return
        }
        let status = try await handle.jobStatus(jobID: job)
        // Headers and raw output go through the same unbuffered handle, so they stay in order.
        let out = FileHandle.standardOutput
        out.write(Data("job \(job): \(status.finished)/\(status.total) done, \(status.running) running, \(status.queued) queued, \(status.failed) failed, \(status.cancelled) cancelled\n".utf8))
        for result in try await handle.finishedResults(jobID: job)
        where (task == nil || result.index + 1 == task) && (!failed || result.status != .succeeded) {
            let exit = result.exitCode.map { "exit \($0)" } ?? "no exit status"
            let error = result.error.map { ": \($0)" } ?? ""
            out.write(Data("--- task \(result.index + 1): \(result.status.rawValue), \(exit), \(result.attempts) attempt(s)\(error)\n".utf8))
            out.write(result.errorOutput)
            if result.errorOutput.last.map({ $0 != UInt8(ascii: "\n") }) ?? false { out.write(Data("\n".utf8)) }
        }
    }
}

extension Logs {
    private func printAttempts(_ handle: DockerCluster) async throws {
        let records = try await handle.attemptLog(jobID: job, index: task.map { $0 - 1 })
        let time = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        print("task\tattempt\tworker\tstarted\tseconds\toutcome\terror")
        for record in records {
            let started = Date(timeIntervalSince1970: record.started).formatted(time)
            let seconds = record.ended.map { String(format: "%.3f", $0 - record.started) } ?? "-"
            let attempt = record.attempt == 0 ? "-" : "\(record.attempt)"
            print("\(record.index + 1)\t\(attempt)\t\(record.worker)\t\(started)\t\(seconds)\t\(record.outcome.rawValue)\t\(record.error ?? "")")
        }
    }
}

struct Retry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Queue a job's failed and cancelled tasks again, with fresh attempts.",
        discussion: "List them first with `dockerparallel logs --job ID --failed`; collect with `results`.")

    @OptionGroup var cluster: ClusterOptions

    @Option(help: "The job's id.")
    var job: JobID

    @Option(help: "Only this task (numbered from 1); repeat for several.")
    var task: [Int] = []

    func run() async throws {
        let handle = try await cluster.reconnected()
        let before = try await handle.jobStatus(jobID: job)
        let after = try await handle.retryFailed(jobID: job, indices: task.isEmpty ? nil : task.map { $0 - 1 })
        let queued = (before.failed + before.cancelled) - (after.failed + after.cancelled)
        print("queued \(queued) task(s) of \(job) again")
    }
}

extension JobID: ExpressibleByArgument {
    /// A job id as typed on the command line.
    public init?(argument: String) {
        guard !argument.isEmpty else { return nil }
        self.init(argument)
    }
}
