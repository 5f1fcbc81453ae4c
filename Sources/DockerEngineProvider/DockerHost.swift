import DockerParallelCore
import Foundation

/// Where the Docker daemon listens: its unix socket, or a TCP address (with TLS when verified).
public struct DockerHost: Sendable, Equatable, CustomStringConvertible {
    /// How to reach the daemon.
    public enum Address: Sendable, Equatable {
        /// A unix socket path.
        case unix(String)
        /// A TCP host and port.
        case tcp(host: String, port: Int)
    }

    /// Client certificate files for a daemon that verifies TLS clients (`DOCKER_CERT_PATH`).
    public struct TLSFiles: Sendable, Hashable {
        /// The CA that signed the daemon's certificate.
        public var caCertificate: String
        /// The client's certificate.
        public var certificate: String
        /// The client's private key.
        public var privateKey: String

        /// The files `ca.pem`, `cert.pem` and `key.pem` in `directory`, as the docker CLI names them.
        public init(directory: String) {
            caCertificate = (directory as NSString).appendingPathComponent("ca.pem")
            certificate = (directory as NSString).appendingPathComponent("cert.pem")
            privateKey = (directory as NSString).appendingPathComponent("key.pem")
        }
    }

    /// The daemon's address.
    public var address: Address
    /// TLS files, for `tcp` addresses of daemons that require TLS.
    public var tls: TLSFiles?

    /// The default socket, `/var/run/docker.sock`.
    public static let defaultSocket = DockerHost(address: .unix("/var/run/docker.sock"))

    /// Creates a host.
    public init(address: Address, tls: TLSFiles? = nil) {
        self.address = address
        self.tls = tls
    }

    /// Parses a `DOCKER_HOST` value: `unix:///path`, `tcp://host:port`, or a bare socket path.
    /// - Throws: `.invalidArgument` naming the value and the accepted forms.
    public init(parsing text: String, tls: TLSFiles? = nil) throws {
        self.tls = tls
        if text.hasPrefix("unix://") {
            address = .unix(String(text.dropFirst("unix://".count)))
        } else if text.hasPrefix("/") {
            address = .unix(text)
        } else if text.hasPrefix("tcp://") {
            let rest = text.dropFirst("tcp://".count).split(separator: "/").first.map(String.init) ?? ""
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), !rest[..<colon].isEmpty
            else {
                throw DockerParallelError(.invalidArgument, "the Docker host '\(text)' needs a port, as in tcp://127.0.0.1:2376")
            }
            address = .tcp(host: String(rest[..<colon]), port: port)
        } else {
            throw DockerParallelError(
                .invalidArgument,
                "the Docker host '\(text)' is not understood: use unix:///path/to/docker.sock or tcp://HOST:PORT")
        }
    }

    /// The host from the environment as the docker CLI reads it: `DOCKER_HOST`, with TLS from
    /// `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` (default `~/.docker`); else the default socket.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DockerHost {
        guard let text = environment["DOCKER_HOST"], !text.isEmpty else { return .defaultSocket }
        var tls: TLSFiles?
        if let verify = environment["DOCKER_TLS_VERIFY"], !verify.isEmpty, verify != "0" {
            let directory = environment["DOCKER_CERT_PATH"]
                ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".docker").path
            tls = TLSFiles(directory: directory)
        }
        return try DockerHost(parsing: text, tls: tls)
    }

    public var description: String {
        switch address {
        case .unix(let path): "unix://\(path)"
        case .tcp(let host, let port): "\(tls == nil ? "tcp" : "tcp+tls")://\(host):\(port)"
        }
    }
}
