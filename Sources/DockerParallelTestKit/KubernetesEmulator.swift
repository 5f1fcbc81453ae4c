import Foundation

/// A Kubernetes API emulator for tests: PyPI's `kmock` KubernetesEmulator, started by a harness
/// script that can also play the kubelet and the Deployment controller (it runs the emulator's
/// pods as containers on the Docker daemon that `DOCKER_HOST` names, and writes their status
/// back). It listens on loopback; ``kubeconfig`` points a provider at it.
///
/// Without Python's `kmock` the tests that need it are skipped, unless
/// `DOCKERPARALLEL_REQUIRE_KUBERNETES=1` (as `.ci/run` sets), which makes it a failure.
public final class KubernetesEmulator: Sendable {
    /// Whether the emulator's tests run here.
    public static let enabled: Bool = {
        if ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_KUBERNETES"] == "1" { return true }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import kmock"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()

    /// The emulator's port on 127.0.0.1.
    public let port: Int
    /// A kubeconfig file whose current context is the emulator, in ``namespace``.
    public let kubeconfig: String
    /// The namespace of the kubeconfig's context.
    public let namespace: String
    private let process: Process
    private let directory: URL

    /// Starts the harness and waits until it listens.
    /// - Parameters:
    ///   - harness: The harness script (`kube_emulator.py`).
    ///   - kubelet: Whether it also runs pods as containers on `DOCKER_HOST`'s daemon.
    ///   - namespace: The kubeconfig's namespace.
    ///   - timeout: How long it may take to listen.
    /// - Throws: When it cannot start, or says nothing within `timeout`.
    public init(harness: String, kubelet: Bool, namespace: String = "dp-test", timeout: Duration = .seconds(30)) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("dp-kube-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let log = directory.appendingPathComponent("emulator.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", harness, "--port", "0"] + (kubelet ? ["--kubelet"] : [])
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
        let words = (line ?? "").split(whereSeparator: \.isWhitespace)
        guard words.count >= 2, words[0] == "listening", let port = Int(words[1]) else {
            process.terminate()
            let said = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            throw EmulatorFailed(description: "the Kubernetes emulator did not start: it printed '\(line ?? "nothing")'; its log: \(said.suffix(2000))")
        }
        self.port = port
        self.namespace = namespace
        kubeconfig = directory.appendingPathComponent("kubeconfig").path
        let config = """
            apiVersion: v1
            kind: Config
            clusters:
            - name: emulator
              cluster:
                server: http://127.0.0.1:\(port)
            users:
            - name: tester
              user:
                token: emulator-token
            contexts:
            - name: emulator
              context:
                cluster: emulator
                user: tester
                namespace: \(namespace)
            current-context: emulator

            """
        try config.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
    }

    /// The harness's log (its stderr), for messages.
    public var log: String { (try? String(contentsOf: directory.appendingPathComponent("emulator.log"), encoding: .utf8)) ?? "" }

    /// Stops the harness (which removes the containers it ran) and waits for it to exit.
    public func stop() {
        defer { try? FileManager.default.removeItem(at: directory) }
        guard process.processIdentifier > 0, kill(process.processIdentifier, 0) == 0 else { return }
        process.terminate()
        // Its exit, with a deadline: it cleans up its containers first.
        let exited = DispatchSemaphore(value: 0)
        let process = process
        Thread {
            process.waitUntilExit()
            exited.signal()
        }.start()
        if exited.wait(timeout: .now() + 60) == .timedOut { kill(process.processIdentifier, SIGKILL) }
    }

    /// The error when the emulator cannot start.
    public struct EmulatorFailed: Error, CustomStringConvertible {
        /// What went wrong.
        public var description: String
    }
}
