/// How the cluster's connections are protected off loopback.
///
/// A server that listens on anything but loopback serves TLS. By default the cluster makes its
/// own private certificate authority and a server certificate signed by it (when it first starts
/// its server), stores them with its static data, and clients and workers trust exactly that
/// authority: nothing else can pass for the server. Connections on the server's machine (its unix
/// socket, loopback) may stay plain. The password remains the credential on every connection.
public struct TransportSecurity: Sendable, Codable, Equatable {
    /// Whether connections off loopback are encrypted.
    public enum Mode: String, Sendable, Codable {
        /// TLS off loopback, with the cluster's own authority or the certificate given.
        case tls
        /// Plain text everywhere, also across the network: anyone on the path reads the
        /// password and the tasks. An explicit, loud opt-out.
        case insecurePlainText
    }

    /// TLS (default) or the plain-text opt-out.
    public var mode: Mode
    /// The certificate authority clients and workers trust (PEM): the cluster's own, or the one
    /// that signed a certificate the user gave. `nil` with a given certificate: the system's.
    public var certificateAuthority: String?
    /// The server's certificate chain (PEM), leaf first.
    public var serverCertificateChain: String?
    /// The server's private key (PEM). A secret, like the password: never printed.
    public var serverPrivateKey: ServerPassword?
    /// The private key (PEM) of the cluster's own authority, with which its server signs itself
    /// a certificate for its addresses when it starts; `nil` with a certificate the user gave.
    /// A secret, like the password: never printed.
    public var certificateAuthorityKey: ServerPassword?

    /// TLS with a certificate authority the cluster makes itself.
    public static let automatic = TransportSecurity(mode: .tls)

    /// Plain text across the network: an explicit, loud opt-out.
    public static let insecurePlainText = TransportSecurity(mode: .insecurePlainText)

    /// TLS with the user's own certificate and key (PEM), and the authority that signed it
    /// (`nil`: the system's trusted authorities, with the server's host name checked).
    public static func certificate(chain: String, privateKey: String, authority: String?) -> TransportSecurity {
        TransportSecurity(
            mode: .tls, certificateAuthority: authority, serverCertificateChain: chain, serverPrivateKey: ServerPassword(privateKey))
    }

    /// Creates settings.
    public init(
        mode: Mode, certificateAuthority: String? = nil, serverCertificateChain: String? = nil,
        serverPrivateKey: ServerPassword? = nil, certificateAuthorityKey: ServerPassword? = nil
    ) {
        self.mode = mode
        self.certificateAuthority = certificateAuthority
        self.serverCertificateChain = serverCertificateChain
        self.serverPrivateKey = serverPrivateKey
        self.certificateAuthorityKey = certificateAuthorityKey
    }

    /// Whether the server has a certificate to serve.
    public var hasServerCertificate: Bool { serverCertificateChain != nil && serverPrivateKey != nil }

    /// Whether an address is this machine's loopback (where plain text stays on the machine).
    package static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.") || host == "0:0:0:0:0:0:0:1"
    }
}
