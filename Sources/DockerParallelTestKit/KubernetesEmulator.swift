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
    public static let enabled: Bool =
        ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_KUBERNETES"] == "1" || HarnessProcess.pythonHas("kmock")

    /// The emulator's port on 127.0.0.1.
    public let port: Int
    /// A kubeconfig file whose current context is the emulator, in ``namespace``.
    public let kubeconfig: String
    /// The namespace of the kubeconfig's context.
    public let namespace: String
    private let harness: HarnessProcess

    /// Starts the harness and waits until it listens.
    /// - Parameters:
    ///   - harness: The harness script (`kube_emulator.py`).
    ///   - kubelet: Whether it also runs pods as containers on `DOCKER_HOST`'s daemon.
    ///   - namespace: The kubeconfig's namespace.
    ///   - timeout: How long it may take to listen.
    /// - Throws: When it cannot start, or says nothing within `timeout`.
    public init(harness script: String, kubelet: Bool, namespace: String = "dp-test", timeout: Duration = .seconds(30)) async throws {
        let harness = try await HarnessProcess(
            python: [script, "--port", "0"] + (kubelet ? ["--kubelet"] : []), name: "kube", timeout: timeout)
        let words = harness.firstLine.split(whereSeparator: \.isWhitespace)
        guard words.count >= 2, words[0] == "listening", let port = Int(words[1]) else {
            harness.stop()
            throw EmulatorFailed(description: "the Kubernetes emulator did not start: it printed '\(harness.firstLine)'; its log: \(harness.log.suffix(2000))")
        }
        self.harness = harness
        self.port = port
        self.namespace = namespace
        kubeconfig = harness.directory.appendingPathComponent("kubeconfig").path
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
    public var log: String { harness.log }

    /// Stops the harness (which removes the containers it ran) and waits for it to exit.
    public func stop() { harness.stop() }

    /// The error when the emulator cannot start.
    public struct EmulatorFailed: Error, CustomStringConvertible {
        /// What went wrong.
        public var description: String
    }
}
