#if canImport(Glibc)
import Glibc
#endif
import DockerParallelTestKit
import Foundation
import Testing

/// Whether the Docker CLI tests run: a daemon at DOCKER_HOST, or one required by `.ci/run`.
enum DockerCLI {
    static let environment = ProcessInfo.processInfo.environment
    static let required = environment["DOCKERPARALLEL_REQUIRE_DOCKER"] == "1"
    static let socket: String = {
        let host = environment["DOCKER_HOST"] ?? "unix:///var/run/docker.sock"
        return host.hasPrefix("unix://") ? String(host.dropFirst("unix://".count)) : host
    }()
    static let enabled = required || FileManager.default.fileExists(atPath: socket)
    static let image = "dockerparallel-test/cli-e2e:latest"

    /// The docker CLI, for checks only.
    static func docker(_ arguments: [String]) throws -> String {
        try programOutput("/usr/bin/docker", arguments)
    }

    static func containers(of queue: String) throws -> [Substring] {
        try docker(["ps", "-aq", "--filter", "label=dockerparallel.queue=\(queue)"]).split(separator: "\n")
    }

    static func volumes(of queue: String) throws -> [Substring] {
        try docker(["volume", "ls", "-q", "--filter", "name=dockerparallel-\(queue)-store"]).split(separator: "\n")
    }
}

/// The README's Docker commands, end to end, against a real daemon.
@Suite(.serialized, .timeLimit(.minutes(5)), .enabled(if: DockerCLI.enabled, "no Docker daemon: set DOCKER_HOST"))
struct DockerCLITests {
    let cli: CLI

    init() async throws {
        cli = try CLI()
        let build = try await cli.run(["image", "build", "--tag", DockerCLI.image, "--add", "/bin/sleep"])
        #expect(build.status == 0, "\(build.errorOutput)")
        #expect(build.output == "\(DockerCLI.image)\n")
    }

    @Test func runOnDockerPrintsEverySquareInOrderAndLeavesNothing() async throws {
        defer { cli.tearDown() }
        let run = try await cli.run(
            ["run", "--provider", "docker", "--image", DockerCLI.image, "-j", "4", "--stats", "-q", "--", "sh", "-c", "echo $(( {} * {} ))", ":::"]
                + (1...100).map(String.init))
        #expect(run.status == 0, "\(run.errorOutput)")
        #expect(run.output == (1...100).map { "\($0 * $0)\n" }.joined())
        #expect(run.errorOutput.contains("100 tasks on 4 docker workers"))
        // The ephemeral cluster is called run-<pid>: none may be left, nor its store's volume.
        let queues = try DockerCLI.docker(["ps", "-a", "--format", "{{.Label \"dockerparallel.queue\"}}"]).split(separator: "\n")
        #expect(!queues.contains { $0.hasPrefix("run-") }, "containers left behind: \(queues)")
        #expect(try DockerCLI.docker(["volume", "ls", "-q", "--filter", "name=dockerparallel-run-"]).isEmpty, "volumes left behind")
    }

    @Test func aNamedClusterOnDockerUpSubmitResultsDown() async throws {
        defer { cli.tearDown() }
        let docker = ["--provider", "docker", "--image", DockerCLI.image]
        let up = try await cli.run(["up", "--name", "cli-docker", "--port", "0", "--workers", "3", "--slots-per-container", "2"] + docker)
        #expect(up.status == 0, "\(up.errorOutput)")
        // Three worker slots, two per container: two worker containers and the server.
        #expect(try DockerCLI.containers(of: "cli-docker").count == 3)
        try await waitUntil("three worker slots connect") {
            try await cli.run(["status", "--name", "cli-docker"] + docker).output.contains("3 slot(s)")
        }
        let status = try await cli.run(["status", "--name", "cli-docker"] + docker)
        #expect(status.output.contains("Worker number:  3 / 3 / 0"), "\(status.output)")

        let submit = try await cli.run(["submit", "--name", "cli-docker", "--job", "squares"] + docker + ["-q", "--", "sh", "-c", "echo $(( {} * 2 ))", ":::", "1", "2", "3"])
        #expect(submit.status == 0, "\(submit.errorOutput)")
        let results = try await cli.run(["results", "--name", "cli-docker", "--job", "squares"] + docker)
        #expect(results.output == "2\n4\n6\n", "\(results.errorOutput)")
        let list = try await cli.run(["list"] + docker)
        #expect(list.output.contains("cli-docker\trunning"))

        let down = try await cli.run(["down", "--name", "cli-docker"] + docker)
        #expect(down.status == 0, "\(down.errorOutput)")
        #expect(try DockerCLI.containers(of: "cli-docker").isEmpty)
        #expect(try DockerCLI.volumes(of: "cli-docker").isEmpty)
    }

    /// A client killed with SIGKILL leaves containers that `down` removes.
    @Test func aCrashedClientLeavesNothingThatDownCannotRemove() async throws {
        defer { cli.tearDown() }
        let (process, _, _) = try cli.start(
            ["run", "--provider", "docker", "--image", DockerCLI.image, "-j", "2", "-q", "--", "sh", "-c", "sleep 0.5; echo {}", ":::"]
                + (1...40).map(String.init))
        let queue = "run-\(process.processIdentifier)"
        try await waitUntil("the run's workers start", timeout: 60) { try DockerCLI.containers(of: queue).count == 3 }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let list = try await cli.run(["list", "--provider", "docker"])
        #expect(list.output.contains("\(queue)\trunning"))
        let down = try await cli.run(["down", "--provider", "docker", "--name", queue])
        #expect(down.status == 0, "\(down.errorOutput)")
        #expect(try DockerCLI.containers(of: queue).isEmpty)
        #expect(try DockerCLI.volumes(of: queue).isEmpty)
    }
}
