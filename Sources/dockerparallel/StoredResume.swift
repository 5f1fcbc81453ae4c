import DockerParallel
import DockerParallelCore
import Foundation

/// `--resume` and `--resume-failed` on a named cluster without `--joblog`: the server's store is
/// the log. The job keeps its id (one made from the command, or `--job`) and every command as it
/// ran; a rerun skips each command whose stored result says it need not run again (keyed by
/// what it runs: the command with its inputs), queues the failed ones again with
/// `--resume-failed`, and adds the commands the job does not have yet.
struct StoredResume: Sendable {
    /// The job on the server.
    let jobID: JobID
    /// The positions, in the command list, of the commands this run waits for, in order.
    var positions: [Int] = []
    /// Their indices in the job.
    var indices: [Int] = []
    /// How many tasks the job has now.
    var total = 0
    /// Tasks of the job that had finished before this run and were left as they were.
    var finishedBefore = 0
    var skipped = 0
    var retried = 0
    var added = 0

    /// The job id a command is kept under when no `--job` is given: the same for the same words
    /// run the same way.
    static func defaultJobID(for command: ShellCommandLine) -> JobID {
        // FNV-1a, 64 bits: a stable digest of the words (each command's own words are checked
        // again before anything is skipped).
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in (command.words + [command.isQuoted ? "-q" : "", command.shell]).joined(separator: "\0").utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return JobID("resume-" + String(hash, radix: 16))
    }

    /// Finds what the job has, and submits what must run now.
    /// - Parameter failedToo: Whether commands that failed are skipped too (`--resume`) or
    ///   queued again (`--resume-failed`).
    static func prepare(
        _ commands: CommandJob, on cluster: DockerCluster, jobID: JobID, failedToo: Bool, options: JobOptions
    ) async throws -> StoredResume {
        var plan = StoredResume(jobID: jobID)
        let exists = try await cluster.serverReport().jobs.contains { $0.jobID == jobID }
        let stored = exists ? try await cluster.tasks(jobID: jobID) : []
        let results = exists ? try await cluster.finishedResults(jobID: jobID) : []
        // The stored tasks that run each command, in order: the k-th time a command comes in the
        // list is the k-th such task (`-N0` or a repeated input runs the same command again).
        var indicesOf: [[String]: [Int]] = [:]
        for task in stored.sorted(by: { $0.index < $1.index }) {
            if case .command(let argv, _) = task.kind { indicesOf[argv, default: []].append(task.index) }
        }
        var used: [[String]: Int] = [:]
        let status = Dictionary(results.map { ($0.index, $0.status) }, uniquingKeysWith: { $1 })
        var next = (stored.map(\.index).max() ?? -1) + 1
        var newTasks: [TaskSpec] = []
        var retry: [Int] = []
        for position in commands.arguments.indices {
            let argv = commands.command.argv(arguments: commands.arguments[position], number: commands.numbers[position])
            let occurrence = used[argv, default: 0]
            used[argv] = occurrence + 1
            if let stored = indicesOf[argv], occurrence < stored.count {
                let index = stored[occurrence]
                switch status[index] {
                case .succeeded?:
                    plan.skipped += 1
                    continue
                case .failed?:
                    guard !failedToo else {
                        plan.skipped += 1
                        continue
                    }
                    retry.append(index)
                case .cancelled?:
                    // Cancelled (a halt, a cancel): it did not run to its end; it runs now.
                    retry.append(index)
                case nil:
                    break  // still queued or running: this run waits for it
                }
                plan.positions.append(position)
                plan.indices.append(index)
            } else {
                newTasks += try DockerCluster.commandLineTasks(
                    commands.command, arguments: [commands.arguments[position]], numbers: [commands.numbers[position]], firstIndex: next)
                plan.positions.append(position)
                plan.indices.append(next)
                next += 1
            }
        }
        if !newTasks.isEmpty { try await cluster.submit(newTasks, jobID: jobID, options: options) }
        if !retry.isEmpty { _ = try await cluster.retryFailed(jobID: jobID, indices: retry) }
        plan.total = next
        plan.finishedBefore = results.count - retry.count
        plan.retried = retry.count
        plan.added = newTasks.count
        return plan
    }

    /// One line for standard error: what was skipped, queued again and added.
    var summary: String {
        "dockerparallel: job \(jobID): \(skipped) command(s) already done, \(retried) failed or cancelled one(s) queued again, \(added) new\n"
    }
}
