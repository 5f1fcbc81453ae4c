#if canImport(Glibc)
import Glibc
#endif
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

@Suite(.timeLimit(.minutes(10))) struct ChaosTests {
    /// 100,000 Swift tasks while workers and the server are killed with SIGKILL again and again:
    /// every task ends with exactly one successful result. (With 30,000, a loaded machine could
    /// finish the job before the killer's third round.)
    @Test func aHundredThousandTasksSurviveKilledWorkersAndServers() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            try await withStateDirectory { state in
                let cluster = try DockerCluster(
                    provider: LocalProvider(configuration: .init(stateDirectory: state)),
                    workerContainer: LocalProcessContainer(executable: Binaries.squaresExample),
                    configuration: ClusterConfiguration(jobQueueName: "chaos", expectedWorkerNumber: 0, serverPort: 0),
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
                    let count = 100_000
                    // The whole job is queued before the workers start, so that they hold leases
                    // when they are killed: workers keep up with a submit as it is sent.
                    let job = try await cluster.submit(Array(0..<count), using: Square.self, options: JobOptions(maxAttempts: 20))
                    try await cluster.setWorkerNumber(3)
                    var seen: [Int: TaskResult] = [:]
                    let kills = Locked<[String]>([])
                    let streamEnded = Locked(false)
                    let progress = Locked(0)
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        // What `dockerparallel run` does: restart what died. It runs until the checks
                        // below are done, so that a server killed at the end comes back for them.
                        group.addTask { await cluster.supervise(every: .milliseconds(200)) }
                        // Kills in rounds, each after 300 more results: killing everything as fast
                        // as it restarts would only show that nothing can run, and so would killing
                        // until the end. A killed server holds the job up, so the rounds after it
                        // find the job unfinished.
                        group.addTask {
                            var generator = SystemRandomNumberGenerator()
                            // The first round waits until the workers hold leases.
                            try await waitUntil("the workers run tasks", interval: 0.005) {
                                try await cluster.serverReport().workers.filter { $0.running > 0 }.count >= 3
                            }
                            var round = 0
                            var seenAtLastRound = 0
                            // Six rounds: two kill the server, four kill two workers each.
                            while !Task.isCancelled, round < 6 {
                                if round > 0 {
                                    let since = seenAtLastRound
                                    try await waitUntil("300 more results") {
                                        progress.withLock { $0 } >= since + 300 || streamEnded.withLock { $0 }
                                    }
                                }
                                if streamEnded.withLock({ $0 }) { break }
                                seenAtLastRound = progress.withLock { $0 }
                                if round % 3 == 1, let server = pid("\(folder)/server.pid"), !isZombie(server) {
                                    kill(server, SIGKILL)
                                    kills.withLock { $0.append("server \(server) in round \(round)") }
                                } else {
                                    // Live workers only: a killed one stays a zombie until it is reaped.
                                    let live = workerPIDs().filter { !isZombie($0) }
                                    for worker in live.shuffled(using: &generator).prefix(2) where kill(worker, SIGKILL) == 0 {
                                        kills.withLock { $0.append("worker \(worker) in round \(round)") }
                                    }
                                }
                                round += 1
                            }
                        }
                        var results = try await cluster.results(jobID: job.id).makeAsyncIterator()
                        while let result = try await results.next() {
                            #expect(seen[result.index] == nil, "task \(result.index) has two results")
                            seen[result.index] = result
                            progress.withLock { $0 = seen.count }
                        }
                        streamEnded.withLock { $0 = true }

                        let killed = kills.withLock { $0 }
                        #expect(seen.count == count)
                        #expect(killed.contains { $0.hasPrefix("server") }, "\(killed)")
                        #expect(killed.filter { $0.hasPrefix("worker") }.count >= 4, "\(killed)")
                        let failed = seen.values.filter { $0.status != .succeeded }
                        #expect(failed.isEmpty, "\(failed.prefix(3))")
                        let outputs = try await job.outputs()
                        #expect(outputs == (0..<count).map { $0 * $0 })

                        // Every attempt is recorded: each counted attempt has its entry in the log,
                        // none is left running, and each task has exactly one successful attempt.
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
                        #expect(log.values.contains { $0.contains { $0.outcome == .lost } }, "the kills lost no attempt: \(killed); outcomes \(Dictionary(grouping: log.values.joined(), by: \.outcome).mapValues(\.count))")
                        group.cancelAll()
                    }
                }
            }
        }
    }
}

/// A value shared between tasks of a test.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// Whether a process has exited and waits to be reaped, or is gone.
func isZombie(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return true }
    return stat[stat.index(after: close)...].trimmingPrefix(" ").first == "Z"
}
