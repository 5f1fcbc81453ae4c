#if canImport(Glibc)
import Glibc
#endif
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// A worker that runs out of file descriptors or memory mid-job fails that task with the reason,
/// stays connected, and runs the next tasks.
@Suite(.serialized, .timeLimit(.minutes(2))) struct ResourceFaultTests {
    /// A one-worker local cluster of the squares example (Swift tasks and commands alike), with
    /// the worker's process id.
    func withOneWorker(_ body: @Sendable (DockerCluster, _ workerPID: Int32) async throws -> Void) async throws {
        try await withStateDirectory { state in
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.squaresExample),
                configuration: ClusterConfiguration(jobQueueName: "resources", expectedWorkerNumber: 1, serverPort: 0),
                verbosity: 0)
            try await cluster.withStarted { cluster in
                let folder = "\(state)/resources/workers"
                let pid = try await waitUntil("the worker is connected") { () -> Int32? in
                    guard try await cluster.serverReport().workers.count == 1,
                          let file = try FileManager.default.contentsOfDirectory(atPath: folder).first(where: { $0.hasSuffix(".pid") })
                    else { return nil }
                    return (try String(contentsOfFile: "\(folder)/\(file)", encoding: .utf8)).split(separator: " ").first.flatMap { Int32($0) }
                }
                try await body(cluster, pid)
            }
        }
    }

    /// The names of the workers that ran a job's attempts.
    func workers(of job: JobID, in cluster: DockerCluster) async throws -> Set<String> {
        Set(try await cluster.attemptLog(jobID: job).map(\.worker))
    }

    /// The worker's open-file limit is lowered until two descriptors are left: its commands fail
    /// with the reason and the fix, the worker stays connected and runs Swift tasks, and once the
    /// limit is raised again the failed tasks run again and succeed on the same worker.
    @Test func aWorkerOutOfFileDescriptorsFailsTheTaskWithTheReasonAndGoesOn() async throws {
        try await withOneWorker { cluster, pid in
            let warm = try await cluster.submitCommands(try CommandTemplate(["echo", "{}"]), inputs: ["warm"])
            #expect(try await warm.outputs().map(\.output) == [Data("warm\n".utf8)])
            let worker = try #require(try await workers(of: warm.id, in: cluster).first)

            // The idle worker's descriptors, once the warm task's pipes are closed (the same set
            // twice in a row: on a loaded machine they close a while after its result came), and
            // a limit that leaves it two more.
            // Descriptors open for a moment when they are counted (on a loaded machine) would
            // leave more room once closed: the limit is set again until, counted twice in a row,
            // exactly two are left.
            var previous: [Int] = []
            var limit = 0
            try await waitUntil("the worker's descriptors settle with two left", timeout: 30, interval: 0.1) { () -> Bool in
                let current = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap { Int($0) }.sorted()
                defer { previous = current }
                guard current == previous, let highest = current.max() else { return false }
                let holes = highest + 1 - current.count
                let lowered = highest + 1 + max(0, 2 - holes)
                if lowered == limit { return true }
                try setOpenFileLimit(of: pid, to: lowered)
                limit = lowered
                return false
            }

            let job = try await cluster.submitCommands(
                try CommandTemplate(["echo", "{}"]), inputs: ["1", "2", "3"], options: JobOptions(maxAttempts: 1))
            var failed: [Int: TaskResult] = [:]
            for try await result in try await job.results() { failed[result.index] = result }
            #expect(failed.count == 3)
            for result in failed.values {
                #expect(result.status == .failed)
                let error = result.error ?? ""
                #expect(error.contains("could not start: too many open files (EMFILE)"), "\(error)")
                #expect(error.contains("raise the worker's open-file limit"), "\(error)")
            }
            let status = try await job.status()
            #expect((status.succeeded, status.failed) == (0, 3))

            // The same worker process is still there, connected, and runs the next tasks.
            #expect(!isZombie(pid), "the worker process \(pid) died")
            #expect(try await cluster.serverReport().workers.map(\.name) == [worker])
            let squares = try await cluster.submit(Array(0..<200), using: Square.self)
            #expect(try await squares.outputs() == (0..<200).map { $0 * $0 })
            #expect(try await workers(of: squares.id, in: cluster) == [worker])

            // The user does what the error says; the failed tasks run again, on the same worker.
            try setOpenFileLimit(of: pid, to: 1024)
            try await job.retryFailed()
            let retried = try await job.outputs()
            #expect(retried.map { String(decoding: $0.output, as: UTF8.self) } == ["1\n", "2\n", "3\n"])
            #expect(try await workers(of: job.id, in: cluster) == [worker])
            #expect(!isZombie(pid))
        }
    }

    /// A command the kernel's out-of-memory killer ends (in a memory cgroup of 64 MB where the
    /// test may make one; elsewhere a command that kills itself with SIGKILL): the task fails
    /// naming the signal and the likely cause, and the worker runs the next tasks.
    @Test func aCommandKilledForMemoryFailsWithTheReasonAndTheWorkerGoesOn() async throws {
        let cgroup = MemoryCgroup(limit: 64 << 20)
        defer { cgroup?.remove() }
        let command = cgroup.map { ["sh", "-c", "echo $$ > \($0.path)/cgroup.procs && exec tail -n 1 /dev/zero", "{}"] }
            ?? ["sh", "-c", "kill -9 $$", "{}"]
        try await withOneWorker { cluster, pid in
            let job = try await cluster.submitCommands(try CommandTemplate(command), inputs: ["hog"])
            var results: [TaskResult] = []
            for try await result in try await job.results() { results.append(result) }
            let result = try #require(results.first)
            #expect(results.count == 1)
            #expect(result.status == .failed)
            let error = result.error ?? ""
            #expect(error.contains("killed by signal 9 (SIGKILL), as the kernel's out-of-memory killer does"), "\(error)")
            #expect(error.contains("give the worker more memory"), "\(error)")
            if let cgroup { #expect(cgroup.oomKills == 1, "the kernel killed no process for memory") }
            let worker = try #require(try await workers(of: job.id, in: cluster).first)

            #expect(!isZombie(pid), "the worker process \(pid) died")
            let next = try await cluster.submitCommands(try CommandTemplate(["echo", "{}"]), inputs: (0..<20).map(String.init))
            #expect(try await next.outputs().map { String(decoding: $0.output, as: UTF8.self) } == (0..<20).map { "\($0)\n" })
            #expect(try await workers(of: next.id, in: cluster) == [worker])
        }
    }
}

