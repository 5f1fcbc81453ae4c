import DockerParallelCore
import DockerParallelWire
import Foundation

/// Runs one assignment, command, persistent process's task or Swift task, and reports how it went. Never throws.
struct AttemptRunner: Sendable {
    let registry: TaskRegistry
    let processes: ProcessPool

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
        case .process(let argv, let environment):
            return await processes.run(assignment, key: ProcessPool.Key(argv: argv, environment: environment))
        case .swift(let name):
            guard let runner = registry.runner(named: name) else { return unknown(name) }
            let input = assignment.task.input
            return await runSwift(timeout: assignment.timeout) { try await runner(input) }
        case .swiftChunk(let name):
            guard let runner = registry.runner(named: name) else { return unknown(name) }
            let chunk = assignment.task.input
            return await runSwift(timeout: assignment.timeout) {
                let inputs = try TaskChunk.unpack(chunk)
                var outputs: [Data] = []
                outputs.reserveCapacity(inputs.count)
                for (position, input) in inputs.enumerated() {
                    do {
                        outputs.append(try await runner(input))
                    } catch let error as DockerParallelError {
                        throw DockerParallelError(error.code, "input \(position + 1) of \(inputs.count) in the chunk: \(error.message)")
                    } catch {
                        throw ChunkItemFailure(position: position, count: inputs.count, error: error)
                    }
                }
                return TaskChunk.pack(outputs)
            }
        }
    }

    private func unknown(_ name: String) -> AttemptReport {
        let known = registry.names.isEmpty ? "none" : registry.names.joined(separator: ", ")
        let message = "unknown task '\(name)': this worker registers \(known). Register the task in the worker executable's TaskRegistry."
        return AttemptReport(succeeded: false, permanent: true, error: message)
    }

    /// One input of a chunk threw: the chunk fails, naming the input.
    private struct ChunkItemFailure: Error, CustomStringConvertible {
        var position: Int
        var count: Int
        var error: any Error
        var description: String { "input \(position + 1) of \(count) in the chunk: \(error)" }
    }

    private func runSwift(timeout: Double?, _ work: @escaping @Sendable () async throws -> Data) async -> AttemptReport {
        do {
            let output: Data
            if let timeout {
                output = try await withThrowingTaskGroup(of: Data?.self) { group in
                    group.addTask { try await work() }
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
                output = try await work()
            }
            return AttemptReport(succeeded: true, output: output)
        } catch let error as DockerParallelError where error.code == .codingFailed {
            return AttemptReport(succeeded: false, permanent: true, error: error.message)
        } catch {
            return AttemptReport(succeeded: false, error: "\(error)")
        }
    }
}
