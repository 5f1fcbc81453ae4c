import DockerParallelCore
import DockerParallelWire
import Foundation
import Logging
import NIOCore
import NIOPosix

extension DockerCluster {
    /// The client connection to the server, made on first use and remade when lost.
    func client() async throws -> PeerConnection {
        if let connection, connection.isOpen { return connection }
        if !runtime.serverFromOtherSource {
            try await initializeProvider()
            let deadline = ContinuousClock.now + .seconds(60)
            while try await provider.serverStatus(context: context()) == .initializing {
                guard ContinuousClock.now < deadline else {
                    throw DockerParallelError(.timedOut, "the server did not become ready within 60 s")
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        guard let endpoint = runtime.serverEndpoints?.endpoint(sameLAN: configuration.serverClientSameLAN) else {
            throw DockerParallelError(
                .serverNotRunning, "The server of '\(configuration.jobQueueName)' is not running: start the cluster first")
        }
        let hello = Hello(role: .client, password: configuration.serverPassword.value, name: "client-\(ProcessInfo.processInfo.processIdentifier)")
        let connection = try await PeerConnection.connect(
            to: endpoint, hello: hello, on: eventLoop, certificateAuthority: configuration.transportSecurity.certificateAuthority)
        self.connection = connection
        return connection
    }

    /// Errors after which the server may come back (restarted by a supervisor or the platform).
    static let serverRetryCodes: Set<DockerParallelError.Code> = [.connectionFailed, .serverStartFailed, .serverNotRunning, .providerFailed]

    /// Runs an idempotent request; when the connection to the server is lost, waits for the
    /// server to come back (restarted by `update()` or by someone else) and runs it again. A
    /// provider that cannot be reached (a Docker daemon restarting) is waited for the same way.
    func withServerRetry<T: Sendable>(_ operation: @Sendable (PeerConnection) async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + serverRecoveryTimeout
        var delay = 0.05
        while true {
            do {
                return try await operation(try await client())
            } catch let error as DockerParallelError where Self.serverRetryCodes.contains(error.code) {
                guard ContinuousClock.now < deadline else { throw error }
                // A server stopped on purpose (`down`, from any process) is not coming back.
                if !runtime.serverFromOtherSource, (try? await wasStoppedOnPurpose()) == true {
                    throw DockerParallelError(
                        .serverNotRunning,
                        "the cluster '\(configuration.jobQueueName)' was stopped (`dockerparallel down` or stopCluster()) while this job used it")
                }
                say("Lost the server (\(error.message)); waiting for it to come back", level: 2)
                connection?.close()
                connection = nil
                try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
                delay = min(delay * 2, 1)
                if !runtime.serverFromOtherSource,
                   (try? await provider.serverStatus(context: context())) == .running,
                   let endpoints = try? await provider.serverEndpoints(context: context()) {
                    runtime.serverEndpoints = endpoints
                }
            }
        }
    }

    /// Logs a progress message (level 1, `info`) or a detail (level 2, `debug`).
    func say(_ message: String, level: Int = 1) {
        logger.log(level: level >= 2 ? .debug : .info, "\(message)")
    }

    func initializeProvider() async throws {
        guard !providerInitialized else { return }
        try await provider.initialize(context: context())
        providerInitialized = true
    }

    /// The provider's worker numbers with this handle's expected number, remembered in the
    /// runtime; the slots connected to the server when the provider cannot count (see ``workerNumbers()``).
    func countWorkers() async throws -> WorkerNumbers {
        var numbers: WorkerNumbers
        do {
            numbers = try await provider.workerNumbers(context: context())
        } catch let error as DockerParallelError where error.code == .unsupported {
            logger.debug("\(error.message); counting the workers connected to the server instead")
            let connected = isServerRunning ? try await serverReport().workerSlots : 0
            numbers = WorkerNumbers(expected: 0, initializing: 0, running: connected)
        }
        numbers.expected = configuration.expectedWorkerNumber
        runtime.initializingWorkerNumber = numbers.initializing
        runtime.runningWorkerNumber = numbers.running
        return numbers
    }

    /// Whether the provider sees the cluster; `nil` when it cannot tell (`.unsupported`).
    func providerClusterExists() async throws -> Bool? {
        do {
            return try await provider.clusterExists(context: context())
        } catch let error as DockerParallelError where error.code == .unsupported {
            logger.debug("\(error.message); the cluster may or may not exist")
            return nil
        }
    }

    func updateServerStatus() async throws {
        if runtime.serverFromOtherSource { return }
        try await initializeProvider()
        switch try await provider.serverStatus(context: context()) {
        case .stopped:
            runtime.serverEndpoints = nil
            connection?.close()
            connection = nil
        case .running, .initializing:
            runtime.serverEndpoints = try await provider.serverEndpoints(context: context())
        }
    }

    /// The provider's static data of this cluster; `nil` when it has none or keeps none.
    func storedStaticData() async throws -> StaticData? {
        do {
            return try await provider.storedStaticData(context: context())
        } catch let error as DockerParallelError where error.code == .unsupported {
            logger.debug("\(error.message); a restarted server gets this handle's settings")
            return nil
        }
    }

    /// Whether the provider forgot the server's static data, as it does when the server is
    /// stopped on purpose; `false` when it keeps none anyway.
    func wasStoppedOnPurpose() async throws -> Bool {
        do {
            return try await provider.storedStaticData(context: context()) == nil
        } catch let error as DockerParallelError where error.code == .unsupported {
            return false
        }
    }

    /// A server that died restarts with the identity it had: the password that its workers and
    /// clients hold, its port and settings (the worker number stays this handle's).
    func adoptStoredIdentity() async throws {
        guard let stored = try await storedStaticData() else { return }
        guard stored.workerContainerName == workerContainer.name else {
            throw DockerParallelError(
                .invalidState,
                "The cluster '\(configuration.jobQueueName)' was started with the worker container \(stored.workerContainerName), not \(workerContainer.name): stop it with `dockerparallel down --name \(configuration.jobQueueName)` to start it anew")
        }
        var adopted = stored.configuration
        adopted.expectedWorkerNumber = configuration.expectedWorkerNumber
        if adopted != configuration {
            say("Restarting the server of '\(configuration.jobQueueName)' with the password, port and settings it had")
            configuration = adopted
        }
    }

    func step(_ ignoreErrors: Bool, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch where ignoreErrors {
            say("Warning: \(error)")
        }
    }

    func context() -> ClusterContext {
        ClusterContext(
            configuration: configuration, runtime: runtime,
            staticData: StaticData(
                configuration: configuration, workerContainerName: workerContainer.name, workerImage: workerContainer.image,
                maxWorkersPerContainer: workerContainer.maxWorkersPerContainer, verbosity: verbosity),
            stopClusterOnExit: stopClusterOnExit, verbosity: verbosity, logger: logger)
    }
}
