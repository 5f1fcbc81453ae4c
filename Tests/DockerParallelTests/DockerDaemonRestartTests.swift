#if canImport(Glibc)
import Glibc
#endif
import DockerEngineProvider
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// A dockerd of the test's own (its own socket, data, exec root and pid file), so that restarting
/// it disturbs no other test. Stopped by its process id.
final class PrivateDockerd: Sendable {
    let root: String
    let host: DockerHost
    private let process = NIOLockedProcess()

    let extraArguments: [String]

    /// The dockerd binary, if this machine has one.
    static let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Whether the tests that start their own daemon run: with dockerd here, or when Docker is required.
    static let enabled = DockerTesting.enabled && (dockerd != nil || DockerTesting.required)

    /// - Parameter extraArguments: More dockerd arguments (a TLS listener, say).
    init(extraArguments: [String] = []) throws {
        root = NSTemporaryDirectory() + "dp-dockerd-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        host = DockerHost(address: .unix("\(root)/docker.sock"))
        self.extraArguments = extraArguments
    }

    /// Starts the daemon and waits until it answers.
    func start() async throws {
        let dockerd = Process()
        dockerd.executableURL = URL(fileURLWithPath: Self.dockerd ?? "/usr/sbin/dockerd")
        dockerd.arguments = [
            "--host", "unix://\(root)/docker.sock", "--data-root", "\(root)/data", "--exec-root", "\(root)/exec",
            "--pidfile", "\(root)/dockerd.pid", "--iptables=false", "--bridge=none",
        ] + extraArguments
        let log = FileHandle(forWritingAtPath: "\(root)/dockerd.log") ?? {
            FileManager.default.createFile(atPath: "\(root)/dockerd.log", contents: nil)
            return FileHandle(forWritingAtPath: "\(root)/dockerd.log")!
        }()
        dockerd.standardOutput = log
        dockerd.standardError = log
        try dockerd.run()
        process.set(dockerd)
        let socket = "\(root)/docker.sock"
        try await waitUntil("the private dockerd answers", timeout: 60, interval: 0.1) {
            FileManager.default.fileExists(atPath: socket) && DockerEngineClientProbe.answers(socket)
        }
    }

    /// Stops the daemon (SIGTERM, as a service manager does) and waits for it to exit.
    func stop() async throws {
        guard let dockerd = process.take() else { return }
        dockerd.terminate()
        try await waitUntil("the private dockerd exits", timeout: 60, interval: 0.1) { !dockerd.isRunning }
    }

    /// Removes what the daemon kept (its containers are gone with it), after unmounting what
    /// dockerd leaves mounted under its folders (its network namespace file).
    func remove() {
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 1, fields[1].hasPrefix(root) else { continue }
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = ["-l", String(fields[1])]
            try? umount.run()
            umount.waitUntilExit()
        }
        _ = try? FileManager.default.removeItem(atPath: root)
    }
}

/// A process handle shared across tasks.
final class NIOLockedProcess: @unchecked Sendable {
    // Every access holds `lock`.
    private let lock = NSLock()
    private var process: Process?

    func set(_ process: Process) { lock.withLock { self.process = process } }
    func take() -> Process? { lock.withLock { defer { process = nil }; return process } }
}

@Suite(
    .timeLimit(.minutes(5)),
    .enabled(if: PrivateDockerd.enabled, "no dockerd here"))
