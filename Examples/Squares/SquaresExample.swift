import DockerParallel
import Foundation

/// Squares an integer on a worker; fails for negative inputs to show how failures are reported.
struct Square: ParallelTask {
    static func run(_ input: Int) async throws -> Int {
        guard input >= 0 else { throw SquareError(input: input) }
        return input * input
    }
}

struct SquareError: Error, CustomStringConvertible {
    var input: Int
    var description: String { "negative input \(input)" }
}

@main
struct SquaresExample {
    static func main() async throws {
        // When a provider starts this program as the server or a worker, serve and exit.
        await DockerParallelMain.runIfRequested(registry: TaskRegistry([Square.self]))

        let arguments = CommandLine.arguments.dropFirst()
        let count = arguments.first.flatMap(Int.init) ?? 10_000
        let workers = arguments.dropFirst().first.flatMap(Int.init) ?? 2
        let state = NSTemporaryDirectory() + "squares-example-\(ProcessInfo.processInfo.processIdentifier)"
        let cluster = try DockerCluster(
            provider: LocalProvider(configuration: .init(stateDirectory: state)),
            configuration: ClusterConfiguration(jobQueueName: "squares", expectedWorkerNumber: workers, serverPort: 0),
            verbosity: 0)
        let start = ContinuousClock.now
        let squares = try await cluster.withStarted { cluster in
            try await cluster.map(Array(0..<count), using: Square.self)
        }
        try? FileManager.default.removeItem(atPath: state)
        let elapsed = ContinuousClock.now - start
        print("squared \(squares.count) inputs on \(workers) workers in \(elapsed); sum = \(squares.reduce(0, +))")
    }
}
