#if canImport(Glibc)
import Glibc
#endif
import DockerEngineProvider
import KubernetesProvider
import ECSProvider
import SwarmProvider
import DockerParallel
import DockerParallelCore
import Foundation

/// Does nothing: the tiny task.
struct NoOp: ParallelTask {
    static func run(_ input: Int) async throws -> Int { input }
}

/// The wall-clock time at which a worker ran it: the worker start-up task.
struct Stamp: ParallelTask {
    static func run(_ input: Int) async throws -> Double { Date().timeIntervalSince1970 }
}

/// Spins the CPU for `input` milliseconds: the efficiency task.
struct Spin: ParallelTask {
    static func run(_ input: Int) async throws -> Int {
        let end = ContinuousClock.now + .milliseconds(input)
        var count = 0
        while ContinuousClock.now < end { count &+= 1 }
        return count & 1
    }
}

/// DockerParallel's side of the benchmark harness (`bench/run`): each scenario prints one JSON
/// object. The program is its own worker, as a user's program would be.
@main
struct Bench {
    static func main() async throws {
        await DockerParallelMain.runIfRequested(registry: TaskRegistry([NoOp.self, Spin.self, Stamp.self]))
        var arguments = Array(CommandLine.arguments.dropFirst())
        guard let scenario = arguments.first else {
            FileHandle.standardError.write(Data("usage: dockerparallel-bench tiny|roundtrip|efficiency|startup|memory [--tasks N] [--workers N] [--chunk N] [--memory-store] [--on-event-loop] [--store-writes-off-loop] [--docker-image IMAGE] [--swarm-image IMAGE] [--kubernetes-image IMAGE] [--ecs-image IMAGE]\n".utf8))
            exit(2)
        }
        arguments.removeFirst()
        func option(_ name: String, _ fallback: Int) -> Int {
            guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count, let value = Int(arguments[index + 1]) else { return fallback }
            return value
        }
        let durable = !arguments.contains("--memory-store")
        let workers = option("--workers", 2)
        let result: [String: Double]
        switch scenario {
        case "tiny":
            result = try await tiny(tasks: option("--tasks", 100_000), workers: workers, durable: durable, chunk: option("--chunk", 1))
        case "roundtrip":
            result = try await roundTrip(
                count: option("--tasks", 2000), durable: durable, onEventLoop: arguments.contains("--on-event-loop"),
                storeWritesOnEventLoop: !arguments.contains("--store-writes-off-loop"))
        case "efficiency": result = try await efficiency(tasks: option("--tasks", 400), milliseconds: option("--ms", 50), workers: workers)
        case "startup":
            if let index = arguments.firstIndex(of: "--docker-image"), index + 1 < arguments.count {
                result = try await startup(
                    workers: workers, provider: try DockerEngineProvider(),
                    container: DockerWorkerContainer(image: arguments[index + 1]))
            } else if let index = arguments.firstIndex(of: "--kubernetes-image"), index + 1 < arguments.count {
                // The cluster KUBECONFIG names; the node's network, as the test emulator runs pods.
                result = try await startup(
                    workers: workers, provider: try KubernetesProvider(configuration: .init(network: "host")),
                    container: DockerWorkerContainer(image: arguments[index + 1]))
            } else if let index = arguments.firstIndex(of: "--ecs-image"), index + 1 < arguments.count {
                // The AWS endpoints the environment names (the emulators); the client in the VPC.
                result = try await startup(
                    workers: workers, provider: try ECSProvider(configuration: .init(serverClientSameLAN: true)),
                    container: DockerWorkerContainer(image: arguments[index + 1]))
            } else if let index = arguments.firstIndex(of: "--swarm-image"), index + 1 < arguments.count {
                result = try await startup(
                    workers: workers, provider: try SwarmProvider(),
                    container: DockerWorkerContainer(image: arguments[index + 1]))
            } else {
                let state = NSTemporaryDirectory() + "dockerparallel-bench-\(getpid())"
                defer { try? FileManager.default.removeItem(atPath: state) }
                result = try await startup(
                    workers: workers, provider: LocalProvider(configuration: .init(stateDirectory: state)), container: nil)
                    .merging(try await workerLaunch(workers: workers)) { first, _ in first }
            }
        case "memory": result = try await memory(tasks: option("--tasks", 1_000_000))
        default:
            FileHandle.standardError.write(Data("unknown scenario '\(scenario)'\n".utf8))
            exit(2)
        }
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }

