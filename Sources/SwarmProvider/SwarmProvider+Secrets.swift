import DockerEngineProvider
import DockerParallelCore
import Foundation
import ProviderKit

extension SwarmProvider {
    /// A secret made for the server, and the label that names it on the server service.
    struct MadeSecret {
        var label: String
        var reference: TaskSpec.SecretReference
    }

    /// Where a secret is mounted in a task.
    static func secretPath(_ name: String) -> String { "/run/secrets/\(name)" }

    /// Moves the password and the server's TLS keys out of `environment` into new swarm secrets,
    /// leaving variables that name their files.
    func makeSecrets(_ context: ClusterContext, from environment: inout [String: String]) async throws -> [MadeSecret] {
        let items = [
            (EnvironmentKey.password, EnvironmentKey.passwordFile, "password", Label.passwordSecret),
            (EnvironmentKey.tlsPrivateKey, EnvironmentKey.tlsPrivateKeyFile, "tls-key", Label.tlsKeySecret),
            (EnvironmentKey.tlsCertificateAuthorityKey, EnvironmentKey.tlsCertificateAuthorityKeyFile, "tls-ca-key", Label.tlsAuthorityKeySecret),
        ]
        var made: [MadeSecret] = []
        for (key, fileKey, role, label) in items {
            guard let value = environment.removeValue(forKey: key), !value.isEmpty else { continue }
            let name = "dockerparallel-\(context.configuration.jobQueueName)-\(role)-\(Self.randomSuffix())"
            let body = SecretCreate(
                Name: name, Labels: [Label.queue: context.configuration.jobQueueName, Label.role: role],
                Data: Data(value.utf8).base64EncodedString())
            let data: Data
            do {
                data = try await engine.send(.POST, "/secrets/create", json: body)
            } catch let error as RESTError {
                throw DockerParallelError(.providerFailed, "cannot create the swarm secret \(name): \(error.message)")
            }
            let id = try JSONModels.decode(ServiceCreated.self, from: data, platform: DockerEngineClient.platform, request: "POST /secrets/create").ID
            environment[fileKey] = Self.secretPath(name)
            made.append(MadeSecret(label: label, reference: Self.reference(id: id, name: name)))
        }
        return made
    }

    static func reference(id: String, name: String) -> TaskSpec.SecretReference {
        TaskSpec.SecretReference(File: .init(Name: name, UID: "0", GID: "0", Mode: 0o444), SecretID: id, SecretName: name)
    }

    /// The password's secret that the server service names, for the workers.
    func passwordSecretReference(of server: Service, context: ClusterContext) async throws -> TaskSpec.SecretReference {
        guard let name = server.labels[Label.passwordSecret] else {
            throw DockerParallelError(
                .invalidState,
                "the server service \(server.Spec.Name) names no password secret: it was not started by this provider. Remove it with `dockerparallel down --provider swarm --name \(context.configuration.jobQueueName)`")
        }
        do {
            let secret = try await engine.get(SecretSummary.self, "/secrets/\(name)")
            return Self.reference(id: secret.ID, name: name)
        } catch let error as RESTError where error.status == 404 {
            throw DockerParallelError(
                .invalidState,
                "the password secret \(name) of '\(context.configuration.jobQueueName)' is gone: restart the cluster with `dockerparallel down` and `up`")
        }
    }

    /// Removes the cluster's secrets that no service uses (with `keepingReferenced`, those the
    /// server service names stay too). A secret still in use answers an error and stays.
    func removeUnusedSecrets(_ context: ClusterContext, keepingReferenced: Bool = true) async throws {
        let secrets = try await engine.get(
            [SecretSummary].self, "/secrets", query: ["filters": Self.selector(context).dockerFilters])
        guard !secrets.isEmpty else { return }
        var kept: Set<String> = []
        if keepingReferenced, let server = try await service(named: Self.serverName(context)) {
            kept = Set([Label.passwordSecret, Label.tlsKeySecret, Label.tlsAuthorityKeySecret].compactMap { server.labels[$0] })
        }
        for secret in secrets where !kept.contains(secret.Spec.Name) {
            try? await removeSecret(secret.ID)
        }
    }

    func removeSecret(_ id: String) async throws {
        do {
            try await engine.send(.DELETE, "/secrets/\(id)")
        } catch let error as RESTError where error.status == 404 {
            // Already gone.
        }
    }

    /// Reads a secret back where it is mounted: in a running container of the cluster on the
    /// node this provider talks to (the Engine API never returns a secret's data). It runs the
    /// shell's `read`, so the image needs `/bin/sh` (`dockerparallel image build` puts it there).
    func readSecret(_ name: String, context: ClusterContext) async throws -> String {
        let filters = Self.containerSelector(context).adding(Label.containerRole, "server").dockerFilters
        let deadline = ContinuousClock.now + configuration.startTimeout
        var problems: [String] = []
        while true {
            var containers = try await engine.get([LocalContainer].self, "/containers/json", query: ["filters": filters])
            if containers.isEmpty {
                // Workers mount the password too.
                containers = try await engine.get(
                    [LocalContainer].self, "/containers/json", query: ["filters": Self.containerSelector(context).dockerFilters])
            }
            let running = containers.filter { $0.State == "running" }
            for container in running {
                do {
                    return try await readFile(Self.secretPath(name), in: container.Id)
                } catch {
                    problems.append("the container \(container.Id.prefix(12)): \(error)")
                }
            }
            // Wait only for a server task that is starting (on this node, or elsewhere).
            var serverStarting = false
            if let server = try await service(named: Self.serverName(context)) {
                serverStarting = try await tasks(of: [server.ID]).contains { $0.isStarting }
            }
            guard running.isEmpty, serverStarting, ContinuousClock.now < deadline else {
                let detail = problems.isEmpty ? "" : " (\(problems.joined(separator: "; ")))"
                throw DockerParallelError(
                    .providerFailed,
                    "the password of the cluster '\(context.configuration.jobQueueName)' is in the swarm secret \(name), which only its containers can read, and none of them on the Docker engine at \(configuration.host) could\(detail). Point DOCKER_HOST at the node that runs its server (`docker service ps \(Self.serverName(context))`), or place the server on this manager with a constraint.")
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    /// A file's text in a running container, read with the shell's `read` builtin (no other
    /// program is needed), without a final line break.
    func readFile(_ path: String, in containerID: String) async throws -> String {
        let script = #"[ -r "$1" ] || exit 1; while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; done < "$1""#
        let command = ExecCreate(Cmd: ["/bin/sh", "-c", script, "sh", path])
        let data = try await engine.send(.POST, "/containers/\(containerID)/exec", json: command)
        let exec = try JSONModels.decode(ExecCreated.self, from: data, platform: DockerEngineClient.platform, request: "POST /containers/exec")
        var output = LogStream.text(try await engine.send(.POST, "/exec/\(exec.Id)/start", json: ExecStart()))
        if output.hasSuffix("\n") { output.removeLast() }
        guard !output.isEmpty else { throw DockerParallelError(.providerFailed, "\(path) is empty or missing") }
        return output
    }

    /// Static data without the password and the TLS keys, for a label.
    static func withoutSecrets(_ data: StaticData) -> StaticData {
        var copy = data
        copy.configuration.serverPassword = ServerPassword("")
        copy.configuration.transportSecurity.serverPrivateKey = nil
        copy.configuration.transportSecurity.certificateAuthorityKey = nil
        return copy
    }

    static func randomSuffix() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next() & 0xffff_ffff, radix: 16)
    }
}
