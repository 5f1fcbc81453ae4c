import DockerParallelTestKit
import Foundation
import Testing

/// Whether the Swarm CLI tests run: DOCKER_HOST's daemon is a swarm manager, or one is required
/// by `.ci/run` (`DOCKERPARALLEL_REQUIRE_SWARM=1`), which makes a missing swarm a failure.
enum SwarmCLI {
    static let required = ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_SWARM"] == "1"
    static let isAvailable: Bool = {
        let state = try? DockerCLI.docker(["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"])
        return state?.trimmingCharacters(in: .whitespacesAndNewlines) == "active true"
    }()
    static let enabled = required || isAvailable
    static let image = "dockerparallel-test/cli-swarm:latest"

    /// What a cluster left on the swarm: services, secrets, the store's volume.
    static func leftovers(ofQueuesStartingWith prefix: String) throws -> [String] {
        let services = try DockerCLI.docker(["service", "ls", "--format", "{{.Name}}"]).split(separator: "\n")
            .filter { $0.hasPrefix("dockerparallel-\(prefix)") }
        let secrets = try DockerCLI.docker(["secret", "ls", "--format", "{{.Name}}"]).split(separator: "\n")
            .filter { $0.hasPrefix("dockerparallel-\(prefix)") }
        let volumes = try DockerCLI.docker(["volume", "ls", "-q", "--filter", "name=dockerparallel-swarm-\(prefix)"]).split(separator: "\n")
        return (services + secrets + volumes).map(String.init)
    }
}

/// The README's Swarm commands, end to end, against a real swarm.
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: SwarmCLI.enabled, "no swarm: `docker swarm init` on DOCKER_HOST's daemon"))
struct SwarmCLITests {
    let cli: CLI

    init() async throws {
        #expect(SwarmCLI.isAvailable, "DOCKER_HOST's daemon is not a swarm manager")
        cli = try CLI()
        let build = try await cli.run(["image", "build", "--tag", SwarmCLI.image, "--add", "/bin/sleep"])
        #expect(build.status == 0, "\(build.errorOutput)")
    }

    @Test func runOnSwarmPrintsEverySquareInOrderAndLeavesNothing() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            defer { cli.tearDown() }
            let run = try await cli.run(
                ["run", "--provider", "swarm", "--image", SwarmCLI.image, "-j", "4", "--stats", "-q", "--", "sh", "-c", "echo $(( {} * {} ))", ":::"]
                    + (1...200).map(String.init))
            #expect(run.status == 0, "\(run.errorOutput)")
            #expect(run.output == (1...200).map { "\($0 * $0)\n" }.joined())
            #expect(run.errorOutput.contains("200 tasks on 4 swarm workers"), "\(run.errorOutput)")
            // The ephemeral cluster is called run-<pid>: nothing of it may be left.
            #expect(try SwarmCLI.leftovers(ofQueuesStartingWith: "run-").isEmpty, "left behind")
        }
    }

    @Test func aNamedClusterOnSwarmUpStatusScaleSubmitResultsDown() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            defer { cli.tearDown() }
            let swarm = ["--provider", "swarm", "--image", SwarmCLI.image]
            let up = try await cli.run(["up", "--name", "cli-swarm", "--port", "0", "--workers", "3", "--slots-per-container", "2"] + swarm)
            #expect(up.status == 0, "\(up.errorOutput)")
            // Three slots, two per task: a 2-slot service and a 1-slot one, besides the server's.
            let services = try DockerCLI.docker(["service", "ls", "--filter", "label=dockerparallel.queue=cli-swarm", "--format", "{{.Name}}"])
            #expect(services.split(separator: "\n").sorted() == [
                "dockerparallel-cli-swarm-server", "dockerparallel-cli-swarm-worker-1", "dockerparallel-cli-swarm-worker-2",
            ])
            // The password is a secret: in no service's environment or labels.
            let inspect = try DockerCLI.docker(["service", "inspect", "dockerparallel-cli-swarm-server", "dockerparallel-cli-swarm-worker-2"])
            #expect(!inspect.contains("DOCKERPARALLEL_PASSWORD="))
            #expect(inspect.contains("DOCKERPARALLEL_PASSWORD_FILE=/run/secrets/dockerparallel-cli-swarm-password-"))
            // Read where it is mounted, it is in neither the static data on the label nor the container's environment.
            let server = try DockerCLI.docker([
                "ps", "-q", "--filter", "label=dockerparallel.swarm.queue=cli-swarm", "--filter", "label=dockerparallel.swarm.role=server",
            ]).trimmingCharacters(in: .whitespacesAndNewlines)
            let password = try DockerCLI.docker([
                "exec", server, "sh", "-c", "for f in /run/secrets/dockerparallel-cli-swarm-password-*; do read -r p < \"$f\"; printf %s \"$p\"; done",
            ])
            #expect(password.count == 26, "the secret holds \(password.count) characters")
            let label = try DockerCLI.docker(["service", "inspect", "-f", "{{index .Spec.Labels \"dockerparallel.static-data\"}}", "dockerparallel-cli-swarm-server"])
            let staticData = String(decoding: Data(base64Encoded: label.trimmingCharacters(in: .whitespacesAndNewlines)) ?? Data(), as: UTF8.self)
            #expect(staticData.contains("cli-swarm"), "the label holds no static data: \(label)")
            #expect(!staticData.contains(password), "the password is in the server service's label")
            #expect(!(try DockerCLI.docker(["inspect", server])).contains(password), "the password is in the server container's settings")

            // A new process finds the cluster by its label and reads its password back.
            try await waitUntil("three worker slots connect", timeout: 60, interval: 0.2) {
                try await cli.run(["status", "--name", "cli-swarm"] + swarm).output.contains("3 slot(s)")
            }
            let status = try await cli.run(["status", "--name", "cli-swarm"] + swarm)
            #expect(status.output.contains("Worker number:  3 / 3 / 0"), "\(status.output)")

            let scale = try await cli.run(["scale", "4", "--name", "cli-swarm"] + swarm)
            #expect(scale.status == 0, "\(scale.errorOutput)")
            try await waitUntil("four worker slots connect", timeout: 60, interval: 0.2) {
                try await cli.run(["status", "--name", "cli-swarm"] + swarm).output.contains("4 slot(s)")
            }

            let submit = try await cli.run(["submit", "--name", "cli-swarm", "--job", "doubles"] + swarm + ["-q", "--", "sh", "-c", "echo $(( {} * 2 ))", ":::", "1", "2", "3"])
            #expect(submit.status == 0, "\(submit.errorOutput)")
            let results = try await cli.run(["results", "--name", "cli-swarm", "--job", "doubles"] + swarm)
            #expect(results.output == "2\n4\n6\n", "\(results.errorOutput)")
            let list = try await cli.run(["list"] + swarm)
            #expect(list.output.contains("cli-swarm\trunning"))

            let down = try await cli.run(["down", "--name", "cli-swarm"] + swarm)
            #expect(down.status == 0, "\(down.errorOutput)")
            #expect(try SwarmCLI.leftovers(ofQueuesStartingWith: "cli-swarm").isEmpty)
        }
    }
}
