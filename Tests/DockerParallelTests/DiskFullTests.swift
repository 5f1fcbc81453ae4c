#if canImport(Glibc)
import Glibc
#endif
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// The `dockerparallel` worker's built-in task that returns its input.
struct BuiltinEcho: ParallelTask {
    static let name = "echo"
    static func run(_ input: String) async throws -> String { input }
}

/// A small file system that a test fills up (a tmpfs; root only). Without root the tests are
/// skipped, unless `DOCKERPARALLEL_REQUIRE_MOUNT=1` (as `.ci/run` sets), which makes it a failure.
enum SmallDisk {
    static let required = ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_MOUNT"] == "1"
    static let enabled = getuid() == 0 || required

    /// Mounts a tmpfs of `megabytes` on a new folder, runs `body` with it, and unmounts it.
    static func with<T>(megabytes: Int, _ body: (String) async throws -> T) async throws -> T {
        let folder = NSTemporaryDirectory() + "dp-disk-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", folder])
        defer { try? run("/bin/umount", ["-l", folder]) }
        return try await body(folder)
    }

    /// Fills the file system with one file until it has no byte left.
    static func fill(_ path: String) throws {
        let descriptor = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw POSIXError(.EIO) }
        defer { close(descriptor) }
        let chunk = [UInt8](repeating: 1, count: 1 << 20)
        var size = chunk.count
        while size > 0 {
            let written = chunk.withUnsafeBytes { write(descriptor, $0.baseAddress, size) }
            if written <= 0 { size /= 2 }
        }
    }

    static func run(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw DockerParallelError(.providerFailed, "\(executable) \(arguments.joined(separator: " ")) failed")
        }
    }
}

@Suite(.enabled(if: SmallDisk.enabled, "needs root to mount a small file system"), .timeLimit(.minutes(10)))
struct DiskFullTests {
    /// The server's disk fills up: it refuses new submits with an error that says so, runs the
    /// tasks it took to the end and stores their results, and takes new tasks once there is room.
    @Test func aFullDiskRefusesNewWorkAndLosesNothingAccepted() async throws {
        // One heavy test at a time (HeavyTests): its deadlines need the machine to itself.
        try await HeavyTests.oneAtATime {
            try await SmallDisk.with(megabytes: 48) { disk in
                let cluster = try DockerCluster(
                    provider: LocalProvider(configuration: .init(stateDirectory: disk)),
                    workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                    configuration: ClusterConfiguration(jobQueueName: "full", expectedWorkerNumber: 2, serverPort: 0),
                    verbosity: 0)
                try await cluster.withStarted { cluster in
                    let inputs = { (job: Int, count: Int) in (0..<count).map { "\(job)-\($0)-" + String(repeating: "x", count: 2_000) } }
                    // Taken before the disk fills, and running while it is full (the workers' files
                    // are on the same disk: they start first).
                    let first = try await cluster.submitCommands(
                        try CommandTemplate(["sh", "-c", "sleep 0.02; echo {}"]), inputs: (0..<300).map(String.init))
                    let server = try #require(Self.serverPID("\(disk)/full"))
                    try SmallDisk.fill("\(disk)/filler")

                    // Submits go on until the server refuses one: the one whose write found the disk
                    // full is taken with the reserve's room, the next ones are refused.
                    var accepted: [(handle: JobHandle<String>, inputs: [String])] = []
                    var refusal: DockerParallelError?
                    for job in 1...6 where refusal == nil {
                        let batch = inputs(job, 2_000)
                        do {
                            accepted.append((try await cluster.submit(batch, using: BuiltinEcho.self), batch))
                        } catch let error as DockerParallelError {
                            refusal = error
                        }
                    }
                    let error = try #require(refusal, "no submit was refused on a full disk")
                    #expect(error.code == .storageFull)
                    #expect(error.message.contains("disk is full"), "\(error.message)")
                    #expect(error.message.contains("free space"), "\(error.message)")

                    // What was taken runs to the end, every result stored and shown once.
                    #expect(try await first.outputs().map { String(decoding: $0.output, as: UTF8.self) } == (0..<300).map { "\($0)\n" })
                    for (handle, batch) in accepted { #expect(try await handle.outputs() == batch) }
                    // Still full: still refused, and the server never stopped.
                    await #expect(throws: DockerParallelError.self) { try await cluster.submit(inputs(9, 10), using: BuiltinEcho.self) }
                    #expect(Self.serverPID("\(disk)/full") == server)
                    #expect(kill(server, 0) == 0)

                    // Room again: new work is taken.
                    try FileManager.default.removeItem(atPath: "\(disk)/filler")
                    var later: JobHandle<String>?
                    try await waitUntil("the server takes new tasks again", timeout: 20) {
                        later = try? await cluster.submit(inputs(10, 100), using: BuiltinEcho.self)
                        return later != nil
                    }
                    #expect(try await later?.outputs() == inputs(10, 100))
                    #expect(Self.serverPID("\(disk)/full") == server)
                }
            }
        }
    }

    static func serverPID(_ folder: String) -> Int32? {
        (try? String(contentsOfFile: "\(folder)/server.pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}
