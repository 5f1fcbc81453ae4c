import Crypto
import DockerParallelCore
import Foundation
import X509

/// The cluster's own certificate authority and the server certificate it signs.
///
/// Made once, when a cluster first starts its server, and stored with its static data, so that a
/// restarted server keeps them and its workers and clients keep trusting it. The authority signs
/// this cluster's server certificate only: trusting it is trusting this server alone.
enum ClusterCertificates {
    /// How long the certificates are valid.
    static let lifetime: TimeInterval = 10 * 365 * 24 * 3600

    /// A new authority and a server certificate for the cluster. Clients pin the authority
    /// rather than check the server's name, since platforms give a server addresses of their
    /// choosing; the certificate names `localhost` for tools that want a name.
    static func make(jobQueueName: String, now: Date = Date()) throws -> TransportSecurity {
        let authorityKey = P256.Signing.PrivateKey()
        let authorityName = try DistinguishedName {
            OrganizationName("DockerParallel")
            CommonName("DockerParallel cluster \(jobQueueName) authority")
        }
        let authority = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PrivateKey(authorityKey).publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(lifetime),
            issuer: authorityName, subject: authorityName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(authorityKey))

        let serverKey = P256.Signing.PrivateKey()
        let server = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PrivateKey(serverKey).publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(lifetime),
            issuer: authorityName,
            subject: try DistinguishedName {
                OrganizationName("DockerParallel")
                CommonName("DockerParallel cluster \(jobQueueName) server")
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.dnsName("localhost")])
            },
            issuerPrivateKey: Certificate.PrivateKey(authorityKey))
        return TransportSecurity(
            mode: .tls, certificateAuthority: try authority.serializeAsPEM().pemString,
            serverCertificateChain: try server.serializeAsPEM().pemString,
            serverPrivateKey: ServerPassword(serverKey.pemRepresentation))
    }
}

extension TransportSecurity {
    /// TLS with a new certificate authority of the cluster's own and a server certificate it
    /// signed: what a cluster makes itself when it first starts its server with ``automatic``.
    public static func ownAuthority(for jobQueueName: String) throws -> TransportSecurity {
        try ClusterCertificates.make(jobQueueName: jobQueueName)
    }
}
