#if canImport(Glibc)
import Glibc
#endif
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// Whether the partition tests can run: they make network namespaces, which needs root and
/// iproute2. Without them the tests are skipped, unless `DOCKERPARALLEL_REQUIRE_NETNS=1` (as
/// `.ci/run` sets), which makes that a failure.
enum PartitionTesting {
    static let required = ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_NETNS"] == "1"
    static let enabled = NetworkNamespace.unavailableReason == nil || required
    /// Seconds a lease lasts on the tests' servers: short, so that a cut-off worker loses its leases soon.
    static let leaseSeconds = 2
}

/// Peers cut off from the server by a network partition: a worker or a client in a network
/// namespace of its own, whose link to this machine goes down and comes back.
@Suite(
    .serialized, .timeLimit(.minutes(2)),
    .enabled(if: PartitionTesting.enabled, "needs root and iproute2 for network namespaces (set DOCKERPARALLEL_REQUIRE_NETNS=1 to fail instead)"))
struct PartitionTests {
    /// A worker cut off while it runs two tasks loses their leases; they run again on the other
    /// worker, whose results are the ones kept; once the link is back, the cut-off worker's own
    /// reports of them are recorded as late, and it takes tasks again.
    @Test func aCutOffWorkerLosesItsLeasesAndRejoins() async throws {
        try await withPartitionedCluster(name: "cutworker", workers: 0) { cluster, namespace, state in
            let port = try #require(await cluster.runtime.serverEndpoints?.publicEndpoint?.port)
            let password = await cluster.configuration.serverPassword.value
            // Off loopback the server speaks TLS: the worker trusts the cluster's own authority.
            let authority = try #require(await cluster.configuration.transportSecurity.certificateAuthority)
            let cutOff = try namespace.process(Binaries.dockerparallel, [])
            cutOff.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DOCKERPARALLEL_") }.merging([
                "DOCKERPARALLEL_ROLE": "worker", "DOCKERPARALLEL_PASSWORD": password,
                "DOCKERPARALLEL_HOST": namespace.hostAddress, "DOCKERPARALLEL_PORT": String(port),
                "DOCKERPARALLEL_WORKER_NAME": "cut-off", "DOCKERPARALLEL_SLOTS": "2",
                "DOCKERPARALLEL_OWNER_PID": String(getpid()),
                "DOCKERPARALLEL_TLS": "1", "DOCKERPARALLEL_TLS_CA": authority,
            ]) { $1 }
            let log = "\(state)/cut-off.log"
            cutOff.standardOutput = FileHandle.nullDevice
            cutOff.standardError = try newFile(log)
            try cutOff.run()
            defer {
                kill(cutOff.processIdentifier, SIGKILL)
                cutOff.waitUntilExit()
            }
            try await waitUntil("the worker in the namespace connects over its link") {
                try await cluster.serverReport().workers.contains { $0.name == "cut-off" }
            }

            // Two tasks that each print the name of the worker that ran them, both on the only
            // worker there is: the one in the namespace. They wait for a gate that opens once both
            // run again on the other side of the cut, so that however slow the machine, the
            // cut-off worker cannot finish them before its link is down.
            let gate = "\(state)/gate"
            let names = try CommandTemplate([
                "sh", "-c", "while [ ! -e \(gate) ]; do sleep 0.05; done; echo $DOCKERPARALLEL_WORKER_NAME",
            ])
            let job = try await cluster.submitCommands(names, inputs: ["a", "b"], options: JobOptions(maxAttempts: 5))
            try await waitUntil("the cut-off worker runs both tasks") {
                try await cluster.serverReport().workers.first { $0.name == "cut-off" }?.running == 2
            }
            try namespace.cutLink()

            // Its leases expire, and both tasks run again on a worker on this side of the cut.
            try await cluster.setWorkerNumber(1)
            try await waitUntil("both tasks run again on the other worker", timeout: 25) {
                try await cluster.serverReport().workers.first { $0.name == "cutworker-worker-1" }?.running == 2
            }
            #expect(FileManager.default.createFile(atPath: gate, contents: nil))
            try await waitUntil("both tasks succeed on the other worker", timeout: 25) {
                try await job.status().succeeded == 2
            }
            let results = try await cluster.finishedResults(jobID: job.id)
            #expect(results.map(\.index) == [0, 1])
            for result in results {
                #expect(String(decoding: result.output, as: UTF8.self) == "cutworker-worker-1\n", "task \(result.index): \(result)")
                #expect(result.attempts == 2, "task \(result.index): the cut-off worker was given it again: \(result)")
            }
            let lost = try await job.logs().filter { $0.worker == "cut-off" && $0.outcome == .lost }
            #expect(Set(lost.map(\.index)) == [0, 1], "\(lost)")
            #expect(lost.allSatisfy { $0.error?.contains("lease expired") ?? false }, "\(lost)")

