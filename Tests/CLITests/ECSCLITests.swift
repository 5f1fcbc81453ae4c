import DockerParallelTestKit
import Foundation
import Testing

/// The README's ECS commands, end to end, against the AWS emulators (ministack runs the tasks'
/// containers on `DOCKER_HOST`'s daemon, with the host's network).
@Suite(
    .serialized, .timeLimit(.minutes(10)),
    .enabled(if: AWSEmulators.enabled && DockerCLI.enabled, "no ministack or no Docker: `pip install ministack docker`, and a dockerd"))
struct ECSCLITests {
    static let harness = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ECSProviderTests/Harness/aws_emulators.py").path
    /// A registry name that cannot be pulled: the emulator runs the local image.
    static let image = "127.0.0.1:5999/dockerparallel-test/cli-ecs:latest"
    var cli: CLI

    init() async throws {
        cli = try CLI()
        let build = try await cli.run(["image", "build", "--tag", Self.image, "--add", "/bin/sleep"])
        #expect(build.status == 0, "\(build.errorOutput)")
    }

    /// The emulator's tasks of a cluster that run or start, by component.
    static func tasks(_ emulators: AWSEmulators, queue: String, family: String) throws -> [String] {
        let script = """
            import boto3, sys
            ecs = boto3.client('ecs', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='AKIATESTKEY0000000001', aws_secret_access_key='x')
            arns = ecs.list_tasks(cluster='dockerparallel-' + sys.argv[2], family=sys.argv[3], desiredStatus='RUNNING').get('taskArns', [])
            tasks = ecs.describe_tasks(cluster='dockerparallel-' + sys.argv[2], tasks=arns)['tasks'] if arns else []
            for t in tasks: print(t['capacityProviderName'] if 'capacityProviderName' in t else t.get('launchType'))
            """
        return try programOutput("/usr/bin/env", ["python3", "-c", script, emulators.endpoints["ecs"] ?? "", queue, family])
            .split(separator: "\n").map(String.init)
    }

    @Test func upRunStatusScaleDownOnECSLeavesNothing() async throws {
        try await HeavyTests.oneAtATime {
            let emulators = try await AWSEmulators(harness: Self.harness)
            defer { emulators.stop() }
            var cli = self.cli
            cli.environment = emulators.environment
            defer { cli.tearDown() }
            let ecs = ["--provider", "ecs", "--same-lan", "--image", Self.image]
            let up = try await cli.run(["up", "--name", "cli-ecs", "--workers", "4", "--slots-per-container", "1", "--spot", "0.5"] + ecs)
            #expect(up.status == 0, "\(up.errorOutput)\n\(emulators.log.suffix(2000))")
            let workers = try Self.tasks(emulators, queue: "cli-ecs", family: "dockerparallel-cli-ecs-worker")
            #expect(workers.sorted() == ["FARGATE", "FARGATE", "FARGATE_SPOT", "FARGATE_SPOT"], "\(workers)")
            #expect(try Self.tasks(emulators, queue: "cli-ecs", family: "dockerparallel-cli-ecs-server") == ["FARGATE"])

            let run = try await cli.run(
                ["run", "--cluster", "cli-ecs"] + ecs + ["-q", "--", "sh", "-c", "echo $(( {} * {} ))", ":::"] + (1...200).map(String.init))
            #expect(run.status == 0, "\(run.errorOutput)")
            #expect(run.output == (1...200).map { "\($0 * $0)\n" }.joined())

            let submit = try await cli.run(["submit", "--cluster", "cli-ecs"] + ecs + ["-q", "--", "sh", "-c", "echo {}", ":::", "a", "b", "c"])
            #expect(submit.status == 0, "\(submit.errorOutput)")
            let job = submit.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init) ?? ""
            let results = try await cli.run(["results", "--job", job, "--cluster", "cli-ecs"] + ecs)
            #expect(results.status == 0, "\(results.output) \(results.errorOutput)")
            #expect(results.output == "a\nb\nc\n", "\(results.output)")

            let scale = try await cli.run(["scale", "1", "--name", "cli-ecs"] + ecs)
            #expect(scale.status == 0, "\(scale.errorOutput)")
            #expect(try Self.tasks(emulators, queue: "cli-ecs", family: "dockerparallel-cli-ecs-worker").count == 1)
            let status = try await cli.run(["status", "--name", "cli-ecs"] + ecs)
            #expect(status.status == 0, "\(status.errorOutput)")
            #expect(status.output.contains("cli-ecs"), "\(status.output)")

            let down = try await cli.run(["down", "--name", "cli-ecs"] + ecs)
            #expect(down.status == 0, "\(down.errorOutput)")
            #expect(!down.errorOutput.contains("cannot reach"), "\(down.errorOutput)")
            #expect(try Self.tasks(emulators, queue: "cli-ecs", family: "dockerparallel-cli-ecs-worker").isEmpty)
            #expect(try Self.tasks(emulators, queue: "cli-ecs", family: "dockerparallel-cli-ecs-server").isEmpty)

            // From outside the VPC (no --same-lan) the server's public IP is needed, and emulated
            // tasks have none: `down` cannot reach the server, says so, and removes the cluster anyway.
            let second = try await cli.run(["up", "--name", "cli-ecs-2", "--workers", "1"] + ecs)
            #expect(second.status == 0, "\(second.errorOutput)")
            let orphanDown = try await cli.run(["down", "--name", "cli-ecs-2", "--provider", "ecs", "--image", Self.image])
            #expect(orphanDown.status == 0, "\(orphanDown.errorOutput)")
            #expect(orphanDown.errorOutput.contains("cannot reach the server of 'cli-ecs-2'"), "\(orphanDown.errorOutput)")
            #expect(try Self.tasks(emulators, queue: "cli-ecs-2", family: "dockerparallel-cli-ecs-2-worker").isEmpty)
            #expect(try Self.tasks(emulators, queue: "cli-ecs-2", family: "dockerparallel-cli-ecs-2-server").isEmpty)
            let list = try await cli.run(["list"] + ecs)
            #expect(!list.output.contains("cli-ecs"), "no cluster is left: \(list.output)")
        }
    }

    @Test func missingCredentialsNameEverySourceTried() async throws {
        var cli = self.cli
        cli.environment = [
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_CONFIG_FILE": "/nonexistent/config",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
        ]
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "no-credentials", "--provider", "ecs", "--image", Self.image])
        #expect(up.status != 0)
        for source in ["environment", "shared", "instance metadata"] {
            #expect(up.errorOutput.contains(source), "\(up.errorOutput)")
        }
        let badSpot = try await cli.run(["up", "--name", "bad-spot", "--provider", "ecs", "--spot", "1.5"])
        #expect(badSpot.status != 0)
        #expect(badSpot.errorOutput.contains("Spot share"), "\(badSpot.errorOutput)")
        cli.environment["AWS_REGION"] = ""
        cli.environment["AWS_DEFAULT_REGION"] = ""
        let noRegion = try await cli.run(["up", "--name", "no-region", "--provider", "ecs"])
        #expect(noRegion.status != 0)
        #expect(noRegion.errorOutput.contains("no AWS region is set: pass --region"), "\(noRegion.errorOutput)")
    }
}
