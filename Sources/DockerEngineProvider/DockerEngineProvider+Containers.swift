import DockerParallelCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import ProviderKit

extension DockerEngineProvider {
    // MARK: Containers

    /// The containers of a cluster (all of a role, or every one), in any state.
    func list(_ context: ClusterContext, role: String?) async throws -> [ContainerSummary] {
        var selector = Self.selector(context)
        if let role { selector = selector.adding(Label.role, role) }
        return try await engine.get(
            [ContainerSummary].self, "/containers/json", query: ["all": "true", "filters": selector.dockerFilters])
    }

    /// The resources of a cluster: those labelled with its job queue name.
    static func selector(_ context: ClusterContext) -> LabelSelector {
        LabelSelector([Label.queue: context.configuration.jobQueueName])
    }

    func inspect(_ nameOrID: String) async throws -> ContainerInspect? {
        do {
            return try await engine.get(ContainerInspect.self, "/containers/\(nameOrID)/json")
        } catch let error as RESTError where error.status == 404 {
            return nil
        }
    }

    func requireImage(_ image: String) async throws {
        try await engine.requireImage(image)
    }

    func create(
        name: String, container: any WorkerContainer, environment: [String: String], labels: [String: String],
        hardware: Hardware, binds: [String]?, publishing port: Int? = nil
    ) async throws -> String {
        let environment = Self.startupEnvironment(container, environment)
        // Off the host network, the server's port is published on the server address.
        let published = usesHostNetwork ? nil : port.map { "\($0)/tcp" }
        let body = ContainerCreate(
            Image: container.image,
            Env: environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
            Labels: labels,
            ExposedPorts: published.map { [$0: ContainerCreate.Empty()] },
            HostConfig: .init(
                NetworkMode: configuration.networkMode,
                NanoCpus: hardware.cpu > 0 ? Int64(hardware.cpu) * 1_000_000_000 / 1024 : nil,
                Memory: hardware.memory > 0 ? Int64(hardware.memory) * 1024 * 1024 : nil,
                Binds: binds, Init: true,
                PortBindings: published.map {
                    [$0: [.init(HostIp: configuration.serverAddress, HostPort: String(port ?? 0))]]
                }))
        do {
            return try JSONDecoder().decode(
                ContainerCreated.self, from: try await engine.send(.POST, "/containers/create", query: ["name": name], json: body)
            ).Id
        } catch let error as RESTError where error.status == 409 {
            throw NameInUse()
        } catch let error as RESTError {
            throw DockerParallelError(.providerFailed, "cannot create the container \(name): \(error.message)")
        }
    }

    /// `environment` plus what a container's start-up reads: that it runs in a container, and
    /// the packages to install and the SSH key to authorise.
    package static func startupEnvironment(_ container: any WorkerContainer, _ environment: [String: String]) -> [String: String] {
        var environment = environment
        environment["DOCKERPARALLEL_CONTAINER"] = "1"
        if !container.systemPackages.isEmpty {
            environment["DOCKERPARALLEL_SYSTEM_PACKAGES"] = container.systemPackages.joined(separator: " ")
        }
        if !container.languagePackages.isEmpty {
            environment["DOCKERPARALLEL_LANGUAGE_PACKAGES"] = container.languagePackages.joined(separator: " ")
        }
        if let key = container.sshPublicKey { environment["DOCKERPARALLEL_SSH_PUBLIC_KEY"] = key }
        return environment
    }

    /// A container with that name exists already (another process created it first).
    struct NameInUse: Error {}

    func start(_ id: String, name: String) async throws {
        do {
            // Starting a started container answers 304: safe to send again.
            try await engine.send(.POST, "/containers/\(id)/start", isIdempotent: true)
        } catch let error as RESTError where error.status == 304 {
            // Started already (by another process).
            _ = error
        } catch let error as RESTError {
            try? await remove(id)
            throw DockerParallelError(.providerFailed, "cannot start the container \(name): \(error.message)")
        }
    }

    /// Renames a container; one already renamed, or gone, is left as it is.
    func rename(_ id: String, to name: String) async throws {
        do {
            try await engine.send(.POST, "/containers/\(id)/rename", query: ["name": name])
        } catch let error as RESTError where error.status == 404 || error.status == 409
            || (error.status == 400 && error.message.contains("same name"))
        {
            // Gone, or renamed by another process first.
        }
    }

    func stopAndRemove(_ id: String) async throws {
        do {
            try await engine.send(
                .POST, "/containers/\(id)/stop", query: ["t": String(Int(configuration.stopGracePeriod.inSeconds))],
                timeout: configuration.stopGracePeriod.inSeconds + 30, isIdempotent: true)
        } catch let error as RESTError where error.status == 304 || error.status == 404 {
            // Already stopped, or gone.
        }
        try await remove(id)
    }

    func remove(_ id: String) async throws {
        do {
            try await engine.send(.DELETE, "/containers/\(id)", query: ["force": "true"])
        } catch let error as RESTError where error.status == 404 {
            // Already gone.
        } catch let error as RESTError where error.status == 409 {
            // Removal already in progress.
            _ = error
        }
    }

    var usesHostNetwork: Bool { configuration.networkMode == "host" }

    /// Creates the network the containers use when it is a named one that does not exist yet
    /// (labelled, so that a deep cleanup removes it).
    func ensureNetwork(_ context: ClusterContext) async throws {
        let mode = configuration.networkMode
        guard !["host", "bridge", "none", "default"].contains(mode), !mode.hasPrefix("container:") else { return }
        do {
            _ = try await engine.send(.GET, "/networks/\(mode)")
        } catch let error as RESTError where error.status == 404 {
            try await engine.send(
                .POST, "/networks/create",
                json: NetworkCreate(Name: mode, Labels: [Label.queue: context.configuration.jobQueueName]))
        }
    }

    /// Whether the server in this container accepts connections: on the server address with host
    /// networking, else on its own address (a published port accepts before the server does).
    func isListening(_ server: ContainerInspect?, port: Int) async -> Bool {
        guard let server, server.State.Running else { return false }
        let host = usesHostNetwork ? configuration.serverAddress : (server.address(on: configuration.networkMode) ?? configuration.serverAddress)
        return await Self.isListening(host: host, port: port)
    }

    /// The last lines a container printed.
    func logTail(_ id: String, lines: Int = 20) async throws -> String {
        let data = try await engine.send(
            .GET, "/containers/\(id)/logs", query: ["stdout": "true", "stderr": "true", "tail": String(lines)])
        let text = LogStream.text(data).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "(nothing)" : text
    }

    // MARK: Names and helpers

    static func serverName(_ context: ClusterContext) -> String {
        "dockerparallel-\(context.configuration.jobQueueName)-server"
    }

    static func volumeName(_ context: ClusterContext) -> String {
        "dockerparallel-\(context.configuration.jobQueueName)-store"
    }

    static func isDead(_ state: String) -> Bool {
        state == "exited" || state == "dead"
    }

    static func randomSuffix() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next() & 0xffff_ffff, radix: 16)
    }

    /// A port nobody listens on now: bound on `host` at port 0, then let go.
    package static func freePort(on host: String) async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: host, port: 0).get()
        let port = channel.localAddress?.port
        try? await channel.close().get()
        guard let port else {
            throw DockerParallelError(.providerFailed, "cannot find a free port on \(host)")
        }
        return port
    }

    /// Whether something accepts connections at host:port.
    package static func isListening(host: String, port: Int) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(500))
                .connect(host: host, port: port).get()
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }
}
