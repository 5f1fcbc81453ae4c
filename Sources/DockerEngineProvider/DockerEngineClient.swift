import AsyncHTTPClient
import DockerParallelCore
import Foundation
import NIOConcurrencyHelpers
import NIOHTTP1
import NIOSSL
import ProviderKit

/// A thin client of the Docker Engine HTTP API (version 1.41, which Engine 20.10 and later
/// serve), on ProviderKit's ``RESTClient``: answers other than 2xx are a ``RESTError`` with the
/// daemon's status and message, and a daemon that cannot be reached is a ``DockerParallelError``
/// that says what to check.
package struct DockerEngineClient: Sendable {
    /// The API version every request names.
    package static let apiVersion = "v1.41"
    /// How the daemon is named in messages.
    package static let platform = "the Docker daemon"

    package let host: DockerHost
    package let rest: RESTClient

    /// A client of the daemon at `host`, over AsyncHTTPClient.
    /// - Throws: `.invalidArgument` when the TLS files cannot be read.
    package init(host: DockerHost) throws {
        let transport: AsyncHTTPTransport
        switch host.address {
        case .unix(let path):
            transport = AsyncHTTPTransport(endpoint: .unixSocket(path))
        case .tcp(let name, let port):
            if let tls = host.tls {
                transport = AsyncHTTPTransport(endpoint: .url("https://\(name):\(port)"), client: try Self.tlsClient(tls))
            } else {
                transport = AsyncHTTPTransport(endpoint: .url("http://\(name):\(port)"))
            }
        }
        self.init(host: host, transport: transport)
    }

    /// A client of the daemon at `host` over any transport (tests pass a ``RecordedTransport``).
    package init(host: DockerHost, transport: any HTTPTransport, retry: RetryPolicy = RetryPolicy(),
         sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }) {
        self.host = host
        self.rest = RESTClient(
            transport: transport,
            configuration: .init(platform: Self.platform, pathPrefix: "/" + Self.apiVersion, retry: retry),
            sleep: sleep)
    }

    /// One HTTP client per set of TLS files, kept for the life of the process.
    private static let tlsClients = NIOLockedValueBox<[DockerHost.TLSFiles: HTTPClient]>([:])

    private static func tlsClient(_ files: DockerHost.TLSFiles) throws -> HTTPClient {
        try tlsClients.withLockedValue { clients in
            if let client = clients[files] { return client }
            let tls: TLSConfiguration
            do {
                tls = try AsyncHTTPTransport.clientTLSConfiguration(
                    caCertificate: files.caCertificate, certificate: files.certificate, privateKey: files.privateKey)
            } catch {
                throw DockerParallelError(
                    .invalidArgument,
                    "cannot read the Docker TLS files (\(files.certificate), \(files.privateKey)): \(error). Set DOCKER_CERT_PATH to the folder holding ca.pem, cert.pem and key.pem")
            }
            let client = HTTPClient(
                eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(tlsConfiguration: tls))
            clients[files] = client
            return client
        }
    }

    /// Sends a request and checks for a 2xx answer.
    /// - Parameters:
    ///   - query: Sorted by name; `repeated` items follow in order.
    ///   - json: A body to encode as JSON; or `body` with its `contentType`.
    ///   - timeout: Seconds.
    ///   - isIdempotent: Whether it may be retried after a server error or a lost connection
    ///     (default: every method but POST).
    /// - Throws: ``RESTError`` with the daemon's message for an answer other than 2xx;
    ///   `.providerFailed` when the daemon cannot be reached.
    @discardableResult
    package func send(
        _ method: HTTPMethod, _ path: String, query: [String: String] = [:], repeated: [(String, String)] = [],
        json: (any Encodable & Sendable)? = nil, body: Data? = nil, contentType: String = "application/json",
        timeout: Double = 60, isIdempotent: Bool? = nil
    ) async throws -> Data {
        var request = RESTRequest(
            method, path, query: QueryItem.sorted(query) + repeated.map { QueryItem($0.0, $0.1) },
            timeout: .milliseconds(Int64(timeout * 1000)), isIdempotent: isIdempotent)
        if let json {
            request.body = try JSONModels.encode(json, platform: Self.platform, request: "\(method.rawValue) \(path)")
            request.headers.add(name: "Content-Type", value: "application/json")
        } else if let body {
            request.body = body
            request.headers.add(name: "Content-Type", value: contentType)
        }
        do {
            return try await rest.send(request).body
        } catch let error as RESTError where error.code == .connectionFailed {
            throw DockerParallelError(
                .providerFailed,
                "cannot reach the Docker daemon at \(host): \(error.message). Is dockerd running? Point DOCKER_HOST (or --docker-host) at its socket.",
                underlying: error)
        }
    }

    /// Sends a GET request and decodes its JSON answer.
    /// - Throws: As ``send(_:_:query:repeated:json:body:contentType:timeout:isIdempotent:)``, and
    ///   `.providerFailed` naming the path when the answer cannot be read.
    package func get<T: Decodable>(_ type: T.Type, _ path: String, query: [String: String] = [:]) async throws -> T {
        let data = try await send(.GET, path, query: query)
        do {
            return try JSONModels.decode(T.self, from: data, platform: Self.platform, request: "GET \(path)")
        } catch let error as RESTError {
            throw DockerParallelError(
                .providerFailed, "the Docker daemon's answer to \(path) could not be read: \(error.message)", underlying: error)
        }
    }
}

extension DockerEngineClient {
    /// Checks that an image is on the daemon.
    /// - Throws: `.invalidArgument` naming the image and the command that builds it.
    package func requireImage(_ image: String) async throws {
        do {
            _ = try await get(ImageInspect.self, "/images/\(image)/json")
        } catch let error as RESTError where error.status == 404 {
            throw DockerParallelError(
                .invalidArgument,
                "the image '\(image)' is not on the Docker engine at \(host): build it with `dockerparallel image build --tag \(image)`")
        }
    }
}

/// Frames of a container's log stream without a TTY: an 8-byte header (stream, 0, 0, 0, size in
/// big-endian) before each chunk.
package enum LogStream {
    /// The text of a multiplexed log body (stdout and stderr together).
    package static func text(_ data: Data) -> String {
        var output = Data()
        var offset = data.startIndex
        while offset + 8 <= data.endIndex {
            let header = data[offset..<offset + 8]
            guard [0, 1, 2].contains(header[header.startIndex]) else { return String(decoding: data, as: UTF8.self) }
            let size = header.dropFirst(4).reduce(0) { $0 << 8 | Int($1) }
            let start = offset + 8
            let end = min(start + size, data.endIndex)
            output.append(data[start..<end])
            offset = end
        }
        return String(decoding: output, as: UTF8.self)
    }
}
