import DockerParallelCore
import Foundation

/// A "container" that is a process on this machine: an executable that runs as a server or a worker
/// according to `DOCKERPARALLEL_ROLE`, such as the `dockerparallel` CLI or a program that calls
/// `DockerParallelMain.runIfRequested`.
public struct LocalProcessContainer: WorkerContainer {
    public var name: String { "LocalProcessContainer" }
    /// The executable's absolute path.
    public var image: String
    public var environment: [String: String]
    public var maxWorkersPerContainer: Int

    /// Creates a container.
    /// - Parameters:
    ///   - executable: The absolute path of the executable (default: this process's own).
    ///   - environment: Extra environment for the process.
    ///   - maxWorkersPerContainer: Worker slots per process (default 1).
    public init(executable: String = LocalProcessContainer.currentExecutable(), environment: [String: String] = [:], maxWorkersPerContainer: Int = 1) {
        self.image = executable
        self.environment = environment
        self.maxWorkersPerContainer = max(1, maxWorkersPerContainer)
    }

    /// The absolute path of the running executable.
    public static func currentExecutable() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    }
}