    /// A local cluster in a state folder of its own, removed afterwards.
    static func withCluster<T: Sendable>(
        workers: Int, durable: Bool = true, environment: [String: String] = [:],
        _ body: @Sendable (DockerCluster, String) async throws -> T
    ) async throws -> T {
        let state = NSTemporaryDirectory() + "dockerparallel-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let cluster = try DockerCluster(
            provider: LocalProvider(configuration: .init(stateDirectory: state, durable: durable)),
            workerContainer: LocalProcessContainer(environment: environment),
            configuration: ClusterConfiguration(jobQueueName: "bench", expectedWorkerNumber: workers, serverPort: 0),
            verbosity: 0)
        return try await cluster.withStarted { cluster in
            try await waitForWorkers(cluster, workers)
            return try await body(cluster, "\(state)/bench")
        }
    }

    static func waitForWorkers(_ cluster: DockerCluster, _ count: Int) async throws {
        while try await cluster.serverReport().workers.reduce(0, { $0 + $1.slots }) < count {
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Tiny tasks through `map`, timed from submit to the last result.
    static func tiny(tasks: Int, workers: Int, durable: Bool, chunk: Int) async throws -> [String: Double] {
        try await withCluster(workers: workers, durable: durable) { cluster, _ in
            let start = ContinuousClock.now
            let outputs = try await cluster.map(Array(0..<tasks), using: NoOp.self, chunkSize: chunk)
            let elapsed = seconds(ContinuousClock.now - start)
            precondition(outputs == Array(0..<tasks), "every input's output, in order")
            return ["tasks": Double(tasks), "seconds": elapsed, "tasks_per_second": Double(tasks) / elapsed, "chunk": Double(chunk)]
        }
    }

    /// One task at a time: submit, wait for its result, again. With `onEventLoop`, the loop runs
    /// with the cluster's task executor preference, on the thread of its connection.
    /// With `storeWritesOnEventLoop` false, the server writes every change on its committer's
    /// thread (what its event loop's small writes save).
    static func roundTrip(count: Int, durable: Bool, onEventLoop: Bool, storeWritesOnEventLoop: Bool) async throws -> [String: Double] {
        let environment = storeWritesOnEventLoop ? [:] : [EnvironmentKey.storeWritesOnEventLoop: "0"]
        return try await withCluster(workers: 1, durable: durable, environment: environment) { cluster, _ in
            @Sendable func measure() async throws -> [Double] {
                var latencies: [Double] = []
                for index in 0..<(count + 50) {
                    let start = ContinuousClock.now
                    _ = try await cluster.map([index], using: NoOp.self)
                    if index >= 50 { latencies.append(seconds(ContinuousClock.now - start) * 1e6) }  // after a warm-up
                }
                return latencies
            }
            var latencies = try await onEventLoop ? withTaskExecutorPreference(cluster.taskExecutor) { try await measure() } : measure()
            latencies.sort()
            return [
                "median_us": latencies[latencies.count / 2], "p99_us": latencies[min(latencies.count - 1, latencies.count * 99 / 100)],
            ]
        }
    }

    /// CPU-bound tasks: wall time against the ideal of perfect division over the workers.
    static func efficiency(tasks: Int, milliseconds: Int, workers: Int) async throws -> [String: Double] {
        try await withCluster(workers: workers) { cluster, _ in
            let start = ContinuousClock.now
            _ = try await cluster.map(Array(repeating: milliseconds, count: tasks), using: Spin.self)
            let elapsed = seconds(ContinuousClock.now - start)
            let ideal = Double(tasks * milliseconds) / 1000 / Double(workers)
            return ["seconds": elapsed, "ideal_seconds": ideal, "efficiency": ideal / elapsed]
        }
    }

    /// From the start of the cluster (its server and its workers) until every worker has leased
    /// a task: local processes, or containers (`--docker-image`) or swarm services
    /// (`--swarm-image`) of an image holding this program.
    static func startup(workers: Int, provider: any CloudProvider, container: (any WorkerContainer)?) async throws -> [String: Double] {
        let start = ContinuousClock.now
        let cluster = try DockerCluster(
            provider: provider, workerContainer: container ?? LocalProcessContainer(),
            configuration: ClusterConfiguration(jobQueueName: "bench-\(getpid())", expectedWorkerNumber: workers, serverPort: 0),
            verbosity: 0)
        let result = try await cluster.withStarted { cluster in
            // One 20 ms task per worker: each worker must lease one for the map to end this soon.
            _ = try await cluster.map(Array(repeating: 20, count: workers), using: Spin.self)
            let elapsed = seconds(ContinuousClock.now - start) - 0.020
            return ["workers": Double(workers), "ms_to_lease": elapsed * 1000]
        }
        // Leave nothing behind (containers, the store's volume).
        try? await cluster.cleanup(deep: true)
        return result
    }

    /// With the server up and a task queued, the time from asking for `workers` local workers
    /// until the first of them runs a task: a worker's own start-up, without the server's.
    static func workerLaunch(workers: Int) async throws -> [String: Double] {
        try await withCluster(workers: 0) { cluster, _ in
            let job = try await cluster.submit([0], using: Stamp.self)
            let launched = Date().timeIntervalSince1970
            try await cluster.setWorkerNumber(workers)
            let stamps = try await job.outputs()
            return ["worker_ms_to_lease": ((stamps.first ?? launched) - launched) * 1000]
        }
    }

    /// Server memory with `tasks` small command tasks queued (no worker takes them), and an idle
    /// worker's memory.
    static func memory(tasks: Int) async throws -> [String: Double] {
        try await withCluster(workers: 1) { cluster, folder in
            // Every slot busy, so that the queue stays full.
            let blocker = try await cluster.submitCommands(try CommandTemplate(["sleep", "{}"]), inputs: ["600"])
            let idle = rss(pidFile: "\(folder)/workers/worker-1.pid")
            let template = try CommandTemplate(["echo", "{}"])
            _ = try await cluster.submitCommands(template, inputs: (0..<tasks).map(String.init))
            let server = rss(pidFile: "\(folder)/server.pid")
            try await cluster.cancel(jobID: blocker.id)
            return ["queued_tasks": Double(tasks), "server_rss_mb": server, "idle_worker_rss_mb": idle]
        }
    }

    /// Resident memory in MB of the process whose id the file holds.
    static func rss(pidFile: String) -> Double {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = text.split(separator: " ").first,
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = line.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap({ Double($0) })
        else { return -1 }
        return kilobytes / 1024
    }
}
