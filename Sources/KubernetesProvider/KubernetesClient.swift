import DockerParallelCore
import AsyncHTTPClient
import Foundation
import Logging
import NIOHTTP1
import ProviderKit

/// The Kubernetes API's REST operations on the objects the provider uses, in one namespace, on
/// ``RESTClient`` (retries, errors with the API's message).
package struct KubernetesClient: Sendable {
    /// The platform, as messages name it.
    package static let platform = "the Kubernetes API server"

    /// Where an object kind lives in the API.
    package struct Resource: Sendable, Hashable {
        /// `/api/v1` or `/apis/apps/v1`.
        package var groupVersion: String
        /// The plural name (`pods`).
        package var plural: String

        package static let pods = Resource(groupVersion: "/api/v1", plural: "pods")
        package static let services = Resource(groupVersion: "/api/v1", plural: "services")
        package static let secrets = Resource(groupVersion: "/api/v1", plural: "secrets")
        package static let claims = Resource(groupVersion: "/api/v1", plural: "persistentvolumeclaims")
        package static let deployments = Resource(groupVersion: "/apis/apps/v1", plural: "deployments")
    }

    /// The namespace every call works in.
    package let namespace: String
    /// The REST client.
    package let rest: RESTClient

    /// Creates a client over a transport (the real one, or recorded answers in tests).
    package init(namespace: String, transport: any HTTPTransport, retry: RetryPolicy = RetryPolicy(), logger: Logger? = nil,
                 sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }) {
        self.namespace = namespace
        self.rest = RESTClient(
            transport: transport,
            configuration: .init(platform: Self.platform, headers: ["Accept": "application/json"], retry: retry),
            logger: logger, sleep: sleep)
    }

    /// The path of a resource's collection, or of one object in it.
    package func path(_ resource: Resource, _ name: String? = nil) -> String {
        "\(resource.groupVersion)/namespaces/\(namespace)/\(resource.plural)" + (name.map { "/\($0)" } ?? "")
    }

    /// Creates an object.
    /// - Throws: ``AlreadyExists`` when one of that name exists; ``RESTError`` otherwise.
    package func create<T: Codable & Sendable>(_ object: T, in resource: Resource) async throws {
        do {
            try await rest.data(.POST, path(resource), json: object)
        } catch let error as RESTError where error.status == 409 {
            throw AlreadyExists(error: error)
        }
    }

    /// An object, or `nil` when there is none of that name.
    package func get<T: Codable & Sendable>(_ type: T.Type, _ resource: Resource, _ name: String) async throws -> T? {
        do {
            return try await rest.json(T.self, .GET, path(resource, name))
        } catch let error as RESTError where error.status == 404 {
            return nil
        }
    }

    /// The objects carrying every label of `selector`. The selector is also checked here, so
    /// that an API that ignores it (the emulator the tests use) gives the same answer.
    package func list<T: Codable & Sendable>(_ type: T.Type, _ resource: Resource, selector: LabelSelector) async throws
        -> (items: [T], resourceVersion: String?)
    {
        let list = try await rest.json(
            ObjectList<T>.self, .GET, path(resource), query: [QueryItem("labelSelector", selector.kubernetesLabelSelector)])
        let items = list.items.filter { selector.matches(Self.labels(of: $0)) }
        return (items, list.metadata?.resourceVersion)
    }

    /// Changes an object with a JSON merge patch.
    @discardableResult
    package func mergePatch<T: Codable & Sendable>(_ type: T.Type, _ resource: Resource, _ name: String, _ patch: any Encodable & Sendable)
        async throws -> T
    {
        var request = RESTRequest(.PATCH, path(resource, name), isIdempotent: true)
        request.body = try JSONModels.encode(patch, platform: Self.platform, request: "PATCH \(path(resource, name))")
        request.headers.add(name: "Content-Type", value: "application/merge-patch+json")
        let response = try await rest.send(request)
        return try JSONModels.decode(T.self, from: response.body, platform: Self.platform, request: "PATCH \(path(resource, name))")
    }

    /// Deletes an object; one already gone is not an error.
    /// - Parameters:
    ///   - gracePeriod: Seconds a pod gets to stop, or its own setting.
    ///   - propagation: `Background` (default): what the object owns goes after it;
    ///     `Foreground`: the object stays until what it owns (a Deployment's pods) is gone.
    package func delete(_ resource: Resource, _ name: String, gracePeriod: Int? = nil, propagation: String = "Background") async throws {
        var query: [QueryItem] = []
        if let gracePeriod { query.append(QueryItem("gracePeriodSeconds", String(gracePeriod))) }
        query.append(QueryItem("propagationPolicy", propagation))
        do {
            try await rest.send(RESTRequest(.DELETE, path(resource, name), query: query))
        } catch let error as RESTError where error.status == 404 {
            // Already gone.
        }
    }

    /// Starts a watch of a resource's objects with these labels, from `resourceVersion` (or
    /// from now, after an initial `ADDED` for every object, without one), for at most
    /// `timeout`: its events arrive as lines of JSON.
    /// - Throws: ``WatchExpired`` when the API answers 410 Gone (the version is too old: list
    ///   again); ``RESTError`` otherwise.
    package func watch(_ resource: Resource, selector: LabelSelector, resourceVersion: String?, timeout: Duration)
        async throws -> AsyncThrowingStream<Data, any Error>
    {
        var query = [
            QueryItem("watch", "true"), QueryItem("labelSelector", selector.kubernetesLabelSelector),
            QueryItem("allowWatchBookmarks", "true"),
            QueryItem("timeoutSeconds", String(max(1, Int(timeout.components.seconds)))),
        ]
        if let resourceVersion { query.append(QueryItem("resourceVersion", resourceVersion)) }
        var request = RESTRequest(.GET, path(resource), query: query, timeout: timeout + .seconds(10))
        request.headers.add(name: "Accept", value: "application/json")
        let response = try await rest.transport.streamLines(request)
        guard (200..<300).contains(response.status) else {
            let body = try await response.collectedBody()
            if response.status == 410 { throw WatchExpired() }
            throw RESTError(
                .unexpectedStatus, platform: Self.platform, request: request.summary, status: response.status,
                message: JSONModels.message(in: body) ?? String(decoding: body, as: UTF8.self))
        }
        return response.lines
    }

    /// The labels of a decoded object.
    static func labels(of object: some Any) -> [String: String]? {
        switch object {
        case let pod as Pod: pod.metadata.labels
        case let secret as Secret: secret.metadata.labels
        case let service as Service: service.metadata.labels
        case let deployment as Deployment: deployment.metadata.labels
        case let claim as PersistentVolumeClaim: claim.metadata.labels
        default: nil
        }
    }
}

