import Foundation

/// A test harness script run as a child process: started, read until its first line (where it
/// says how to reach it), and stopped by its process id. The emulators' launchers share it.
public final class HarnessProcess: Sendable {
    /// The first line the harness printed on standard output, without its line break.
    public let firstLine: String
    /// A directory the harness's files live in (its log), removed at ``stop()``.
    public let directory: URL
    private let process: Process

    /// Starts `python3 <arguments>` and waits for its first line.
    /// - Parameters:
    ///   - arguments: The script and its arguments.
    ///   - environment: Variables added to this process's environment.
    ///   - name: The harness's name, for messages and its directory.
    ///   - timeout: How long it may take to print its first line.
    /// - Throws: ``Failed`` with the harness's log when it says nothing within `timeout`.
    public init(python arguments: [String], environment: [String: String] = [:], name: String, timeout: Duration) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("dp-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let log = directory.appendingPathComponent("harness.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        self.process = process
        let reader = output.fileHandleForReading
        let line: String? = try await withThrowingTaskGroup(of: String?.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    Thread {
                        var text = Data()
                        while !text.contains(UInt8(ascii: "\n")) {
                            let chunk = reader.availableData
                            if chunk.isEmpty { break }
                            text.append(chunk)
                        }
                        continuation.resume(returning: String(decoding: text, as: UTF8.self))
                    }.start()
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                // Ends the reader's wait too: the group returns only when both children have.
                process.terminate()
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
        firstLine = (line ?? "").split(separator: "\n").first.map(String.init) ?? ""
        if firstLine.isEmpty {
            process.terminate()
            let said = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            throw Failed(description: "the \(name) harness did not start: it printed nothing; its log: \(said.suffix(3000))")
        }
    }

    /// The harness's log (its standard error), for messages.
    public var log: String { (try? String(contentsOf: directory.appendingPathComponent("harness.log"), encoding: .utf8)) ?? "" }

    /// Stops the harness (SIGTERM, SIGKILL after 60 s: it removes what it started first) and
    /// waits for it to exit.
    public func stop() {
        defer { try? FileManager.default.removeItem(at: directory) }
        guard process.processIdentifier > 0, kill(process.processIdentifier, 0) == 0 else { return }
        process.terminate()
        let exited = DispatchSemaphore(value: 0)
        let process = process
        Thread {
            process.waitUntilExit()
            exited.signal()
        }.start()
        if exited.wait(timeout: .now() + 60) == .timedOut { kill(process.processIdentifier, SIGKILL) }
    }

    /// The error when a harness cannot start.
    public struct Failed: Error, CustomStringConvertible {
        /// What went wrong.
        public var description: String
    }

    /// Whether `python3 -c "import <module>"` works here.
    public static func pythonHas(_ module: String) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import \(module)"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }
}
