import Foundation

/// The Swift tasks an executable can run as a worker, by name.
public struct TaskRegistry: Sendable {
    /// Runs one task on encoded input and returns encoded output.
    public typealias Runner = @Sendable (Data) async throws -> Data

    private var runners: [String: Runner] = [:]

    /// Creates an empty registry.
    public init() {}

    /// Creates a registry holding the given task types.
    public init(_ tasks: [any ParallelTask.Type]) {
        for task in tasks { register(task) }
    }

    /// Adds a task type under its ``ParallelTask/name``.
    public mutating func register<Task: ParallelTask>(_ task: Task.Type) {
        runners[Task.name] = { data in
            let input: Task.Input
            do {
                input = try JSONDecoder().decode(Task.Input.self, from: data)
            } catch {
                throw DockerParallelError(
                    .codingFailed,
                    "the input of task '\(Task.name)' could not be decoded as \(Task.Input.self): \(error)"
                )
            }
            return try TaskCoding.encode(try await Task.run(input))
        }
    }

    /// The registered names, sorted.
    public var names: [String] { runners.keys.sorted() }

    /// The runner for a name, or `nil`.
    public func runner(named name: String) -> Runner? { runners[name] }
}
