#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import AsyncHTTPClient
import DockerParallelCore
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL

/// A small client of the Docker Engine HTTP API (version 1.41, which Engine 20.10 and later serve).
struct DockerEngineClient: Sendable {
    /// The API version every request names.
    static let apiVersion = "v1.41"

    /// An answer other than 2xx.
    struct EngineError: Error, CustomStringConvertible {
        var status: Int
        var message: String
        var description: String { "the Docker daemon answered \(status): \(message)" }
    }

    let host: DockerHost
    private let client: HTTPClient
    private let base: String

    init(host: DockerHost) throws {
        self.host = host
        switch host.address {
        case .unix(let path):
            let encoded = path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? path
            base = "http+unix://\(encoded)"
            client = HTTPClient.shared
        case .tcp(let name, let port):
            if let tls = host.tls {
                base = "https://\(name):\(port)"
                client = try Self.tlsClient(tls)
            } else {
                base = "http://\(name):\(port)"
                client = HTTPClient.shared
            }
        }
    }

    /// One HTTP client per set of TLS files, kept for the life of the process.
    private static let tlsClients = NIOLockedValueBox<[DockerHost.TLSFiles: HTTPClient]>([:])

    private static func tlsClient(_ files: DockerHost.TLSFiles) throws -> HTTPClient {
        try tlsClients.withLockedValue { clients in
            if let client = clients[files] { return client }
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                tls.trustRoots = .file(files.caCertificate)
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(files.certificate).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: files.privateKey, format: .pem))
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

    /// Sends a request and returns the status and body.
    /// - Throws: `.providerFailed` when the daemon cannot be reached; ``EngineError`` is not thrown
    ///   here (see ``send(_:_:query:json:body:contentType:timeout:)``).
    func raw(
        _ method: HTTPMethod, _ path: String, query: [String: String] = [:], repeated: [(String, String)] = [],
        body: Data? = nil, contentType: String = "application/json", timeout: Double = 60
    ) async throws -> (status: Int, body: Data) {
        var components = URLComponents()
        let items = query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) }
            + repeated.map { URLQueryItem(name: $0.0, value: $0.1) }
        components.queryItems = items.isEmpty ? nil : items
        let queryText = (components.percentEncodedQuery.map { "?" + $0.replacingOccurrences(of: "+", with: "%2B") }) ?? ""
        var request = HTTPClientRequest(url: "\(base)/\(Self.apiVersion)\(path)\(queryText)")
        request.method = method
        // dockerd rejects requests over its unix socket that carry no Host header.
        request.headers.add(name: "Host", value: "docker")
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(data: body))
        }
        if case .unix(let path) = host.address, let problem = Self.unixSocketProblem(path) {
            // The HTTP client would retry a refused connection until its deadline; say it now.
            throw DockerParallelError(
                .providerFailed,
                "cannot reach the Docker daemon at \(host): \(problem). Is dockerd running? Point DOCKER_HOST (or --docker-host) at its socket.")
        }
        do {
            let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
            let bytes = try await response.body.collect(upTo: 256 << 20)
            return (Int(response.status.code), Data(buffer: bytes))
        } catch let error as DockerParallelError {
            throw error
        } catch {
            throw DockerParallelError(
                .providerFailed,
                "cannot reach the Docker daemon at \(host): \(error). Is dockerd running? Point DOCKER_HOST (or --docker-host) at its socket.",
                underlying: error)
        }
    }

    /// Why nothing accepts connections on a unix socket, or `nil` when something does.
    static func unixSocketProblem(_ path: String) -> String? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else { return "the socket path is too long" }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0 ? nil : String(cString: strerror(errno))
    }

    /// Sends a request and checks for a 2xx answer.
    /// - Throws: ``EngineError`` with the daemon's message otherwise.
    @discardableResult
    func send(
        _ method: HTTPMethod, _ path: String, query: [String: String] = [:], repeated: [(String, String)] = [],
        json: (any Encodable)? = nil, body: Data? = nil, contentType: String = "application/json", timeout: Double = 60
    ) async throws -> Data {
        let payload = try json.map { try JSONEncoder().encode($0) } ?? body
        let (status, data) = try await raw(
            method, path, query: query, repeated: repeated, body: payload, contentType: contentType, timeout: timeout)
        guard (200..<300).contains(status) else {
            struct Message: Decodable { var message: String }
            let message = (try? JSONDecoder().decode(Message.self, from: data).message) ?? String(decoding: data, as: UTF8.self)
            throw EngineError(status: status, message: message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return data
    }

    /// Sends a request and decodes its JSON answer.
    func get<T: Decodable>(_ type: T.Type, _ path: String, query: [String: String] = [:]) async throws -> T {
        let data = try await send(.GET, path, query: query)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw DockerParallelError(.providerFailed, "the Docker daemon's answer to \(path) could not be read: \(error)")
        }
    }
}

/// Frames of a container's log stream without a TTY: an 8-byte header (stream, 0, 0, 0, size in
/// big-endian) before each chunk.
enum LogStream {
    /// The text of a multiplexed log body (stdout and stderr together).
    static func text(_ data: Data) -> String {
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