struct DockerDaemonRestartTests {
    /// The daemon goes away and comes back in the middle of a job: the client waits for it,
    /// `update()` re-creates the containers it stopped, and every task gets one result.
    @Test func aJobSurvivesItsDockerDaemonRestarting() async throws {
        let daemon = try PrivateDockerd()
        defer { daemon.remove() }
        try await daemon.start()
        do {
            let image = "dockerparallel-test/restart:latest"
            _ = try await ImageBuilder(host: daemon.host).build(.init(
                tag: image, dockerparallelBinary: Binaries.dockerparallel, extraPrograms: ["/bin/sh", "/bin/sleep"]))
            let cluster = try DockerCluster(
                provider: try DockerEngineProvider(configuration: .init(host: daemon.host, stopGracePeriod: .seconds(2))),
                workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(jobQueueName: "restart-docker", expectedWorkerNumber: 2, serverPort: 0),
                verbosity: 0)
            try await cluster.withStarted { cluster in
                let count = 120
                let job = try await cluster.submitCommands(
                    try CommandTemplate(["sh", "-c", "sleep 0.05; echo {}"]), inputs: (0..<count).map(String.init))
                var seen: [Int: String] = [:]
                var restarted = false
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await cluster.supervise(every: .milliseconds(300)) }
                    for try await result in try await job.results() {
                        #expect(seen[result.index] == nil, "task \(result.index) has two results")
                        seen[result.index] = String(decoding: result.output, as: UTF8.self)
                        if seen.count == 20, !restarted {
                            restarted = true
                            try await daemon.stop()
                            try await daemon.start()
                        }
                    }
                    group.cancelAll()
                }
                #expect(restarted)
                #expect(seen.count == count)
                #expect(seen.allSatisfy { $0.value == "\($0.key)\n" })
            }
            try await cluster.cleanup(deep: true)
        } catch {
            try? await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }
}

@Suite(
    .timeLimit(.minutes(5)),
    .enabled(
        if: PrivateDockerd.enabled && FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"),
        "no dockerd or openssl here"))
struct DockerTLSTests {
    /// Certificates for a daemon on loopback that verifies its clients, made with openssl.
    static func makeCertificates(in folder: String) throws {
        let script = """
            set -e
            cd "$1"
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 1 -subj /CN=test-ca 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 1 -extfile server.ext 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout key.pem -out client.csr -subj /CN=client 2>/dev/null
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 1 -extfile client.ext 2>/dev/null
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script, "sh", folder]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw DockerParallelError(.providerFailed, "openssl failed") }
    }

    /// The provider speaks to a daemon over TCP with TLS client certificates, as DOCKER_HOST,
    /// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH say; without them, the error says what to set.
    @Test func theProviderRunsAClusterOnADaemonThatRequiresTLS() async throws {
        let certificates = NSTemporaryDirectory() + "dp-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: certificates, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: certificates) }
        try Self.makeCertificates(in: certificates)
        let port = Int.random(in: 20000...40000)
        let daemon = try PrivateDockerd(extraArguments: [
            "--host", "tcp://127.0.0.1:\(port)", "--tlsverify", "--tlscacert", "\(certificates)/ca.pem",
            "--tlscert", "\(certificates)/server-cert.pem", "--tlskey", "\(certificates)/server-key.pem",
        ])
        defer { daemon.remove() }
        try await daemon.start()
        do {
            let host = try DockerHost.fromEnvironment([
                "DOCKER_HOST": "tcp://127.0.0.1:\(port)", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": certificates,
            ])
            #expect(host.description == "tcp+tls://127.0.0.1:\(port)")
            let image = "dockerparallel-test/tls:latest"
            _ = try await ImageBuilder(host: host).build(.init(tag: image, dockerparallelBinary: Binaries.dockerparallel))
            let cluster = try DockerCluster(
                provider: try DockerEngineProvider(configuration: .init(host: host, stopGracePeriod: .seconds(2))),
                workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(jobQueueName: "tls-docker", expectedWorkerNumber: 1, serverPort: 0),
                verbosity: 0)
            let outputs = try await cluster.withStarted { cluster in
                var outputs: [String] = []
                for try await result in try await cluster.submitCommands(try CommandTemplate(["sh", "-c", "echo tls {}"]), inputs: ["1", "2"]).results() {
                    outputs.append(String(decoding: result.output, as: UTF8.self))
                }
                return outputs.sorted()
            }
            #expect(outputs == ["tls 1\n", "tls 2\n"])
            try await cluster.cleanup(deep: true)

            // Plain HTTP to the TLS port: a clear error naming the settings.
            let plain = try DockerCluster(
                provider: try DockerEngineProvider(configuration: .init(host: DockerHost(parsing: "tcp://127.0.0.1:\(port)"))),
                workerContainer: DockerWorkerContainer(image: image),
                configuration: ClusterConfiguration(jobQueueName: "tls-plain"), verbosity: 0)
            let error = await #expect(throws: DockerParallelError.self) { _ = try await plain.clusterExists() }
            #expect(error?.message.contains("DOCKER_TLS_VERIFY") == true, "\(String(describing: error))")
        } catch {
            try? await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }
}
