#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// What a container on ECS learns of its task from the task metadata endpoint
/// (`ECS_CONTAINER_METADATA_URI_V4`): its task's id, which names the worker, so that the server's
/// report says which task is busy and scaling down stops idle tasks first.
enum ECSTaskMetadata {
    /// The id of this container's task (the last part of its ARN), or `nil` outside ECS or when
    /// the endpoint does not answer within `timeout` seconds.
    static func taskID(environment: [String: String], timeout: Int = 2) -> String? {
        guard let base = environment["ECS_CONTAINER_METADATA_URI_V4"], !base.isEmpty,
              let body = get(base + "/task", timeout: timeout),
              let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
              let arn = object["TaskARN"] as? String, let id = arn.split(separator: "/").last, !id.isEmpty
        else { return nil }
        return String(id)
    }

    /// A plain HTTP/1.0 GET (the endpoint is a link-local `http://` address); the body of a 200.
    static func get(_ url: String, timeout: Int) -> Data? {
        guard let components = URLComponents(string: url), components.scheme == "http", let host = components.host else { return nil }
        let port = components.port ?? 80
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let address = found else { return nil }
        defer { freeaddrinfo(found) }
        let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 else { return nil }
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host)\r\nAccept: application/json\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else { return nil }
        var response = Data()
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while response.count < 1 << 20 {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            response.append(contentsOf: buffer[0..<count])
        }
        guard let split = response.range(of: Data("\r\n\r\n".utf8)),
              let statusLine = String(data: response[..<split.lowerBound], encoding: .utf8)?.split(separator: "\r\n").first,
              statusLine.split(separator: " ").dropFirst().first == "200"
        else { return nil }
        return response[split.upperBound...]
    }
}
