import ArgumentParser
import DockerParallel
import DockerParallelCore
import Foundation

/// Printing a job's results the way GNU parallel does: in input order, failures summarised.
enum JobOutput {
    /// How a job's outputs are printed.
    struct Style: Sendable {
        /// Each task's tag (`--tag`), which begins every line of its output with a tab after it.
        var tags: [String]?
        /// Whether outputs wait for every earlier one (else each prints as its task finishes).
        var inOrder = true
    }

    /// Prints each result's output (and its standard error) in index order as soon as every
    /// earlier one has been printed, or as it comes.
    /// - Parameter printed: Called with each result printed, in the order of the output.
    /// - Returns: The results that did not succeed.
    static func print(
        _ results: AsyncThrowingStream<TaskResult, any Error>, style: Style = Style(), progress: ProgressBar,
        files: ResultFiles? = nil, halt: HaltTracker? = nil, printed: (TaskResult) -> Void = { _ in }
    ) async throws -> [TaskResult] {
        var pending: [Int: TaskResult] = [:]
        var next = 0
        var failures: [TaskResult] = []
        func show(_ result: TaskResult) throws {
            // What a halt cut short is neither printed, kept nor logged: --resume runs it again.
            if let halt, halt.hides(result) { return }
            try files?.write(result)
            printed(result)
            if files == nil { write(result, tag: style.tags?[result.index], progress: progress) }
            if result.status != .succeeded { failures.append(result) }
        }
        for try await result in results {
            // The halting rule follows the commands as they finish.
            await halt?.observe(result)
            guard style.inOrder else {
                try show(result)
                continue
            }
            pending[result.index] = result
            while let ready = pending.removeValue(forKey: next) {
                try show(ready)
                next += 1
            }
        }
        progress.finish()
        return failures.sorted { $0.index < $1.index }
    }

    private static func write(_ result: TaskResult, tag: String?, progress: ProgressBar) {
        if !result.output.isEmpty { FileHandle.standardOutput.write(tagged(result.output, tag)) }
        if !result.errorOutput.isEmpty {
            progress.clear()
            FileHandle.standardError.write(tagged(result.errorOutput, tag))
        }
    }

    /// `output` with `tag` and a tab before each of its lines.
    static func tagged(_ output: Data, _ tag: String?) -> Data {
        guard let tag else { return output }
        var tagged = Data()
        let prefix = Data((tag + "\t").utf8)
        for line in output.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast(output.last == UInt8(ascii: "\n") ? 1 : 0) {
            tagged += prefix + line + Data([UInt8(ascii: "\n")])
        }
        if output.last != UInt8(ascii: "\n") { tagged.removeLast() }
        return tagged
    }

    /// Prints a summary of the failures and exits with their number (at most 101), as GNU parallel does.
    /// - Parameter describe: Names the task with this index for the summary.
    /// - Parameter status: The exit status instead of the failures' number (`--halt`'s).
    static func finish(failures: [TaskResult], total: Int, status: Int32? = nil, describe: (Int) -> String) throws {
        guard !failures.isEmpty else {
            if let status, status != 0 { throw ExitCode(status) }
            return
        }
        var summary = "dockerparallel: \(failures.count) of \(total) tasks failed:\n"
        for result in failures.prefix(20) {
            let error = result.error ?? "failed"
            let last = result.lastErrorLines(1)
            let detail = last.isEmpty || error.contains(last) ? "" : " (stderr: \(last))"
            summary += "  #\(result.index + 1) (\(describe(result.index))): \(error)\(detail)\n"
        }
        if failures.count > 20 { summary += "  … and \(failures.count - 20) more\n" }
        FileHandle.standardError.write(Data(summary.utf8))
        throw ExitCode(status ?? Int32(min(failures.count, 101)))
    }
}

/// `--results DIR`: each command's standard output, standard error and number in files, in GNU
/// parallel's layout: `DIR/1/VALUE/2/VALUE…/{stdout,stderr,seq}`, a pair of folders per input
/// column (`/` in a value spelled `\_`).
struct ResultFiles: Sendable {
    let folder: String
    let job: CommandJob

    init(folder: String, job: CommandJob) throws {
        guard !folder.contains("{") else {
            throw ValidationError("--results takes a folder; a file name made of replacement strings is not supported")
        }
        self.init(folder: folder, commands: job)
    }

    /// The files of these commands, numbered by their place in `commands`.
    init(folder: String, commands: CommandJob) {
        self.folder = folder
        self.job = commands
    }

    func folder(of index: Int) -> String {
        var path = folder
        for record in job.records[index] {
            for (column, value) in record.enumerated() {
                let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\t", with: "\\t")
                    .replacingOccurrences(of: "\0", with: "\\0").replacingOccurrences(of: "/", with: "\\_")
                path += "/\(column + 1)/\(escaped)"
            }
        }
        return path
    }

    func write(_ result: TaskResult) throws {
        let path = folder(of: result.index)
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw CLIError("cannot write --results to '\(path)': \(error.localizedDescription)")
        }
        let files = ["seq": Data(String(job.numbers[result.index]).utf8), "stdout": result.output, "stderr": result.errorOutput]
        for (name, contents) in files {
            guard FileManager.default.createFile(atPath: path + "/" + name, contents: contents) else {
                throw CLIError("cannot write --results to '\(path)/\(name)'")
            }
        }
    }
}

/// Follows a job's commands as they finish and halts it as `--halt` says: cancels every
/// unfinished command (`now`), or those not yet started (`soon`).
final class HaltTracker: @unchecked Sendable {
    let policy: HaltPolicy
    let total: Int
    /// Cancels the job's unfinished commands: all, or (`false`) only those not yet running.
    let cancel: @Sendable (_ running: Bool) async -> Void
    private var failed = 0
    private var finished = 0
    /// The exit status once the job halted.
    private(set) var exitStatus: Int32?
    private var haltedAfter: Int?
    /// Commands that finished after the halt (`now` leaves them out).
    private var late: Set<Int> = []

    init(policy: HaltPolicy, total: Int, cancel: @escaping @Sendable (_ running: Bool) async -> Void) {
        self.policy = policy
        self.total = total
        self.cancel = cancel
    }

    func observe(_ result: TaskResult) async {
        guard exitStatus == nil else {
            late.insert(result.index)
            return
        }
        finished += 1
        let didFail = result.status != .succeeded
        if didFail { failed += 1 }
        let own: Int32 = result.exitCode ?? (didFail ? 128 + JobLog.exit(of: result).1 : 0)
        guard let status = policy.exitStatus(
            failed: failed, finished: finished, total: total, lastFailed: didFail, lastExitStatus: own == 0 && didFail ? 1 : own)
        else { return }
        exitStatus = status
        haltedAfter = result.index
        let verb = didFail ? "failed" : "finished"
        let next = policy.when == .now ? "killing the commands still running" : "starting no more commands"
        FileHandle.standardError.write(Data("dockerparallel: command #\(result.index + 1) \(verb): --halt \(policy.when.rawValue), \(next)\n".utf8))
        await cancel(policy.when == .now)
    }

    /// Whether a result is left out of the output: a command the halt cancelled, and with
    /// `now`, any that finished after the halt (as GNU parallel kills them).
    func hides(_ result: TaskResult) -> Bool {
        guard haltedAfter != nil else { return false }
        return result.status == .cancelled || (policy.when == .now && late.contains(result.index))
    }
}