/// Sets a running process's soft open-file limit (its hard limit stays) with util-linux's
/// `prlimit`: Swift does not import glibc's `prlimit`, a GNU extension.
func setOpenFileLimit(of pid: Int32, to limit: Int) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
    process.arguments = ["--pid", "\(pid)", "--nofile=\(limit):"]
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw DockerParallelError(.invalidArgument, "prlimit could not set process \(pid)'s open-file limit to \(limit)")
    }
}

/// A cgroup (v1) memory controller group of the test's own, when this process may make one.
struct MemoryCgroup {
    let path: String

    init?(limit: Int) {
        let root = "/sys/fs/cgroup/memory"
        path = "\(root)/dockerparallel-test-\(UUID().uuidString.prefix(8))"
        guard FileManager.default.fileExists(atPath: "\(root)/memory.limit_in_bytes"),
              (try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)) != nil
        else { return nil }
        guard (try? "\(limit)".write(toFile: "\(path)/memory.limit_in_bytes", atomically: false, encoding: .utf8)) != nil else {
            remove()
            return nil
        }
    }

    /// The processes the kernel killed in the group for want of memory.
    var oomKills: Int? {
        let control = (try? String(contentsOfFile: "\(path)/memory.oom_control", encoding: .utf8)) ?? ""
        return control.split(separator: "\n").first { $0.hasPrefix("oom_kill ") }.flatMap { Int($0.split(separator: " ")[1]) }
    }

    /// Removes the group (its processes have ended).
    func remove() {
        rmdir(path)
    }
}
