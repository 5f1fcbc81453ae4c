#if canImport(Glibc)
import Glibc
#endif
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct ChaosTests {
    /// 10,000 Swift tasks while workers and the server are killed with SIGKILL again and again:
    /// every task ends with exactly one successful result.
    @Test func tenThousandTasksSurviveKilledWorkersAndServers() async throws {
        try await withStateDirectory { state in
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.squaresExample),
                configuration: ClusterConfiguration(jobQueueName: "chaos", expectedWorkerNumber: 3, serverPort: 0),
                verbosity: 0)
            let folder = "\(state)/chaos"
            @Sendable func pid(_ file: String) -> Int32? {
                (try? String(contentsOfFile: file, encoding: .utf8))?.split(separator: " ").first.flatMap { Int32($0) }
            }
            @Sendable func workerPIDs() -> [Int32] {
                ((try? FileManager.default.contentsOfDirectory(atPath: "\(folder)/workers")) ?? [])
                    .filter { $0.hasSuffix(".pid") }.compactMap { pid("\(folder)/workers/\($0)") }
            }

            try await cluster.withStarted { cluster in
                let count = 10_000
                let job = try await cluster.submit(Array(0..<count), using: Square.self, options: JobOptions(maxAttempts: 20))
                var seen: [Int: TaskResult] = [:]
                var kills: [String] = []
                var generator = SystemRandomNumberGenerator()
                var nextKill = Int.random(in: 500...1500, using: &generator)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // What `dockerparallel run` does: restart what died.
                    group.addTask { await cluster.supervise(every: 0.2) }
                    for try await result in try await cluster.results(jobID: job.id) {
                        #expect(seen[result.index] == nil, "task \(result.index) has two results")
                        seen[result.index] = result
                        if seen.count >= nextKill {
                            nextKill = seen.count + Int.random(in: 1000...2000, using: &generator)
                            if kills.count % 3 == 2, let server = pid("\(folder)/server.pid") {
                                kill(server, SIGKILL)
                                kills.append("server \(server) at \(seen.count)")
                            } else {
                                for worker in workerPIDs().shuffled(using: &generator).prefix(2) {
                                    kill(worker, SIGKILL)
                                    kills.append("worker \(worker) at \(seen.count)")
                                }
                            }
                        }
                    }
                    group.cancelAll()
                }
                #expect(seen.count == count)
                #expect(kills.contains { $0.hasPrefix("server") }, "\(kills)")
                #expect(kills.filter { $0.hasPrefix("worker") }.count >= 4, "\(kills)")
                let failed = seen.values.filter { $0.status != .succeeded }
                #expect(failed.isEmpty, "\(failed.prefix(3))")
                let outputs = try await job.outputs()
                #expect(outputs == (0..<count).map { $0 * $0 })

                // Every attempt is recorded: each counted attempt has its entry in the log, none
                // is left running, and each task has exactly one successful attempt.
                let log = Dictionary(grouping: try await cluster.attemptLog(jobID: job.id), by: \.index)
                #expect(log.count == count)
                var mismatched: [String] = []
                for (index, result) in seen {
                    let records = log[index] ?? []
                    let counted = records.filter { $0.attempt > 0 && $0.outcome != .released }
                    let succeeded = records.filter { $0.outcome == .succeeded }
                    if counted.count != result.attempts || succeeded.count != 1 || records.contains(where: { $0.outcome == .running }) {
                        mismatched.append("task \(index), \(result.attempts) attempt(s): \(records.map { "\($0.attempt) \($0.outcome)" })")
                    }
                }
                #expect(mismatched.isEmpty, "\(mismatched.count) tasks: \(mismatched.prefix(3))")
                #expect(log.values.contains { $0.contains { $0.outcome == .lost } }, "the kills lost no attempt")
            }
        }
    }
}
