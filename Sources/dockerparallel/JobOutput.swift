import ArgumentParser
import DockerParallel
import Foundation

/// Printing a job's results the way GNU parallel does: in input order, failures summarised.
enum JobOutput {
    /// Prints each result's output (and its standard error) in index order as soon as every
    /// earlier one has been printed.
    /// - Returns: The results that did not succeed.
    static func printInOrder(_ results: AsyncThrowingStream<TaskResult, any Error>, progress: ProgressBar) async throws -> [TaskResult] {
        var pending: [Int: TaskResult] = [:]
        var next = 0
        var failures: [TaskResult] = []
        for try await result in results {
            pending[result.index] = result
            while let ready = pending.removeValue(forKey: next) {
                if !ready.output.isEmpty { FileHandle.standardOutput.write(ready.output) }
                if !ready.errorOutput.isEmpty {
                    progress.clear()
                    FileHandle.standardError.write(ready.errorOutput)
                }
                if ready.status != .succeeded { failures.append(ready) }
                next += 1
            }
        }
        progress.finish()
        return failures
    }

    /// Prints a summary of the failures and exits with their number (at most 101), as GNU parallel does.
    /// - Parameter describe: Names the task with this index for the summary.
    static func finish(failures: [TaskResult], total: Int, describe: (Int) -> String) throws {
        guard !failures.isEmpty else { return }
        var summary = "dockerparallel: \(failures.count) of \(total) tasks failed:\n"
        for result in failures.prefix(20) {
            let error = result.error ?? "failed"
            let last = result.lastErrorLines(1)
            let detail = last.isEmpty || error.contains(last) ? "" : " (stderr: \(last))"
            summary += "  #\(result.index + 1) (\(describe(result.index))): \(error)\(detail)\n"
        }
        if failures.count > 20 { summary += "  … and \(failures.count - 20) more\n" }
        FileHandle.standardError.write(Data(summary.utf8))
        throw ExitCode(Int32(min(failures.count, 101)))
    }
}
