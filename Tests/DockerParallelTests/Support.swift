import DockerParallel
import Foundation
import Testing
import DockerParallelTestKit

/// The built executables, next to the test bundle.
enum Binaries {
    static var directory: String {
        (BuiltProducts.path(of: "dockerparallel") as NSString).deletingLastPathComponent
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
