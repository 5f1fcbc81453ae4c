import DockerParallel

/// Swift tasks every `dockerparallel` worker can run, for trying the Swift path and for benchmarks.
enum BuiltinTasks {
    /// Returns its input.
    struct Echo: ParallelTask {
        static let name = "echo"
        static func run(_ input: String) async throws -> String { input }
    }

    /// Squares an integer.
    struct Square: ParallelTask {
        static let name = "square"
        static func run(_ input: Int) async throws -> Int { input * input }
    }

    static let registry = TaskRegistry([Echo.self, Square.self])
}
