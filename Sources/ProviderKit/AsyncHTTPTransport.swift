#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL

/// The production transport: AsyncHTTPClient, to a base URL or a unix domain socket.
package struct AsyncHTTPTransport: HTTPTransport {
    /// Where the API listens.
    package enum Endpoint: Sendable, Equatable {
        /// A unix domain socket (dockerd's `/var/run/docker.sock`).
        case unixSocket(String)
        /// A base URL without a trailing slash, such as `https://10.0.0.1:2376`.
        case url(String)
    }

    /// Where the API listens.
    package let endpoint: Endpoint
    /// The largest body read, in bytes.
    package var maxBodySize: Int
    private let client: HTTPClient
    private let base: String

    /// Creates a transport.
    /// - Parameters:
    ///   - endpoint: The socket or base URL.
    ///   - client: The HTTP client (default the shared one; pass one made with TLS settings for
    ///     a server that verifies clients, and keep it for the process's life or shut it down).
    ///   - maxBodySize: Default 256 MB.
    package init(endpoint: Endpoint, client: HTTPClient = .shared, maxBodySize: Int = 256 << 20) {
        self.endpoint = endpoint
        self.client = client
        self.maxBodySize = maxBodySize
        switch endpoint {
        case .unixSocket(let path):
            base = "http+unix://" + (path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? path)
        case .url(let url):
            base = url.hasSuffix("/") ? String(url.dropLast()) : url
        }
    }

    /// Sends the request to the endpoint, with the request's timeout.
    /// - Throws: ``RESTError`` `.connectionFailed` when no answer came (for a unix socket, at once
    ///   when nothing listens on it).
    package func send(_ request: RESTRequest) async throws -> RESTResponse {
        var outgoing = HTTPClientRequest(url: base + request.path + request.encodedQuery)
        outgoing.method = request.method
        outgoing.headers = request.headers
        if case .unixSocket(let path) = endpoint {
            // dockerd rejects requests over its unix socket that carry no Host header.
            if !outgoing.headers.contains(name: "Host") { outgoing.headers.add(name: "Host", value: "localhost") }
            // The HTTP client would retry a refused connection until its deadline; say it now.
            if let problem = Self.unixSocketProblem(path) {
                throw RESTError(.connectionFailed, platform: path, request: request.summary, message: problem)
            }
        }
        if let body = request.body { outgoing.body = .bytes(ByteBuffer(data: body)) }
        do {
            let response = try await client.execute(outgoing, timeout: .nanoseconds(Self.nanoseconds(request.timeout)))
            let bytes = try await response.body.collect(upTo: maxBodySize)
            return RESTResponse(status: Int(response.status.code), headers: response.headers, body: Data(buffer: bytes))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw RESTError(.connectionFailed, platform: base, request: request.summary, message: "\(error)", underlying: error)
        }
    }

    /// Sends the request and yields its body's lines as they arrive, for as long as the
    /// request's timeout allows (a watch ends there, and its caller watches again).
    package func streamLines(_ request: RESTRequest) async throws -> StreamedResponse {
        var outgoing = HTTPClientRequest(url: base + request.path + request.encodedQuery)
        outgoing.method = request.method
        outgoing.headers = request.headers
        if case .unixSocket = endpoint, !outgoing.headers.contains(name: "Host") { outgoing.headers.add(name: "Host", value: "localhost") }
        if let body = request.body { outgoing.body = .bytes(ByteBuffer(data: body)) }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(outgoing, timeout: .nanoseconds(Self.nanoseconds(request.timeout)))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw RESTError(.connectionFailed, platform: base, request: request.summary, message: "\(error)", underlying: error)
        }
        let summary = request.summary
        let platform = base
        let lines = AsyncThrowingStream<Data, any Error> { continuation in
            let reader = Task {
                var pending = Data()
                do {
                    for try await chunk in response.body {
                        pending.append(contentsOf: chunk.readableBytesView)
                        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                            let line = pending[pending.startIndex..<newline]
                            if !line.isEmpty { continuation.yield(Data(line)) }
                            pending.removeSubrange(pending.startIndex...newline)
                        }
                    }
                    if !pending.isEmpty { continuation.yield(pending) }
                    continuation.finish()
                } catch is CancellationError {
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: RESTError(
                        .connectionFailed, platform: platform, request: summary, message: "the stream broke: \(error)", underlying: error))
                }
            }
            continuation.onTermination = { _ in reader.cancel() }
        }
        return StreamedResponse(status: Int(response.status.code), lines: lines)
    }

    /// Why nothing accepts connections on a unix socket, or `nil` when something does.
    ///
    /// A connect to a local socket answers at once (it never waits on a network), so this call
    /// does not hold its thread for long.
    package static func unixSocketProblem(_ path: String) -> String? {
        #if os(Linux)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
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

    /// A TLS configuration that trusts `caCertificate` and presents a client certificate.
    /// - Throws: What NIOSSL throws when a file cannot be read.
    package static func clientTLSConfiguration(
        caCertificate: String, certificate: String, privateKey: String
    ) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(caCertificate)
        tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: privateKey, format: .pem))
        return tls
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds.multipliedReportingOverflow(by: 1_000_000_000).overflow
            ? Int64.max : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
