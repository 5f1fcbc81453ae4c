import DockerEngineProvider
import DockerParallelCore
import Foundation
import ProviderKit

extension SwarmProvider {
    // MARK: Specs

    /// The spec of a server or worker service: a pure mapping, with a digest of itself in the
    /// label ``Label/spec`` (replicas left out), so that a changed spec is told from a scaled one.
    /// - Parameters:
    ///   - environment: Without secrets: they come as `secrets`, files under `/run/secrets`.
    ///   - publishing: On an overlay network, the server's port, published on its node.
    ///   - networkID: The overlay network's id; `nil` for the host network's.
    ///   - serverConstraints: Whether the server's own placement constraints apply.
    static func serviceSpec(
        name: String, labels: [String: String], container: any WorkerContainer, environment: [String: String],
        secrets: [TaskSpec.SecretReference], hardware: Hardware, replicas: Int, mounts: [TaskSpec.Mount], publishing port: Int?,
        networkID: String, serverConstraints: Bool, configuration: Configuration
    ) -> ServiceSpec {
        let environment = DockerEngineProvider.startupEnvironment(container, environment)
        let values = TaskSpec.ResourceValues(
            NanoCPUs: hardware.cpu > 0 ? Int64(hardware.cpu) * 1_000_000_000 / 1024 : nil,
            MemoryBytes: hardware.memory > 0 ? Int64(hardware.memory) * 1024 * 1024 : nil)
        let hasValues = values.NanoCPUs != nil || values.MemoryBytes != nil
        let constraints = configuration.constraints + (serverConstraints ? configuration.serverConstraints : [])
        var spec = ServiceSpec(
            Name: name, Labels: labels,
            TaskTemplate: TaskSpec(
                ContainerSpec: .init(
                    Image: container.image,
                    Labels: [Label.containerQueue: labels[Label.queue] ?? "", Label.containerRole: labels[Label.role] ?? ""],
                    Env: environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
                    Init: true, Mounts: mounts.isEmpty ? nil : mounts, Secrets: secrets.isEmpty ? nil : secrets,
                    StopGracePeriod: Int64(configuration.stopGracePeriod.inSeconds * 1e9)),
                Resources: hasValues ? .init(Limits: values, Reservations: configuration.reservesHardware ? values : nil) : nil,
                // Swarm replaces a task that ends, whatever its status.
                RestartPolicy: .init(Condition: "any", Delay: 1_000_000_000),
                Placement: constraints.isEmpty ? nil : .init(Constraints: constraints),
                Networks: [.init(Target: networkID)]),
            Mode: ServiceMode(Replicated: .init(Replicas: 0)),
            EndpointSpec: configuration.usesHostNetwork
                ? nil
                : EndpointSpec(
                    Mode: configuration.endpointMode,
                    Ports: port.map { [.init(Protocol: "tcp", TargetPort: $0, PublishedPort: $0, PublishMode: "host")] }))
        spec.Labels[Label.spec] = digest(spec)
        spec.Mode.Replicated?.Replicas = replicas
        return spec
    }

