import DockerParallelTestKit
import Foundation
import Testing

/// The README's Kubernetes commands, end to end, against the Kubernetes API emulator with its
/// harness playing the kubelet on `DOCKER_HOST`'s daemon.
@Suite(
    .serialized, .timeLimit(.minutes(10)),
    .enabled(if: KubernetesEmulator.enabled && DockerCLI.enabled, "no kmock or no Docker: `pip install kmock kubernetes-validate`, and a dockerd"))
struct KubernetesCLITests {
    static let harness = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("KubernetesProviderTests/Harness/kube_emulator.py").path
    static let image = "dockerparallel-test/cli-kubernetes:latest"
    let cli: CLI

    init() async throws {
        cli = try CLI()
        let build = try await cli.run(["image", "build", "--tag", Self.image, "--add", "/bin/sleep"])
        #expect(build.status == 0, "\(build.errorOutput)")
    }

    /// The emulator's objects of a cluster (its pods, Deployment, Service, Secrets, claim).
    static func objects(_ emulator: KubernetesEmulator, cluster: String) throws -> [String] {
        var names: [String] = []
        for resource in ["api/v1/namespaces/\(emulator.namespace)/pods", "apis/apps/v1/namespaces/\(emulator.namespace)/deployments",
                         "api/v1/namespaces/\(emulator.namespace)/services", "api/v1/namespaces/\(emulator.namespace)/secrets",
                         "api/v1/namespaces/\(emulator.namespace)/persistentvolumeclaims"] {
            let text = try programOutput("/usr/bin/curl", ["-sf", "http://127.0.0.1:\(emulator.port)/\(resource)"])
            let list = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            for item in list?["items"] as? [[String: Any]] ?? [] {
                let metadata = item["metadata"] as? [String: Any]
                let labels = metadata?["labels"] as? [String: String]
                if labels?["dockerparallel.io/cluster"] == cluster { names.append("\(resource.split(separator: "/").last ?? "")/\(metadata?["name"] ?? "")") }
            }
        }
        return names.sorted()
    }

    @Test func upRunStatusScaleDownOnKubernetesLeavesNothing() async throws {
        try await HeavyTests.oneAtATime {
            defer { cli.tearDown() }
            let emulator = try await KubernetesEmulator(harness: Self.harness, kubelet: true)
            defer { emulator.stop() }
            let kubernetes = ["--provider", "kubernetes", "--kubeconfig", emulator.kubeconfig, "--network", "host", "--image", Self.image]
            let up = try await cli.run(["up", "--name", "cli-k8s", "--port", "0", "--workers", "3", "--slots-per-container", "2"] + kubernetes)
            #expect(up.status == 0, "\(up.errorOutput)\n\(emulator.log.suffix(2000))")
            let objects = try Self.objects(emulator, cluster: "cli-k8s")
            // Three slots, two per pod: two worker pods, besides the server's.
            #expect(objects.filter { $0.hasPrefix("pods/dockerparallel-cli-k8s-worker-") }.count == 2, "\(objects)")
            #expect(objects.contains("deployments/dockerparallel-cli-k8s-server"))
            #expect(objects.contains("persistentvolumeclaims/dockerparallel-cli-k8s-store"))
            // The password is in the Secret alone: not in the Deployment's environment or annotations.
            let deployment = try programOutput(
                "/usr/bin/curl", ["-sf", "http://127.0.0.1:\(emulator.port)/apis/apps/v1/namespaces/\(emulator.namespace)/deployments/dockerparallel-cli-k8s-server"])
            #expect(deployment.contains("DOCKERPARALLEL_PASSWORD_FILE"))
            #expect(!deployment.contains("\"DOCKERPARALLEL_PASSWORD\""))

            let run = try await cli.run(
                ["run", "--cluster", "cli-k8s"] + kubernetes + ["-q", "--", "sh", "-c", "echo $(( {} * {} ))", ":::"] + (1...200).map(String.init))
            #expect(run.status == 0, "\(run.errorOutput)")
            #expect(run.output == (1...200).map { "\($0 * $0)\n" }.joined())

            let scale = try await cli.run(["scale", "1", "--name", "cli-k8s"] + kubernetes)
            #expect(scale.status == 0, "\(scale.errorOutput)")
            try await waitUntil("one worker pod is left", timeout: 60) {
                try Self.objects(emulator, cluster: "cli-k8s").filter { $0.hasPrefix("pods/dockerparallel-cli-k8s-worker-") }.count == 1
            }
            let status = try await cli.run(["status", "--name", "cli-k8s"] + kubernetes)
            #expect(status.status == 0, "\(status.errorOutput)")
            #expect(status.output.contains("cli-k8s"), "\(status.output)")

            let down = try await cli.run(["down", "--name", "cli-k8s"] + kubernetes)
            #expect(down.status == 0, "\(down.errorOutput)")
            #expect(try Self.objects(emulator, cluster: "cli-k8s").isEmpty, "left behind after down")
        }
    }

    @Test func manifestsAreSchemaValidAndHoldTheSameObjects() async throws {
        let manifests = try await cli.run(["k8s", "manifests", "--name", "Printed_1", "--workers", "4", "--slots-per-container", "2", "--image", "registry.example/dp:1"])
        #expect(manifests.status == 0, "\(manifests.errorOutput)")
        #expect(manifests.errorOutput.contains("holds the cluster's password"), "the warning about the Secret is printed")
        for kind in ["kind: Secret", "kind: PersistentVolumeClaim", "kind: Service", "kind: Deployment"] {
            #expect(manifests.output.contains(kind), "no \(kind)")
        }
        #expect(manifests.output.contains("replicas: 2"), "4 slots, 2 per pod: 2 worker replicas")
        let file = cli.home + "/manifests.yaml"
        try manifests.output.write(toFile: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["kubernetes-validate", "--strict", "--quiet", file]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let said = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "kubernetes-validate: \(said)")
        cli.tearDown()
    }
}