/// An object of that name exists already (another process created it first).
package struct AlreadyExists: Error {
    package var error: RESTError
}

/// A watch's resource version is too old (410 Gone): list again.
package struct WatchExpired: Error {}

/// Sends requests to the API server with the credentials that the kubeconfig or the pod's
/// service account give: a bearer token added to each request, and after a 401 fetched again
/// (an exec plugin's token expired early) and the request sent once more.
package struct KubernetesTransport: HTTPTransport {
    let inner: AsyncHTTPTransport
    let credentials: KubernetesCredentials

    /// Creates the transport for `access`, with the HTTP client for its server and TLS
    /// settings, which lives as long as the process (providers are made and dropped freely; an
    /// HTTP client must not be dropped before it is shut down).
    package init(access: KubernetesAccess) throws {
        self.inner = AsyncHTTPTransport(endpoint: .url(access.server), client: try Self.clients.client(for: access))
        self.credentials = KubernetesCredentials(access: access)
    }

    /// The process's HTTP clients, one per server and TLS settings.
    static let clients = ClientCache()

    final class ClientCache: @unchecked Sendable {
        // Every access to `clients` holds `lock`.
        private let lock = NSLock()
        private var clients: [KubernetesAccess: HTTPClient] = [:]

        func client(for access: KubernetesAccess) throws -> HTTPClient {
            var key = access
            // Only what the connection depends on tells clients apart.
            key.namespace = ""
            key.token = nil
            key.tokenFile = nil
            key.exec = nil
            key.source = ""
            return try lock.withLock {
                if let client = clients[key] { return client }
                let client = try access.makeHTTPClient()
                clients[key] = client
                return client
            }
        }
    }

    package func send(_ request: RESTRequest) async throws -> RESTResponse {
        let response = try await inner.send(try await authorized(request))
        guard response.status == 401 else { return response }
        await credentials.invalidate()
        return try await inner.send(try await authorized(request))
    }

    package func streamLines(_ request: RESTRequest) async throws -> StreamedResponse {
        let response = try await inner.streamLines(try await authorized(request))
        guard response.status == 401 else { return response }
        await credentials.invalidate()
        return try await inner.streamLines(try await authorized(request))
    }

    private func authorized(_ request: RESTRequest) async throws -> RESTRequest {
        var request = request
        if let header = try await credentials.authorization() { request.headers.replaceOrAdd(name: "Authorization", value: header) }
        return request
    }
}