            // The link comes back: the cut-off worker's reports of the tasks it finished arrive
            // after the fact and change nothing but the attempt log.
            try namespace.restoreLink()
            let late = try await waitUntil("the cut-off worker's late reports are in the attempt log", timeout: 25) {
                () async throws -> [AttemptRecord]? in
                let late = try await job.logs().filter { $0.outcome == .late }
                return Set(late.map(\.index)) == [0, 1] ? late : nil
            }
            #expect(late.allSatisfy { $0.error?.contains("already had its result") ?? false }, "\(late)")
            let after = try await cluster.finishedResults(jobID: job.id)
            #expect(after == results, "a late report changed the results")

            // It rejoins: listed as connected and idle, and with the other worker gone it runs the
            // next job.
            try await waitUntil("the cut-off worker is connected and holds no lease", timeout: 25) {
                try await cluster.serverReport().workers.first { $0.name == "cut-off" }?.running == 0
            }
            try await cluster.setWorkerNumber(0)
            try await waitUntil("the other worker has gone") {
                try await cluster.serverReport().workers.map(\.name) == ["cut-off"]
            }
            let quick = try CommandTemplate(["sh", "-c", "echo $DOCKERPARALLEL_WORKER_NAME"])
            let next = try await cluster.submitCommands(quick, inputs: ["c", "d"])
            try await waitUntil("the cut-off worker runs the next job (its log: \(log))", timeout: 25) {
                try await next.status().succeeded == 2
            }
            let outputs = try await cluster.finishedResults(jobID: next.id).map { String(decoding: $0.output, as: UTF8.self) }
            #expect(outputs == ["cut-off\n", "cut-off\n"])
        }
    }

    /// A client running a job from a namespace is cut off after its first outputs, while the
    /// job goes on; once the link is back it prints every output exactly once, in order, and
    /// succeeds.
    @Test func aClientCutOffMidJobPrintsEveryOutputOnce() async throws {
        try await withPartitionedCluster(name: "cutclient", workers: 2) { cluster, namespace, state in
            let count = 24
            let output = "\(state)/run.out"
            let errors = "\(state)/run.err"
            let client = try namespace.process(
                Binaries.dockerparallel,
                ["run", "--cluster", "cutclient", "--no-progress", "-q", "--", "sh", "-c", "sleep 0.25; echo {}", ":::"]
                    + (1...count).map(String.init))
            var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DOCKERPARALLEL_") }
            environment["DOCKERPARALLEL_HOME"] = state
            client.environment = environment
            client.standardInput = FileHandle.nullDevice
            client.standardOutput = try newFile(output)
            client.standardError = try newFile(errors)
            let exited = Locked<Int32?>(nil)
            client.terminationHandler = { process in exited.withLock { $0 = process.terminationStatus } }
            try client.run()
            defer {
                if exited.withLock({ $0 }) == nil { kill(client.processIdentifier, SIGKILL) }
            }
            let printed = { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }
            let lines = { printed().split(separator: "\n").count }

            try await waitUntil("the client prints its first outputs") { lines() >= 3 }
            try namespace.cutLink()
            // The job finishes on this side of the cut, where the client cannot see it.
            try await waitUntil("the job's tasks all succeed", timeout: 25) {
                try await cluster.serverReport().jobs.contains { $0.total == count && $0.succeeded == count }
            }
            #expect(lines() < count, "the client saw every output through a cut link: \(printed())")
            try namespace.restoreLink()

            let status = try await waitUntil("the client exits (its errors: \(errors))", timeout: 40) {
                exited.withLock { $0 }
            }
            #expect(status == 0, "\((try? String(contentsOfFile: errors, encoding: .utf8)) ?? "")")
            #expect(printed() == (1...count).map { "\($0)\n" }.joined())
        }
    }
}

/// Starts a local cluster whose server listens on the host's end of a fresh namespace's link,
/// with short leases and `workers` ordinary workers on this side, and stops it all afterwards.
///
/// Its state folder (also a `DOCKERPARALLEL_HOME`, with the clusters in `clusters/`) is too deep
/// for a unix socket: every peer, in the namespace or not, then dials the server's address, as
/// it would from another machine.
private func withPartitionedCluster(
    name: String, workers: Int, _ body: @Sendable (DockerCluster, NetworkNamespace, String) async throws -> Void
) async throws {
    try await withNetworkNamespace { namespace in
        try await withStateDirectory { folder in
            let state = folder + "/" + String(repeating: "deep/", count: 16)
            try FileManager.default.createDirectory(atPath: state + "clusters", withIntermediateDirectories: true)
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: state + "clusters", host: namespace.hostAddress)),
                workerContainer: LocalProcessContainer(
                    executable: Binaries.dockerparallel,
                    environment: ["DOCKERPARALLEL_LEASE_SECONDS": String(PartitionTesting.leaseSeconds)]),
                configuration: ClusterConfiguration(jobQueueName: name, expectedWorkerNumber: workers, serverPort: 0),
                verbosity: 0)
            try await cluster.withStarted { cluster in
                try await body(cluster, namespace, String(state.dropLast()))
            }
        }
    }
}

/// A new empty file, open for writing: where a process a test starts writes its output.
private func newFile(_ path: String) throws -> FileHandle {
    #expect(FileManager.default.createFile(atPath: path, contents: nil), "cannot create \(path)")
    return try #require(FileHandle(forWritingAtPath: path), "cannot open \(path)")
}
