import DockerEngineProvider
import DockerParallelCore
import Foundation
import ProviderKit

extension KubernetesProvider {
    /// Container states in which a pod will not start without someone's help.
    static let stuckReasons: Set<String> = [
        "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError",
        "CreateContainerError", "RunContainerError",
    ]

    /// The server's Deployment, unless it is being deleted (it stays until its pod is gone).
    func serverDeployment(_ objects: ClusterObjects) async throws -> Deployment? {
        guard let deployment = try await client.get(Deployment.self, .deployments, objects.serverName),
              deployment.metadata.deletionTimestamp == nil else { return nil }
        return deployment
    }

    /// The server's pod that serves: ready, and with the node's network, accepting connections.
    func servingPod(_ objects: ClusterObjects, deployment: Deployment) async throws -> Pod? {
        let pods = try await watch(objects).current().filter {
            $0.metadata.labels?[ClusterObjects.Key.component] == "server" && !$0.isTerminating && $0.isReady
        }
        guard let pod = pods.first else { return nil }
        guard deployment.metadata.annotations?[ClusterObjects.Key.network] == "host",
              let port = deployment.metadata.annotations?[ClusterObjects.Key.port].flatMap(Int.init),
              let address = pod.status?.podIP
        else { return pod }
        return await DockerEngineProvider.isListening(host: address, port: port) ? pod : nil
    }

    /// Waits until the server serves; a pod that cannot start first (no such image, a start-up
    /// that failed) is an error naming Kubernetes' reason, and so is one still pending at the
    /// deadline.
    /// - Parameter isNew: Whether this process just made the Deployment: then a container that
    ///   exits with any status failed to start; otherwise (Kubernetes may be restarting a server
    ///   that crashed) only one whose start-up failed did.
    func waitForServer(_ objects: ClusterObjects, isNew: Bool) async throws {
        let deadline = ContinuousClock.now + configuration.startTimeout
        let watch = watch(objects)
        while true {
            guard let deployment = try await serverDeployment(objects) else {
                throw DockerParallelError(.serverStartFailed, "the server Deployment \(objects.serverName) was deleted while it started")
            }
            if try await servingPod(objects, deployment: deployment) != nil { return }
            let pods = try await watch.current().filter { $0.metadata.labels?[ClusterObjects.Key.component] == "server" }
            if let failure = try await startupFailure(of: pods, anyExit: isNew) {
                throw DockerParallelError(.serverStartFailed, failure)
            }
            guard ContinuousClock.now < deadline else {
                let states = pods.map(Self.describe).joined(separator: "; ")
                throw DockerParallelError(
                    .timedOut,
                    "the server of '\(objects.queue)' did not serve within \(configuration.startTimeout); its pods: \(states.isEmpty ? "none (see `kubectl describe deployment \(objects.serverName) -n \(namespace)`)" : states)")
            }
            // A pod's change wakes this at once; the port is tried again every poll interval.
            await watch.waitForChange(until: min(deadline, ContinuousClock.now + max(pollInterval, .milliseconds(200))))
        }
    }

    /// Why one of these pods cannot start, with its log's end; `nil` when none is stuck.
    func startupFailure(of pods: [Pod], anyExit: Bool = false) async throws -> String? {
        for pod in pods where !pod.isTerminating {
            let name = pod.metadata.name ?? "?"
            for status in pod.status?.containerStatuses ?? [] {
                if let waiting = status.state?.waiting, let reason = waiting.reason, Self.stuckReasons.contains(reason) {
                    return "the pod \(name) cannot start its container: \(reason)\(waiting.message.map { " (\($0))" } ?? "")"
                }
                // The last exit counts only for a server just made: a worker that once failed and
                // runs now must not fail every later scaling.
                let exits = [status.state?.terminated] + (anyExit ? [status.lastState?.terminated] : [])
                for terminated in exits.compactMap({ $0 }) {
                    guard let code = terminated.exitCode, code != 0 || anyExit else { continue }
                    guard code == Self.startupFailureStatus || anyExit else { continue }
                    return "the pod \(name) could not start: its container exited with status \(code)\(terminated.reason.map { " (\($0))" } ?? ""). Its log says:\n\(await logTail(name))"
                }
            }
        }
        return nil
    }

    /// The end of a pod's log, or a note that it cannot be read.
    func logTail(_ pod: String) async -> String {
        do {
            let data = try await client.rest.data(.GET, client.path(.pods, pod) + "/log", query: [QueryItem("tailLines", "20")])
            return String(decoding: data, as: UTF8.self)
        } catch {
            return "(its log cannot be read: \(error))"
        }
    }

    /// A pod's phase and its container's state, for messages.
    static func describe(_ pod: Pod) -> String {
        var text = "\(pod.metadata.name ?? "?") \(pod.status?.phase ?? "with no status yet")"
        if let condition = pod.status?.conditions?.first(where: { $0.status == "False" && $0.reason != nil }) {
            text += " (\(condition.type): \(condition.reason ?? "")\(condition.message.map { ", \($0)" } ?? ""))"
        }
        if let waiting = pod.status?.containerStatuses?.first?.state?.waiting, let reason = waiting.reason {
            text += " (waiting: \(reason)\(waiting.message.map { ", \($0)" } ?? ""))"
        }
        return text
    }

    /// Waits until no pod with these labels is left (each got its grace period to exit).
    /// - Parameter forcing: Whether pods still there at the deadline (stuck on a lost node) are
    ///   deleted at once (grace period 0), with a last wait, instead of failing.
    func waitUntilPodsAreGone(_ objects: ClusterObjects, selector: LabelSelector, forcing: Bool = false) async throws {
        var deadline = ContinuousClock.now + configuration.stopGracePeriod + .seconds(30)
        var forced = !forcing
        while true {
            let left = try await client.list(Pod.self, .pods, selector: selector).items
            if left.isEmpty { return }
            if ContinuousClock.now >= deadline, !forced {
                for pod in left { if let name = pod.metadata.name { try await client.delete(.pods, name, gracePeriod: 0) } }
                forced = true
                deadline = ContinuousClock.now + .seconds(15)
            }
            guard ContinuousClock.now < deadline else {
                throw DockerParallelError(
                    .timedOut,
                    "the pods \(left.compactMap(\.metadata.name).joined(separator: ", ")) of '\(objects.queue)' were deleted but are still there after \(configuration.stopGracePeriod + .seconds(30))")
            }
            try await Task.sleep(for: max(pollInterval, .milliseconds(100)))
        }
    }
}
