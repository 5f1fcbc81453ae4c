import DockerParallelTestKit
import Foundation
import Testing

/// R and the packages the R package needs, where installed (Debian's r-base-core and r-cran-*);
/// `DOCKERPARALLEL_REQUIRE_R=1` (as `.ci/run` sets) makes their absence a failure.
enum RLanguage {
    static let rscript = "/usr/bin/Rscript"
    static var enabled: Bool {
        let environment = ProcessInfo.processInfo.environment
        // `.ci/run` runs this suite in a stage of its own, after the others, not beside them.
        if environment["DOCKERPARALLEL_R_SUITE_SEPARATELY"] == "1" { return false }
        return FileManager.default.isExecutableFile(atPath: rscript) || environment["DOCKERPARALLEL_REQUIRE_R"] == "1"
    }

    /// The R package's folder in this repository.
    static var package: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("r/dockerparallel").path
    }

    /// Runs a program to its end on a thread of its own; its output and exit status.
    static func run(_ executable: String, _ arguments: [String], in directory: String? = nil, environment: [String: String]) async throws -> (output: String, status: Int32) {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: executable)
                    process.arguments = arguments
                    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
                    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
                    let pipe = Pipe()
                    process.standardOutput = pipe
                    process.standardError = pipe
                    process.standardInput = FileHandle.nullDevice
                    try process.run()
                    let data = pipe.fileHandleForReading.readDataToEndOfFile()
                    process.waitUntilExit()
                    return (String(decoding: data, as: UTF8.self), process.terminationStatus)
                })
            }.start()
        }
    }
}

/// The R package's own test suite (testthat), against real clusters of this build's
/// `dockerparallel`: local ones, and a Docker one where `DOCKERPARALLEL_R_IMAGE` names an image
/// with R (`.ci/run` builds it).
@Suite(.timeLimit(.minutes(10)), .enabled(if: RLanguage.enabled, "needs R: apt-get install r-base-core r-cran-foreach r-cran-globals r-cran-curl r-cran-jsonlite r-cran-testthat (set DOCKERPARALLEL_REQUIRE_R=1 to fail instead)"))
struct RPackageTests {
    @Test func theRPackagesTestsPassAgainstRealClusters() async throws {
        let library = NSTemporaryDirectory() + "dp-r-library-\(UUID().uuidString.prefix(8))"
        let home = NSTemporaryDirectory() + "dp-r-home-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: library, withIntermediateDirectories: true)
        defer {
            try? FileManager.default.removeItem(atPath: library)
            try? FileManager.default.removeItem(atPath: home)
        }
        let install = try await RLanguage.run("/usr/bin/R", ["CMD", "INSTALL", "--no-multiarch", "-l", library, RLanguage.package], environment: [:])
        #expect(install.status == 0, "R CMD INSTALL failed:\n\(install.output.suffix(3000))")
        guard install.status == 0 else { return }
        let binary = CLI.binary
        let path = (binary as NSString).deletingLastPathComponent + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let tests = try await RLanguage.run(
            RLanguage.rscript, ["testthat.R"], in: RLanguage.package + "/tests",
            environment: ["R_LIBS": library, "PATH": path, "DOCKERPARALLEL_PROGRAM": binary, "DOCKERPARALLEL_HOME": home])
        #expect(tests.status == 0 && tests.output.contains("[ FAIL 0 |"), "the R tests failed:\n\(tests.output.suffix(6000))")
        // Every test ran: none skipped where it was required.
        if ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_DOCKER"] == "1" {
            #expect(tests.output.contains("SKIP 0 |"), "\(tests.output.suffix(3000))")
        }
    }
}
