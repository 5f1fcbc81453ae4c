import DockerEngineProvider
import DockerParallel
import DockerParallelTestKit
import Foundation
import SwarmProvider
import Testing

/// The swarm the Swarm tests use: the one `DOCKER_HOST` is a manager of.
///
/// Without one the tests are skipped, unless `DOCKERPARALLEL_REQUIRE_SWARM=1` (as `.ci/run`
/// sets), which makes a missing swarm a failure.
enum SwarmTesting {
    static let environment = ProcessInfo.processInfo.environment
    static let required = environment["DOCKERPARALLEL_REQUIRE_SWARM"] == "1"
    static let host: DockerHost = (try? DockerHost.fromEnvironment()) ?? .defaultSocket

    /// Whether the daemon is an active swarm manager.
    static let isAvailable: Bool = {
        let state = try? docker(["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"])
        return state?.trimmingCharacters(in: .whitespacesAndNewlines) == "active true"
    }()

    static let enabled = isAvailable || required

    static func provider() throws -> SwarmProvider {
        try SwarmProvider(configuration: .init(host: host, startTimeout: .seconds(60), stopGracePeriod: .seconds(2)))
    }

    /// The built `dockerparallel` binary, next to the test bundle.
    static var binary: String { BuiltProducts.path(of: "dockerparallel") }

    /// The test image, built once per test run.
    static let image = ImageOnce()

    actor ImageOnce {
        private var tag: String?

        func get() async throws -> String {
            if let tag { return tag }
            let name = "dockerparallel-test/swarm:latest"
            _ = try await ImageBuilder(host: SwarmTesting.host).build(.init(
                tag: name, dockerparallelBinary: SwarmTesting.binary, extraPrograms: ["/bin/sh", "/bin/sleep", "/bin/echo"]))
            tag = name
            return name
        }
    }

    /// The docker CLI, for checks only (the provider never uses it).
    @discardableResult
    static func docker(_ arguments: [String]) throws -> String {
        try programOutput("/usr/bin/docker", arguments)
    }

    /// The cluster's services, secrets and containers (on this node) that are left.
    static func leftovers(of queue: String) throws -> [String] {
        let label = "label=dockerparallel.queue=\(queue)"
        let services = try docker(["service", "ls", "-q", "--filter", label])
        let secrets = try docker(["secret", "ls", "-q", "--filter", label])
        let volumes = try docker(["volume", "ls", "-q", "--filter", "name=dockerparallel-swarm-\(queue)-store"])
        return (services + secrets + volumes).split(separator: "\n").map(String.init)
    }

    /// The running containers of a cluster's workers on this node.
    static func workerContainers(of queue: String) throws -> [String] {
        try docker(["ps", "-q", "--filter", "label=dockerparallel.swarm.queue=\(queue)", "--filter", "label=dockerparallel.swarm.role=worker"])
            .split(separator: "\n").map(String.init)
    }
}

/// The Swarm provider on a real swarm (`.ci/run` makes its private dockerd a one-node swarm).
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: SwarmTesting.enabled, "no swarm: `docker swarm init` on DOCKER_HOST's daemon"))
struct SwarmTests {
    init() {
        #expect(SwarmTesting.isAvailable, "the daemon at \(SwarmTesting.host) is not a swarm manager")
    }