    /// FNV-1a (64 bits) of the spec's JSON with sorted keys, in hex: stable across processes.
    static func digest(_ spec: ServiceSpec) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // A spec of strings and numbers always encodes.
        let data = (try? encoder.encode(spec)) ?? Data()
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(hash, radix: 16)
    }

    // MARK: Services

    /// The resources of a cluster: those labelled with its job queue name.
    static func selector(_ context: ClusterContext) -> LabelSelector {
        LabelSelector([Label.queue: context.configuration.jobQueueName])
    }

    /// The containers of a cluster's tasks on a node.
    static func containerSelector(_ context: ClusterContext) -> LabelSelector {
        LabelSelector([Label.containerQueue: context.configuration.jobQueueName])
    }

    static func serverName(_ context: ClusterContext) -> String {
        "dockerparallel-\(context.configuration.jobQueueName)-server"
    }

    static func workerName(_ context: ClusterContext, slots: Int) -> String {
        "dockerparallel-\(context.configuration.jobQueueName)-worker-\(slots)"
    }

    static func volumeName(_ context: ClusterContext) -> String {
        // Not the Docker provider's volume name: a cluster of the same name there keeps its own.
        "dockerparallel-swarm-\(context.configuration.jobQueueName)-store"
    }

    /// The services of a cluster (all of a role, or every one).
    func services(_ context: ClusterContext, role: String?) async throws -> [Service] {
        var selector = Self.selector(context)
        if let role { selector = selector.adding(Label.role, role) }
        return try await engine.get([Service].self, "/services", query: ["filters": selector.dockerFilters])
    }

    /// The service with this name, or `nil`.
    func service(named name: String) async throws -> Service? {
        do {
            return try await engine.get(Service.self, "/services/\(name)")
        } catch let error as RESTError where error.status == 404 {
            return nil
        }
    }

    /// The tasks of these services.
    func tasks(of serviceIDs: [String]) async throws -> [SwarmTask] {
        guard !serviceIDs.isEmpty else { return [] }
        let filters = String(decoding: try JSONEncoder().encode(["service": serviceIDs.sorted()]), as: UTF8.self)
        return try await engine.get([SwarmTask].self, "/tasks", query: ["filters": filters])
    }

    /// A service with that name exists already (another process created it first).
    struct NameInUse: Error {}

    /// Creates a service without resolving its image in a registry (as `--no-resolve-image`).
    /// - Throws: ``NameInUse`` when the name is taken (409).
    func createService(_ spec: ServiceSpec) async throws -> String {
        do {
            let data = try await engine.send(.POST, "/services/create", json: spec)
            return try JSONModels.decode(ServiceCreated.self, from: data, platform: DockerEngineClient.platform, request: "POST /services/create").ID
        } catch let error as RESTError where error.status == 409 {
            throw NameInUse()
        } catch let error as RESTError {
            throw DockerParallelError(.providerFailed, "cannot create the swarm service \(spec.Name): \(error.message)")
        }
    }

    /// Replaces a service's spec. The update names the version it read; a stale one (another
    /// process updated the service meanwhile) answers 500 and is read again and retried.
    func updateService(_ service: Service, spec: ServiceSpec, attempts: Int = 5) async throws {
        var version = service.Version.Index
        for attempt in 1...attempts {
            do {
                try await engine.send(.POST, "/services/\(service.ID)/update", query: ["version": String(version)], json: spec)
                return
            } catch let error as RESTError where error.status == 500 && attempt < attempts {
                guard let current = try await self.service(named: service.ID) else {
                    throw DockerParallelError(.providerFailed, "the swarm service \(spec.Name) was removed while it was updated")
                }
                version = current.Version.Index
            } catch let error as RESTError {
                throw DockerParallelError(
                    .providerFailed, "cannot update the swarm service \(spec.Name) (version \(version)): \(error.message)")
            }
        }
    }

    /// Removes a service; its tasks get the grace period to stop. One already gone is fine.
    func removeService(_ id: String) async throws {
        do {
            try await engine.send(.DELETE, "/services/\(id)")
        } catch let error as RESTError where error.status == 404 {
            // Already gone.
        }
    }

    // MARK: Server

    /// Whether the server service has a running task that accepts connections. On an overlay
    /// network a published port accepts before the server does (the proxy does), so there the
    /// running task must have logged that it listens.
    func isServing(_ server: Service) async throws -> Bool {
        guard let task = try await tasks(of: [server.ID]).first(where: \.isRunning) else { return false }
        guard let port = server.labels[Label.port].flatMap(Int.init) else { return true }
        if server.usesHostNetwork {
            return await DockerEngineProvider.isListening(host: configuration.serverAddress, port: port)
        }
        let since = max(0, SwarmTime.seconds(task.Status.Timestamp) - 1)
        let data = try await engine.send(
            .GET, "/services/\(server.ID)/logs", query: ["stdout": "true", "stderr": "true", "since": String(format: "%.0f", since)])
        return LogStream.text(data).contains("listening on 0.0.0.0:\(port)")
    }

    /// Waits until the server serves; a task that fails or is rejected first is an error with
    /// swarm's reason (`Status.Err`) and the service's log, and so is one still pending at the
    /// deadline.
    /// - Parameter isNew: Whether this process just made the service: then a task that exits
    ///   with any status failed to start; otherwise (swarm may be replacing a server task that
    ///   crashed) only a rejected one, or one whose start-up failed, does.
    func waitForServer(_ server: Service, isNew: Bool) async throws {
        let deadline = ContinuousClock.now + configuration.startTimeout
        while true {
            if try await isServing(server) { return }
            if let failure = try await startupFailure(of: [server], anyExit: isNew) {
                throw DockerParallelError(.serverStartFailed, failure)
            }
            guard ContinuousClock.now < deadline else {
                let tasks = try await tasks(of: [server.ID])
                let states = tasks.map { "\($0.Status.State)\($0.Status.Err.map { " (\($0))" } ?? "")" }.joined(separator: ", ")
                throw DockerParallelError(
                    .timedOut,
                    "the server service \(server.Spec.Name) did not serve within \(configuration.startTimeout); its tasks are: \(states.isEmpty ? "none" : states). Its log says:\n\(try await logTail(server.ID))")
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    /// Why a task of these services could not start, with its log: a rejected task (no such
    /// image, a missing secret), or one that exited with the start-up failure status (or, with
    /// `anyExit`, with any status), since the service's spec last changed. `nil` when none did.
    func startupFailure(of services: [Service], anyExit: Bool = false) async throws -> String? {
        let updated = Dictionary(services.map { ($0.ID, SwarmTime.seconds($0.UpdatedAt)) }, uniquingKeysWith: { first, _ in first })
        for task in try await tasks(of: services.map(\.ID)) where task.Status.State == "rejected" || task.Status.State == "failed" {
            guard SwarmTime.seconds(task.CreatedAt) >= (updated[task.ServiceID] ?? 0) else { continue }
            let status = task.Status.ContainerStatus?.ExitCode
            guard task.Status.State == "rejected" || anyExit || status == Self.startupFailureStatus else { continue }
            let name = services.first { $0.ID == task.ServiceID }?.Spec.Name ?? task.ServiceID
            let reason = task.Status.Err ?? task.Status.Message ?? task.Status.State
            return "a task of the swarm service \(name) could not start: \(reason). Its log says:\n\(try await logTail(task.ServiceID))"
        }
        return nil
    }

    /// The last lines a service's tasks printed.
    func logTail(_ serviceID: String, lines: Int = 20) async throws -> String {
        let data: Data
        do {
            data = try await engine.send(
                .GET, "/services/\(serviceID)/logs", query: ["stdout": "true", "stderr": "true", "tail": String(lines)])
        } catch let error as RESTError {
            return "(the log cannot be read: \(error.message))"
        }
        let text = LogStream.text(data).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "(nothing)" : text
    }

    // MARK: Networks and containers

    /// The id of the network tasks attach to: the swarm's `host` network, or the overlay network
    /// named in the configuration, created (and labelled, for a deep cleanup) when missing.
    func ensureNetwork(_ context: ClusterContext) async throws -> String {
        let name = configuration.network
        do {
            return try await engine.get(NetworkSummary.self, "/networks/\(name)").Id
        } catch let error as RESTError where error.status == 404 && name != "host" {
            let body = OverlayNetworkCreate(Name: name, Labels: [Label.queue: context.configuration.jobQueueName])
            do {
                try await engine.send(.POST, "/networks/create", json: body)
            } catch let error as RESTError where error.status == 409 {
                // Created by another process first.
            }
            return try await engine.get(NetworkSummary.self, "/networks/\(name)").Id
        }
    }

    /// Waits until no container of the cluster's of a role runs on this node, or until none of
    /// any role is left: removed services' tasks stop within their grace period.
    func waitUntilContainersAreGone(_ context: ClusterContext, role: String?) async throws {
        let deadline = ContinuousClock.now + configuration.stopGracePeriod + .seconds(30)
        var selector = Self.containerSelector(context)
        if let role { selector = selector.adding(Label.containerRole, role) }
        let filters = selector.dockerFilters
        while ContinuousClock.now < deadline {
            // Those of a role: until none runs. All: until none is left (one that exited still holds the volume).
            let containers = try await engine.get(
                [LocalContainer].self, "/containers/json", query: role == nil ? ["all": "true", "filters": filters] : ["filters": filters])
            if containers.isEmpty { return }
            try await Task.sleep(for: pollInterval)
        }
    }
}

extension Service {
    /// Worker slots in each task of a worker service.
    var slots: Int { labels[SwarmProvider.Label.workers].flatMap(Int.init) ?? 1 }
    /// Whether the service's tasks use their node's network (they publish no port).
    var usesHostNetwork: Bool { Spec.EndpointSpec?.Ports?.isEmpty ?? true }
}

/// Swarm's timestamps (RFC 3339 with up to nine decimals, which `ISO8601DateFormatter` cannot read).
enum SwarmTime {
    /// Seconds since 1970; 0 for a missing or unreadable time.
    static func seconds(_ text: String?) -> Double {
        guard let text, text.count >= 19 else { return 0 }
        let whole = String(text.prefix(19)) + "Z"
        guard let date = ISO8601DateFormatter().date(from: whole) else { return 0 }
        var fraction = 0.0
        if text.dropFirst(19).first == "." {
            let digits = text.dropFirst(20).prefix { $0.isNumber }
            fraction = Double("0." + digits) ?? 0
        }
        return date.timeIntervalSince1970 + fraction
    }
}
