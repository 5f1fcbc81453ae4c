import DockerParallelTestKit
import Foundation
import Testing

/// Runs the built `dockerparallel` binary.
struct CLI: Sendable {
    struct Outcome: Sendable {
        var status: Int32
        var output: String
        var errorOutput: String
    }

    /// The state folder every command of this CLI uses.
    var home: String
    /// Variables every command gets besides this process's (an emulator's endpoints).
    var environment: [String: String] = [:]

    init() throws {
        home = NSTemporaryDirectory() + "dp-cli-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    /// The built `dockerparallel` binary, next to the test bundle.
    static var binary: String { BuiltProducts.path(of: "dockerparallel") }

    /// Starts the binary; the caller waits for it.
    func start(_ arguments: [String], stdin: String? = nil) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment.merging(self.environment) { $1 }
        environment["DOCKERPARALLEL_HOME"] = home
        environment["TMPDIR"] = home + "/"
        process.environment = environment
        let output = Pipe()
        let errorOutput = Pipe()
        process.standardOutput = output
        process.standardError = errorOutput
        if let stdin {
            let input = Pipe()
            process.standardInput = input
            try process.run()
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
        return (process, output, errorOutput)
    }

    /// Runs the binary to its end, on a thread of its own so that waiting never blocks the
    /// tests' shared concurrency threads.
    @discardableResult
    func run(_ arguments: [String], stdin: String? = nil) async throws -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try runBlocking(arguments, stdin: stdin) }) }.start()
        }
    }

    private func runBlocking(_ arguments: [String], stdin: String?) throws -> Outcome {
        let (process, output, errorOutput) = try start(arguments, stdin: stdin)
        // Read both pipes to their end before waiting, so a large output cannot block the child.
        let outputReader = StreamReader(output)
        let errorReader = StreamReader(errorOutput)
        outputReader.waitUntilDone()
        errorReader.waitUntilDone()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, output: outputReader.text, errorOutput: errorReader.text)
    }

    /// Stops every cluster this CLI started.
    func tearDown() {
        let clusters = (try? FileManager.default.contentsOfDirectory(atPath: home + "/clusters")) ?? []
        for name in clusters { _ = try? runBlocking(["down", "--name", name], stdin: nil) }
        try? FileManager.default.removeItem(atPath: home)
    }
}

/// Reads a pipe on a thread of its own, so that what has arrived so far can be looked at.
final class StreamReader: @unchecked Sendable {
    // Every access to `data` and `done` holds `lock`.
    private let lock = NSLock()
    private var data = Data()
    private var done = false

    private let finished = DispatchSemaphore(value: 0)

    init(_ pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        Thread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.withLock { data.append(chunk) }
            }
            lock.withLock { done = true }
            finished.signal()
        }.start()
    }

    /// Blocks the calling thread (never a shared concurrency thread) until the pipe's end.
    func waitUntilDone() {
        finished.wait()
        finished.signal()
    }

    var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
    var isDone: Bool { lock.withLock { done } }
}

/// The pids in a cluster's worker pid files.
func workerProcessIDs(in directory: String) -> [Int32] {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return files.filter { $0.hasSuffix(".pid") }.compactMap { name in
        guard let text = try? String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8) else { return nil }
        return text.split(separator: " ").first.flatMap { Int32($0) }
    }
}
