#if canImport(Glibc)
import Glibc
#endif
import DockerEngineProvider
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// The Docker daemon the Docker tests use: `DOCKER_HOST`, else the default socket.
///
/// Without a daemon the Docker tests are skipped, unless `DOCKERPARALLEL_REQUIRE_DOCKER=1`
/// (as `.ci/run` sets), which makes a missing daemon a failure.
enum DockerTesting {
    static let environment = ProcessInfo.processInfo.environment
    static let required = environment["DOCKERPARALLEL_REQUIRE_DOCKER"] == "1"
    static let host: DockerHost = (try? DockerHost.fromEnvironment()) ?? .defaultSocket

    /// Whether a daemon answers on the host's unix socket (TCP hosts are assumed to be up).
    static let isAvailable: Bool = {
        guard case .unix(let path) = host.address else { return true }
        return DockerEngineClientProbe.answers(path)
    }()

    /// Run the Docker tests when a daemon is there, or when one is required (they then fail).
    static let enabled = isAvailable || required

    static func provider() throws -> DockerEngineProvider {
        try DockerEngineProvider(configuration: .init(host: host, startTimeout: .seconds(60), stopGracePeriod: .seconds(2)))
    }

    /// The test images, built once per test run: the CLI binary, and the squares example.
    static let images = ImageCache()

    actor ImageCache {
        private var built: [String: String] = [:]

        func image(named name: String, executable: String? = nil) async throws -> String {
            if let tag = built[name] { return tag }
            let tag = "dockerparallel-test/\(name):latest"
            let builder = try ImageBuilder(host: DockerTesting.host)
            _ = try await builder.build(.init(
                tag: tag, dockerparallelBinary: Binaries.dockerparallel, executable: executable,
                extraPrograms: ["/bin/sh", "/bin/sleep", "/bin/cat", "/bin/echo"]))
            built[name] = tag
            return tag
        }

        /// A minimal Debian (bookworm) made with debootstrap and imported, in which apt-get works.
        func debian() async throws -> String {
            if let tag = built["debian"] { return tag }
            let tag = "dockerparallel-test/debian:bookworm"
            let folder = NSTemporaryDirectory() + "dp-debian-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let script = """
                set -e
                debootstrap --variant=minbase bookworm "$1" http://deb.debian.org/debian >/dev/null
                tar -C "$1" -c . | docker import - "$2" >/dev/null
                """
            try await DockerTesting.shell(script, arguments: [folder, tag])
            built["debian"] = tag
            return tag
        }

        /// An image holding the `dockerparallel` binary (command tasks, the built-in tasks).
        func cli() async throws -> String { try await image(named: "cli") }

        /// An image whose command is the squares example (its Swift tasks).
        func squares() async throws -> String { try await image(named: "squares", executable: Binaries.squaresExample) }
    }

    /// The containers carrying a cluster's label, in any state.
    static func containers(of queue: String) throws -> [String] {
        let output = try docker(["ps", "-aq", "--filter", "label=\(DockerEngineProvider.Label.queue)=\(queue)"])
        return output.split(separator: "\n").map(String.init)
    }

    /// Removes what a test cluster left on purpose: the volume that keeps its store.
    static func removeVolume(of queue: String) {
        _ = try? docker(["volume", "rm", "-f", "dockerparallel-\(queue)-store"])
    }

    /// Runs a shell script on a thread of its own; throws with its output when it fails.
    static func shell(_ script: String, arguments: [String]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/bin/sh")
                process.arguments = ["-c", script, "sh"] + arguments
                let pipe = Pipe()
                process.standardOutput = pipe
                process.standardError = pipe
                do {
                    try process.run()
                    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                    process.waitUntilExit()
                    if process.terminationStatus == 0 {
                        continuation.resume()
                    } else {
                        continuation.resume(throwing: DockerParallelError(.providerFailed, "the script failed: \(output)"))
                    }
                } catch {
                    continuation.resume(throwing: error)
                }
            }.start()
        }
    }

    /// Runs the docker CLI (for checks only; the provider never does).
    @discardableResult
    static func docker(_ arguments: [String]) throws -> String {
        try programOutput("/usr/bin/docker", arguments)
    }
}

/// Whether a unix socket accepts connections.
enum DockerEngineClientProbe {
    static func answers(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }
}
