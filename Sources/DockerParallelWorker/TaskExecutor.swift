import DockerParallelCore
import Foundation

/// Runs one assignment, command or Swift task, and reports how it went. Never throws.
struct TaskExecutor: Sendable {
    let registry: TaskRegistry

    func run(_ assignment: Assignment) async -> AttemptReport {
        switch assignment.task.kind {
        case .command(let argv, let environment):
            guard !argv.isEmpty, !argv[0].isEmpty else {
                return AttemptReport(succeeded: false, permanent: true, error: "the task has an empty command")
            }
            var environment = environment
            environment["DOCKERPARALLEL_JOB_ID"] = assignment.jobID
            environment["DOCKERPARALLEL_TASK_INDEX"] = String(assignment.task.index)
            environment["DOCKERPARALLEL_ATTEMPT"] = String(assignment.attempt)
            return await CommandRunner.run(argv: argv, environment: environment, timeout: assignment.timeout)
        case .swift(let name):
            guard let runner = registry.runner(named: name) else {
                let known = registry.names.isEmpty ? "none" : registry.names.joined(separator: ", ")
                let message = "unknown task '\(name)': this worker registers \(known). Register the task in the worker executable's TaskRegistry."
                return AttemptReport(succeeded: false, permanent: true, error: message)
            }
            return await runSwift(runner, input: assignment.task.input, timeout: assignment.timeout)
        }
    }

    private func runSwift(_ runner: @escaping TaskRegistry.Runner, input: Data, timeout: Double?) async -> AttemptReport {
        do {
            let output: Data
            if let timeout {
                output = try await withThrowingTaskGroup(of: Data?.self) { group in
                    group.addTask { try await runner(input) }
                    group.addTask {
                        try await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                        return nil
                    }
                    defer { group.cancelAll() }
                    guard let first = try await group.next(), let output = first else {
                        throw DockerParallelError(.timedOut, "timed out after \(timeout) s")
                    }
                    return output
                }
            } else {
                output = try await runner(input)
            }
            return AttemptReport(succeeded: true, output: output)
        } catch let error as DockerParallelError where error.code == .codingFailed {
            return AttemptReport(succeeded: false, permanent: true, error: error.message)
        } catch {
            return AttemptReport(succeeded: false, error: "\(error)")
        }
    }
}
