import DockerParallel
import Foundation
import Testing
import DockerParallelTestKit

/// The built executables, next to the test bundle.
enum Binaries {
    static var directory: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: executable).deletingLastPathComponent()
        // On Linux the test runner is `<bin>/DockerParallelPackageTests.xctest`.
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("dockerparallel").path), url.path != "/" {
            url.deleteLastPathComponent()
        }
        return url.path
    }

    static var dockerparallel: String { "\(directory)/dockerparallel" }
    static var squaresExample: String { "\(directory)/squares-example" }
}

/// A fresh state folder, removed afterwards.
func withStateDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = NSTemporaryDirectory() + "dp-test-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}
