import DockerEngineProvider
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// The chaos test on the Docker provider: `docker kill` of the server container and of worker
/// containers, in rounds, in the middle of a job.
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: DockerTesting.enabled, "no Docker daemon: set DOCKER_HOST"))
struct DockerChaosTests {
    /// The running containers of a cluster in one role.
    static func running(_ role: String, of queue: String) -> [String] {
        let output = (try? DockerTesting.docker([
            "ps", "-q", "--filter", "label=dockerparallel.role=\(role)", "--filter", "label=dockerparallel.queue=\(queue)",
        ])) ?? ""
        return output.split(separator: "\n").map(String.init)
    }

    /// `docker kill`; whether it killed the container (the CLI prints its id only when it did).
    static func dockerKill(_ container: String) -> Bool {
        (try? DockerTesting.docker(["kill", container])) == container
    }

    /// 3,000 commands on three worker containers of two slots, while `supervise` restarts what
    /// dies and the server container and worker containers are killed with `docker kill` in rounds:
    /// the results stream shows each task once, every task ends with exactly one successful
    /// attempt, and nothing is left running.
    @Test func aJobSurvivesDockerKillsOfItsServerAndWorkers() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            let image = try await DockerTesting.images.cli()
            let queue = "chaos-docker"
            let cluster = try DockerCluster(
                provider: try DockerTesting.provider(),
                workerContainer: DockerWorkerContainer(image: image, maxWorkersPerContainer: 2),
                configuration: ClusterConfiguration(jobQueueName: queue, expectedWorkerNumber: 0, serverPort: 0),
                verbosity: 0)
            let started = ContinuousClock.now
            try await cluster.withStarted { cluster in
                let count = 3_000
                // The whole job is queued before the workers start, so that they hold leases when
                // they are killed.
                let job = try await cluster.submitCommands(
                    try CommandTemplate(["sh", "-c", "sleep 0.02; echo {}"]), inputs: (0..<count).map(String.init),
                    options: JobOptions(maxAttempts: 20))
                try await cluster.setWorkerNumber(6)
                var seen: [Int: TaskResult] = [:]
                let kills = Locked<[String]>([])
                let streamEnded = Locked(false)
                let progress = Locked(0)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // What `dockerparallel run` does: restart what died, until the checks are done.
                    group.addTask { await cluster.supervise(every: .milliseconds(200)) }
                    // Six rounds, each after 300 more results: two kill the server container, four
                    // kill two of the three worker containers.
                    group.addTask {
                        // The first round waits until each worker container (one worker of two slots) holds leases.
                        try await waitUntil("the workers run tasks", timeout: 60, interval: 0.01) {
                            try await cluster.serverReport().workers.filter { $0.running > 0 }.count >= 3
                        }
                        var seenAtLastRound = 0
                        for round in 0..<6 {
                            if round > 0 {
                                let since = seenAtLastRound
                                try await waitUntil("300 more results", timeout: 60) {
                                    progress.withLock { $0 } >= since + 300 || streamEnded.withLock { $0 }
                                }
                            }
                            if streamEnded.withLock({ $0 }) { break }
                            seenAtLastRound = progress.withLock { $0 }
                            if round % 3 == 1 {
                                for server in Self.running("server", of: queue) where Self.dockerKill(server) {
                                    kills.withLock { $0.append("server \(server) in round \(round) at \(seenAtLastRound)") }
                                }
                            } else {
                                for worker in Self.running("worker", of: queue).shuffled().prefix(2) where Self.dockerKill(worker) {
                                    kills.withLock { $0.append("worker \(worker) in round \(round) at \(seenAtLastRound)") }
                                }
                            }
                        }
                    }
                    for try await result in try await job.results() {
                        #expect(seen[result.index] == nil, "task \(result.index) has two results")
                        seen[result.index] = result
                        progress.withLock { $0 = seen.count }
                    }
                    streamEnded.withLock { $0 = true }

                    let killed = kills.withLock { $0 }
                    #expect(seen.count == count)
                    #expect(killed.filter { $0.hasPrefix("server") }.count == 2, "\(killed)")
                    #expect(killed.filter { $0.hasPrefix("worker") }.count >= 6, "\(killed)")
                    let wrong = seen.values.filter { $0.status != .succeeded || $0.output != Data("\($0.index)\n".utf8) }
                    #expect(wrong.isEmpty, "\(wrong.count) tasks: \(wrong.prefix(3).map { "\($0.index) \($0.status) \($0.error ?? "")" })")

                    // Every attempt is recorded: each counted attempt has its entry in the log, none is
                    // left running, and each task has exactly one successful attempt.
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
                    #expect(
                        log.values.contains { $0.contains { $0.outcome == .lost } },
                        "the kills lost no attempt: \(killed); outcomes \(Dictionary(grouping: log.values.joined(), by: \.outcome).mapValues(\.count))")
                    let outcomes = Dictionary(grouping: log.values.joined(), by: \.outcome).mapValues(\.count)
                    print("docker chaos: \(count) tasks in \(ContinuousClock.now - started); kills: \(killed); attempts: \(outcomes)")
                    group.cancelAll()
                }
            }
            #expect(try DockerTesting.containers(of: queue).isEmpty, "the cluster left containers behind")
            DockerTesting.removeVolume(of: queue)
        }
    }
}
