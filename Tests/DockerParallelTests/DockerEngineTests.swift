import DockerEngineProvider
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// The Docker Engine provider against a real daemon (`.ci/run` starts a private one).
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: DockerTesting.enabled, "no Docker daemon: set DOCKER_HOST"))
struct DockerEngineTests {
    @Test func aDaemonIsThereWhenTheTestsRequireOne() {
        #expect(DockerTesting.isAvailable, "no Docker daemon answers at \(DockerTesting.host)")
    }

    @Test func theDockerEngineProviderPassesTheConformanceKit() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            let image = try await DockerTesting.images.cli()
            let kit = ConformanceKit(
                provider: try DockerTesting.provider(),
                workerContainer: DockerWorkerContainer(image: image),
                options: .init(
                    workerNumber: 3, configuration: ClusterConfiguration(jobQueueName: "conformance-docker", serverPort: 0),
                    killServer: { configuration in
                        _ = try DockerTesting.docker(["kill", "dockerparallel-\(configuration.jobQueueName)-server"])
                    }))
            let started = ContinuousClock.now
            try await kit.run { step in print("docker conformance (+\(ContinuousClock.now - started)): \(step)") }
            #expect(try DockerTesting.containers(of: "conformance-docker").isEmpty, "the kit's cluster left containers behind")
            DockerTesting.removeVolume(of: "conformance-docker")
        }
    }

    /// Off the host network: the provider creates the named network, publishes the server's port
    /// for the client, and workers dial the server's own address; a deep cleanup removes the network.
    @Test func theKitPassesOnANetworkOfItsOwn() async throws {
        let image = try await DockerTesting.images.cli()
        let network = "dockerparallel-test-net"
        let provider = try DockerEngineProvider(configuration: .init(
            host: DockerTesting.host, networkMode: network, stopGracePeriod: .seconds(2)))
        let kit = ConformanceKit(
            provider: provider, workerContainer: DockerWorkerContainer(image: image),
            options: .init(workerNumber: 2, configuration: ClusterConfiguration(jobQueueName: "network-docker", serverPort: 0)))
        try await kit.run { step in print("docker network conformance: \(step)") }
        #expect(try DockerTesting.docker(["network", "ls", "-q", "--filter", "name=\(network)"]).isEmpty == false)
        let cluster = try DockerCluster(
            provider: provider, workerContainer: DockerWorkerContainer(image: image),
            configuration: ClusterConfiguration(jobQueueName: "network-docker"), verbosity: 0)
        try await cluster.cleanup(deep: true)
        #expect(try DockerTesting.docker(["network", "ls", "-q", "--filter", "name=\(network)"]).isEmpty)
        #expect(try DockerTesting.containers(of: "network-docker").isEmpty)
    }

    /// `map` runs Swift tasks in containers of an image whose command is the user's program;
    /// several worker slots share a container.
    @Test func mapRunsSwiftTasksInsideContainers() async throws {
        let image = try await DockerTesting.images.squares()
        let cluster = try DockerCluster(
            provider: try DockerTesting.provider(),
            workerContainer: DockerWorkerContainer(image: image, maxWorkersPerContainer: 2),
            configuration: ClusterConfiguration(jobQueueName: "map-docker", expectedWorkerNumber: 3, serverPort: 0),
            verbosity: 0)
        try await cluster.withStarted { cluster in
            // The server, and 3 workers at 2 per container: 2 worker containers.
            #expect(try DockerTesting.containers(of: "map-docker").count == 3)
            // Hardware becomes limits: the default worker's 1024 CPU units are one CPU, 2048 MB of memory.
            let worker = try #require(try DockerTesting.docker([
                "ps", "-q", "--filter", "label=dockerparallel.role=worker", "--filter", "label=dockerparallel.queue=map-docker",
            ]).split(separator: "\n").first.map(String.init))
            #expect(try DockerTesting.docker(["inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", worker])
                == "1000000000 \(2048 * 1024 * 1024)")
            let squares = try await cluster.map(Array(0..<300), using: Square.self)
            #expect(squares == (0..<300).map { $0 * $0 })
            let job = try await cluster.submit(Array(0..<20), using: Square.self)
            _ = try await job.outputs()
            let workers = Set(try await cluster.attemptLog(jobID: job.id).map(\.worker))
            #expect(!workers.isEmpty && workers.allSatisfy { $0.hasPrefix("dockerparallel-map-docker-worker-") }, "\(workers)")
        }
        #expect(try DockerTesting.containers(of: "map-docker").isEmpty)
        try await cluster.cleanup(deep: true)
        #expect(try DockerTesting.docker(["volume", "ls", "-q", "--filter", "name=dockerparallel-map-docker-store"]).isEmpty)
    }

    /// Two processes restarting a killed server container at once (a `run`'s supervision and an
    /// operator's `up`) end with one server container, with the cluster's password and port.
    @Test func concurrentRestartsOfAKilledServerContainerEndWithOne() async throws {
        let image = try await DockerTesting.images.cli()
        let configuration = ClusterConfiguration(jobQueueName: "race-docker", expectedWorkerNumber: 1, serverPort: 0)
        let cluster = try DockerCluster(
            provider: try DockerTesting.provider(), workerContainer: DockerWorkerContainer(image: image),
            configuration: configuration, verbosity: 0)
        defer { DockerTesting.removeVolume(of: "race-docker") }
        try await cluster.withStarted { cluster in
            let port = await cluster.runtime.serverEndpoints?.publicEndpoint?.port
            try DockerTesting.docker(["kill", "dockerparallel-race-docker-server"])
            // Handles of other processes: new passwords, as a fresh `up` would have.
            let restarters = try (0..<3).map { _ in
                try DockerCluster(
                    provider: try DockerTesting.provider(), workerContainer: DockerWorkerContainer(image: image),
                    configuration: ClusterConfiguration(jobQueueName: "race-docker", expectedWorkerNumber: 1, serverPort: 0),
                    verbosity: 0, stopClusterOnExit: false)
            }
            try await waitUntil("the server container is seen stopped") { try await !restarters[0].clusterExists() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for restarter in restarters { group.addTask { try await restarter.startServer() } }
                group.addTask { try await cluster.update() }
                try await group.waitForAll()
            }
            let servers = try DockerTesting.docker([
                "ps", "-aq", "--filter", "label=dockerparallel.role=server", "--filter", "label=dockerparallel.queue=race-docker",
            ]).split(separator: "\n")
            #expect(servers.count == 1, "server containers: \(servers)")
            for restarter in restarters {
                #expect(await restarter.configuration.serverPassword == configuration.serverPassword)
                #expect(await restarter.runtime.serverEndpoints?.publicEndpoint?.port == port)
            }
            #expect(try await cluster.map(["a", "b"], using: BuiltinEcho.self) == ["a", "b"])
        }
    }

    /// `docker kill` on a worker container mid-job: its tasks run elsewhere, `update()` replaces it.
    @Test func aKilledWorkerContainerLosesNoTask() async throws {
        let image = try await DockerTesting.images.cli()
        let cluster = try DockerCluster(
            provider: try DockerTesting.provider(), workerContainer: DockerWorkerContainer(image: image),
            configuration: ClusterConfiguration(jobQueueName: "kill-docker", expectedWorkerNumber: 2, serverPort: 0),
            verbosity: 0)
        try await cluster.withStarted { cluster in
            let job = try await cluster.submitCommands(
                try CommandTemplate(["sh", "-c", "sleep 0.05; echo {}"]), inputs: (0..<120).map(String.init))
            var seen: [Int: String] = [:]
            var killed: String?
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await cluster.supervise(every: .milliseconds(300)) }
                for try await result in try await job.results() {
                    #expect(seen[result.index] == nil)
                    seen[result.index] = String(decoding: result.output, as: UTF8.self)
                    if seen.count == 20, killed == nil {
                        let worker = try DockerTesting.docker([
                            "ps", "-q", "--filter", "label=dockerparallel.role=worker", "--filter", "label=dockerparallel.queue=kill-docker",
                        ]).split(separator: "\n").first.map(String.init)
                        killed = try #require(worker)
                        try DockerTesting.docker(["kill", killed!])
                    }
                }
                group.cancelAll()
            }
            #expect(seen.count == 120)
            #expect(seen.allSatisfy { $0.value == "\($0.key)\n" })
            try await waitUntil("the killed worker container is replaced", timeout: 30) {
                let running = try DockerTesting.docker([
                    "ps", "-q", "--filter", "label=dockerparallel.role=worker", "--filter", "label=dockerparallel.queue=kill-docker",
                ]).split(separator: "\n")
                return running.count == 2 && !running.contains { killed.map($0.hasPrefix) ?? false }
            }
        }
        #expect(try DockerTesting.containers(of: "kill-docker").isEmpty)
        DockerTesting.removeVolume(of: "kill-docker")
    }

    /// `--base`: the binaries go on top of a local image, which keeps its own files.
    @Test func anImageBuiltOnALocalBaseImageRunsTasks() async throws {
        let base = try await DockerTesting.images.cli()
        let tag = "dockerparallel-test/on-base:latest"
        _ = try await ImageBuilder(host: DockerTesting.host).build(.init(
            tag: tag, dockerparallelBinary: Binaries.dockerparallel, executable: Binaries.squaresExample, extraPrograms: [],
            base: base))
        let cluster = try DockerCluster(
            provider: try DockerTesting.provider(), workerContainer: DockerWorkerContainer(image: tag),
            configuration: ClusterConfiguration(jobQueueName: "base-docker", expectedWorkerNumber: 1, serverPort: 0),
            verbosity: 0)
        try await cluster.withStarted { cluster in
            // Swift tasks from the added program, and `sleep` from the base image.
            #expect(try await cluster.map([3, 4], using: Square.self) == [9, 16])
            for try await result in try await cluster.submitCommands(try CommandTemplate(["sh", "-c", "sleep 0; echo ok"]), inputs: ["x"]).results() {
                #expect(result.output == Data("ok\n".utf8), "\(result.error ?? "")")
            }
        }
        try await cluster.cleanup(deep: true)
    }

    /// On a Debian base, a container installs its system packages with apt-get at start-up
    /// before its worker starts. (Needs debootstrap and Debian's mirror; `.ci/run` has both.)
    @Test(.enabled(
        if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/debootstrap") || DockerTesting.required,
        "no debootstrap here"))
    func systemPackagesAreInstalledAtStartUp() async throws {
        let base = try await DockerTesting.images.debian()
        let tag = "dockerparallel-test/on-debian:latest"
        _ = try await ImageBuilder(host: DockerTesting.host).build(.init(
            tag: tag, dockerparallelBinary: Binaries.dockerparallel, extraPrograms: [], base: base))
        let cluster = try DockerCluster(
            provider: try DockerTesting.provider(),
            workerContainer: DockerWorkerContainer(image: tag, systemPackages: ["hello"]),
            configuration: ClusterConfiguration(jobQueueName: "apt-docker", expectedWorkerNumber: 1, serverPort: 0),
            verbosity: 0)
        try await cluster.withStarted { cluster in
            // `hello` is not in the base image: it is there only if apt-get installed it.
            let job = try await cluster.submitCommands(try CommandTemplate(["hello", "--greeting={}"]), inputs: ["installed by apt"])
            for try await result in try await job.results() {
                #expect(result.status == .succeeded, "\(result.error ?? "") \(result.lastErrorLines())")
                #expect(String(decoding: result.output, as: UTF8.self) == "installed by apt\n")
            }
        }
        try await cluster.cleanup(deep: true)
    }

    @Test func aMissingImageIsAClearError() async throws {
        let cluster = try DockerCluster(
            provider: try DockerTesting.provider(), workerContainer: DockerWorkerContainer(image: "dockerparallel-test/none:latest"),
            configuration: ClusterConfiguration(jobQueueName: "no-image", serverPort: 0), verbosity: 0)
        let error = await #expect(throws: DockerParallelError.self) { try await cluster.startCluster() }
        #expect(error?.message.contains("the image 'dockerparallel-test/none:latest' is not on the Docker engine") == true)
        #expect(error?.message.contains("dockerparallel image build --tag dockerparallel-test/none:latest") == true)
        try await cluster.stopCluster(ignoreErrors: true, cleanup: true)
    }

    @Test func noDaemonIsAClearErrorNotAHang() async throws {
        let provider = try DockerEngineProvider(configuration: .init(host: DockerHost(address: .unix("/nonexistent/docker.sock"))))
        let cluster = try DockerCluster(
            provider: provider, workerContainer: DockerWorkerContainer(),
            configuration: ClusterConfiguration(jobQueueName: "no-daemon"), verbosity: 0)
        let error = await #expect(throws: DockerParallelError.self) { try await cluster.startCluster() }
        #expect(error?.message.contains("cannot reach the Docker daemon at unix:///nonexistent/docker.sock") == true)
        #expect(error?.message.contains("DOCKER_HOST") == true)
    }

    /// A server container that exits at start-up is reported with its log.
    @Test func aServerThatExitsAtStartupIsReportedWithItsLog() async throws {
        let image = try await DockerTesting.images.cli()
        let cluster = try DockerCluster(
            provider: try DockerTesting.provider(),
            workerContainer: DockerWorkerContainer(image: image, environment: ["DOCKERPARALLEL_LEASE_SECONDS": "soon"]),
            configuration: ClusterConfiguration(jobQueueName: "bad-server", serverPort: 0), verbosity: 0)
        let error = await #expect(throws: DockerParallelError.self) { try await cluster.startServer() }
        #expect(error?.message.contains("the server container dockerparallel-bad-server-server exited with status 1 at start-up") == true)
        #expect(error?.message.contains("DOCKERPARALLEL_LEASE_SECONDS must be a positive number, not 'soon'") == true)
        try await cluster.stopCluster(ignoreErrors: true, cleanup: true)
        #expect(try DockerTesting.containers(of: "bad-server").isEmpty)
        DockerTesting.removeVolume(of: "bad-server")
    }

    /// Start-up follows the original: packages (a clear failure when the image cannot install
    /// them), the SSH key, logs under /workspace/log.
    @Test func containerStartupInstallsAuthorisesAndLogs() async throws {
        let image = try await DockerTesting.images.cli()
        let provider = try DockerTesting.provider()
        let broken = try DockerCluster(
            provider: provider, workerContainer: DockerWorkerContainer(image: image, systemPackages: ["r-base-core"]),
            configuration: ClusterConfiguration(jobQueueName: "startup-docker", expectedWorkerNumber: 1, serverPort: 0),
            verbosity: 0)
        try await broken.withStarted { cluster in
            // The worker container ends at start-up; the next update says why instead of retrying blindly.
            let error = try await waitUntil("the start-up failure is reported", timeout: 30) { () -> DockerParallelError? in
                do {
                    try await cluster.update()
                    return nil
                } catch let error as DockerParallelError {
                    return error
                }
            }
            #expect(error.message.contains("failed at start-up"))
            #expect(error.message.contains("this image has no apt-get"))
        }

        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDockerParallelTestKey test@dockerparallel"
        let cluster = try DockerCluster(
            provider: provider, workerContainer: DockerWorkerContainer(image: image, sshPublicKey: key),
            configuration: ClusterConfiguration(jobQueueName: "startup-docker", expectedWorkerNumber: 1, serverPort: 0),
            verbosity: 0)
        try await cluster.withStarted { cluster in
            let outputs = try await cluster.submitCommands(try CommandTemplate(["echo", "{}"]), inputs: ["a"]).results()
            for try await result in outputs { #expect(result.output == Data("a\n".utf8)) }
            let worker = try #require(try DockerTesting.docker([
                "ps", "-q", "--filter", "label=dockerparallel.role=worker", "--filter", "label=dockerparallel.queue=startup-docker",
            ]).split(separator: "\n").first.map(String.init))
            #expect(try DockerTesting.docker(["exec", worker, "cat", "/root/.ssh/authorized_keys"]) == key)
            let logs = try DockerTesting.docker(["exec", worker, "sh", "-c", "cat /workspace/log/*.log"])
            #expect(logs.contains("Authorised an SSH public key"))
            #expect(logs.contains("connected with 1 slot(s)"))
        }
        DockerTesting.removeVolume(of: "startup-docker")
    }
}
