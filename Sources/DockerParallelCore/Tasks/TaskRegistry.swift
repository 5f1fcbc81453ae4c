import Foundation

/// The Swift tasks an executable can run as a worker, by name.
public struct TaskRegistry: Sendable {
    /// Runs one task on encoded input and returns encoded output.
    package typealias Runner = @Sendable (Data) async throws -> Data

    private var runners: [String: Runner] = [:]

    /// Creates an empty registry.
    public init() {}

    /// Creates a registry holding the given task types.
    public init(_ tasks: [any ParallelTask.Type]) {
        for task in tasks { register(task) }
    }

    /// Adds a task type under its ``ParallelTask/name``.
    public mutating func register<Work: ParallelTask>(_ work: Work.Type) {
        runners[Work.name] = { data in
            let input: Work.Input
            do {
                input = try JSONDecoder().decode(Work.Input.self, from: data)
            } catch {
                throw DockerParallelError(
                    .codingFailed,
                    "the input of task '\(Work.name)' could not be decoded as \(Work.Input.self): \(error)"
                )
            }
            return try TaskCoding.encode(try await Work.run(input))
        }
    }

    /// The registered names, sorted.
    public var names: [String] { runners.keys.sorted() }

    /// The runner for a name, or `nil`.
    package func runner(named name: String) -> Runner? { runners[name] }
}