    @Test func theSwarmProviderPassesTheConformanceKit() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            let image = try await SwarmTesting.image.get()
            let kit = ConformanceKit(
                provider: try SwarmTesting.provider(), workerContainer: DockerWorkerContainer(image: image),
                options: .init(
                    workerNumber: 3, jobSize: 100, timeout: .seconds(40),
                    configuration: ClusterConfiguration(jobQueueName: "conformance-swarm", serverPort: 0)))
            let started = ContinuousClock.now
            try await kit.run { step in print("swarm conformance (+\(ContinuousClock.now - started)): \(step)") }
            let cluster = try DockerCluster(
                provider: try SwarmTesting.provider(), workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(jobQueueName: "conformance-swarm"), verbosity: 0)
            try await cluster.cleanup(deep: true)
            #expect(try SwarmTesting.leftovers(of: "conformance-swarm").isEmpty, "the kit's cluster left services, secrets or volumes")
        }
    }

    /// `docker kill` of a worker's container mid-job: swarm starts another task, and every task
    /// still has exactly one result.
    @Test func aKilledWorkerTaskIsReplacedBySwarmAndNoTaskIsLost() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            let image = try await SwarmTesting.image.get()
            let queue = "killed-swarm"
            let cluster = try DockerCluster(
                provider: try SwarmTesting.provider(), workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(jobQueueName: queue, expectedWorkerNumber: 2, serverPort: 0), verbosity: 0,
                stopClusterOnExit: true)
            do {
                try await cluster.startCluster()
                try await waitUntil("two workers run", timeout: 60, interval: 0.1) { try await cluster.workerNumbers().running == 2 }
                let before = try SwarmTesting.workerContainers(of: queue)
                let job = try await cluster.submitCommands(
                    try CommandTemplate(["sh", "-c", "sleep 0.2; echo {}"]), inputs: (0..<40).map(String.init))
                try await waitUntil("some tasks are done", timeout: 60, interval: 0.05) { try await job.status().finished >= 4 }
                let victim = try #require(before.first)
                try SwarmTesting.docker(["kill", victim])
                var seen: Set<Int> = []
                for try await result in try await job.results() {
                    #expect(result.status == .succeeded, "task \(result.index): \(result.error ?? "")")
                    #expect(seen.insert(result.index).inserted, "task \(result.index) has two results")
                    #expect(String(decoding: result.output, as: UTF8.self) == "\(result.index)\n")
                }
                #expect(seen.count == 40)
                // Swarm replaced the task by itself: two workers again, one of them new.
                try await waitUntil("swarm replaces the killed worker", timeout: 60, interval: 0.2) {
                    let now = try SwarmTesting.workerContainers(of: queue)
                    let running = try await cluster.workerNumbers().running
                    return now.count == 2 && !now.contains(victim) && running == 2
                }
            } catch {
                try? await cluster.stopCluster(ignoreErrors: true, cleanup: true)
                throw error
            }
            try await cluster.stopCluster(cleanup: true)
            try await cluster.cleanup(deep: true)
            #expect(try SwarmTesting.leftovers(of: queue).isEmpty)
        }
    }

    /// On an overlay network with DNS round robin (no IPVS needed), workers reach the server by
    /// its service name, clients through the port it publishes on its node, over TLS; a deep
    /// cleanup removes the network it created.
    /// `docker node update --availability drain` of the node mid-job: its tasks (workers, and on
    /// this one-node swarm the server too) stop with SIGTERM and hand their tasks back; once the
    /// node is active again swarm starts them anew, the server resumes from its store, and every
    /// task has exactly one result.
    @Test func aDrainedNodeHandsItsTasksBackAndNoneIsLost() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            let image = try await SwarmTesting.image.get()
            let queue = "drained-swarm"
            let node = try SwarmTesting.docker(["node", "ls", "-q"]).trimmingCharacters(in: .whitespacesAndNewlines)
            let cluster = try DockerCluster(
                provider: try SwarmTesting.provider(), workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(jobQueueName: queue, expectedWorkerNumber: 2, serverPort: 0), verbosity: 0,
                stopClusterOnExit: true)
            do {
                try await cluster.startCluster()
                try await waitUntil("two workers run", timeout: 60, interval: 0.1) { try await cluster.workerNumbers().running == 2 }
                let job = try await cluster.submitCommands(
                    try CommandTemplate(["sh", "-c", "sleep 0.2; echo {}"]), inputs: (0..<40).map(String.init))
                try await waitUntil("some tasks are done", timeout: 60, interval: 0.05) { try await job.status().finished >= 4 }
                try SwarmTesting.docker(["node", "update", "--availability", "drain", node])
                defer { _ = try? SwarmTesting.docker(["node", "update", "--availability", "active", node]) }
                try await waitUntil("the drained node runs none of the cluster's containers", timeout: 60, interval: 0.2) {
                    try SwarmTesting.docker(["ps", "-q", "--filter", "label=dockerparallel.swarm.queue=\(queue)"])
                        .trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
                }
                try SwarmTesting.docker(["node", "update", "--availability", "active", node])
                var seen: Set<Int> = []
                for try await result in try await job.results() {
                    #expect(result.status == .succeeded, "task \(result.index): \(result.error ?? "")")
                    #expect(seen.insert(result.index).inserted, "task \(result.index) has two results")
                    #expect(String(decoding: result.output, as: UTF8.self) == "\(result.index)\n")
                }
                #expect(seen.count == 40)
                #expect(try await cluster.serverReport().restarts >= 1, "the server did not restart on its store")
            } catch {
                _ = try? SwarmTesting.docker(["node", "update", "--availability", "active", node])
                try? await cluster.stopCluster(ignoreErrors: true, cleanup: true)
                throw error
            }
            try await cluster.stopCluster(cleanup: true)
            try await cluster.cleanup(deep: true)
            #expect(try SwarmTesting.leftovers(of: queue).isEmpty)
        }
    }

    @Test func aJobRunsOnAnOverlayNetworkWithDNSRoundRobin() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            let image = try await SwarmTesting.image.get()
            let queue = "overlay-swarm"
            let network = "dockerparallel-test-overlay"
            let provider = try SwarmProvider(configuration: .init(host: SwarmTesting.host, network: network, stopGracePeriod: .seconds(2)))
            let cluster = try DockerCluster(
                provider: provider, workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(jobQueueName: queue, expectedWorkerNumber: 2, serverPort: 0), verbosity: 0,
                stopClusterOnExit: true)
            do {
                try await cluster.startCluster()
                let endpoints = try #require(await cluster.runtime.serverEndpoints)
                #expect(endpoints.privateEndpoint?.host == "dockerparallel-\(queue)-server")
                #expect(endpoints.publicEndpoint?.usesTLS == true)
                let outputs = try await cluster.submitCommands(try CommandTemplate(["sh", "-c", "echo {}"]), inputs: (0..<20).map(String.init))
                    .results().reduce(into: [Int: String]()) { $0[$1.index] = String(decoding: $1.output, as: UTF8.self) }
                #expect(outputs == Dictionary(uniqueKeysWithValues: (0..<20).map { ($0, "\($0)\n") }))
                #expect(try SwarmTesting.docker(["network", "inspect", "-f", "{{.Driver}}", network]).hasPrefix("overlay"))
                // A new handle finds it, with its password and keys read back from the secrets.
                let other = try DockerCluster(
                    provider: provider, workerContainer: DockerWorkerContainer(image: image),
                    configuration: ClusterConfiguration(jobQueueName: queue), verbosity: 0)
                try await other.reconnect()
                let original = await cluster.configuration
                let found = await other.configuration
                #expect(found.serverPassword == original.serverPassword)
                #expect(found.transportSecurity.certificateAuthority == original.transportSecurity.certificateAuthority)
                #expect(found.transportSecurity.serverPrivateKey?.value.trimmingCharacters(in: .whitespacesAndNewlines)
                    == original.transportSecurity.serverPrivateKey?.value.trimmingCharacters(in: .whitespacesAndNewlines))
                #expect(try await other.serverReport().workerSlots == 2)
                await other.close()
            } catch {
                try? await cluster.stopCluster(ignoreErrors: true, cleanup: true)
                throw error
            }
            try await cluster.stopCluster(cleanup: true)
            try await cluster.cleanup(deep: true)
            #expect(try SwarmTesting.docker(["network", "ls", "-q", "--filter", "name=\(network)"]).isEmpty)
            #expect(try SwarmTesting.leftovers(of: queue).isEmpty)
        }
    }

    /// Workers whose start-up fails (a package that cannot be installed) are a clear error
    /// naming swarm's reason, not a hang.
    @Test func workersThatCannotStartAreAnErrorWithSwarmsReason() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            let image = try await SwarmTesting.image.get()
            let queue = "broken-swarm"
            let cluster = try DockerCluster(
                provider: try SwarmTesting.provider(),
                workerContainer: DockerWorkerContainer(image: image, systemPackages: ["no-such-package"]),
                configuration: ClusterConfiguration(jobQueueName: queue, expectedWorkerNumber: 1, serverPort: 0), verbosity: 0,
                stopClusterOnExit: true)
            do {
                try await cluster.startCluster()
                var reported: String?
                try await waitUntil("the start-up failure is reported", timeout: 60, interval: 0.5) {
                    do {
                        try await cluster.update()
                        return false
                    } catch let error as DockerParallelError {
                        reported = error.message
                        return true
                    }
                }
                #expect(reported?.contains("non-zero exit (78)") == true, "\(reported ?? "")")
                #expect(reported?.contains("dockerparallel-broken-swarm-worker-1") == true, "\(reported ?? "")")
            } catch {
                try? await cluster.stopCluster(ignoreErrors: true, cleanup: true)
                throw error
            }
            try await cluster.stopCluster(ignoreErrors: true, cleanup: true)
            try await cluster.cleanup(deep: true)
            #expect(try SwarmTesting.leftovers(of: queue).isEmpty)
        }
    }
}
