import Crypto
import DockerParallelCore
import Foundation
import NIOCore
import NIOPosix
import SwiftASN1
import X509

/// The cluster's own certificate authority and the server certificates it signs.
///
/// The authority is made once, when a cluster first starts its server, and stored with its static
/// data, so that a restarted server keeps it and its workers and clients keep trusting it. It
/// signs this cluster's servers only: trusting it is trusting this cluster's server alone, which
/// is why clients pin it instead of checking the server's name.
///
/// A server that holds the authority's key signs itself a certificate when it starts, naming the
/// addresses it is reached at on that machine, so that tools which do check names (curl, a
/// browser told to trust the authority) accept it too.
package enum ClusterCertificates {
    /// How long the certificates are valid.
    static let lifetime: TimeInterval = 10 * 365 * 24 * 3600

    /// A new authority, with its key, and a server certificate for `localhost`.
    package static func make(jobQueueName: String, now: Date = Date()) throws -> TransportSecurity {
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
        let server = try serverCertificate(
            authority: authority, authorityKey: authorityKey, jobQueueName: jobQueueName, names: ["localhost"], now: now)
        return TransportSecurity(
            mode: .tls, certificateAuthority: try authority.serializeAsPEM().pemString,
            serverCertificateChain: server.chain, serverPrivateKey: ServerPassword(server.privateKey),
            certificateAuthorityKey: ServerPassword(authorityKey.pemRepresentation))
    }

    /// A new server certificate and key, signed by the authority (PEM) with its key (PEM), naming
    /// `names`: DNS names, IPv4 and IPv6 addresses.
    /// - Throws: `.invalidArgument` when the authority or its key cannot be read, or do not match.
    package static func serverCertificate(
        authority: String, authorityKey: String, jobQueueName: String, names: [String], now: Date = Date()
    ) throws -> (chain: String, privateKey: String) {
        let certificate: Certificate
        let key: P256.Signing.PrivateKey
        do {
            certificate = try Certificate(pemEncoded: authority)
            key = try P256.Signing.PrivateKey(pemRepresentation: authorityKey)
        } catch {
            throw DockerParallelError(.invalidArgument, "the cluster's certificate authority or its key cannot be read: \(error)")
        }
        guard certificate.publicKey == Certificate.PrivateKey(key).publicKey else {
            throw DockerParallelError(
                .invalidArgument, "the cluster's certificate authority key does not belong to its authority: start the cluster anew with `down` and `up`")
        }
        return try serverCertificate(authority: certificate, authorityKey: key, jobQueueName: jobQueueName, names: names, now: now)
    }

    private static func serverCertificate(
        authority: Certificate, authorityKey: P256.Signing.PrivateKey, jobQueueName: String, names: [String], now: Date
    ) throws -> (chain: String, privateKey: String) {
        let serverKey = P256.Signing.PrivateKey()
        var seen = Set<String>()
        let alternativeNames: [GeneralName] = names.compactMap { name in
            guard seen.insert(name).inserted else { return nil }
            if let bytes = addressBytes(name) { return .ipAddress(ASN1OctetString(contentBytes: bytes[...])) }
            return .dnsName(name)
        }
        let server = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PrivateKey(serverKey).publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(lifetime),
            issuer: authority.subject,
            subject: try DistinguishedName {
                OrganizationName("DockerParallel")
                CommonName("DockerParallel cluster \(jobQueueName) server")
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(alternativeNames)
            },
            issuerPrivateKey: Certificate.PrivateKey(authorityKey))
        return (try server.serializeAsPEM().pemString, serverKey.pemRepresentation)
    }

    /// The names a server on this machine is reached at: `localhost`, the host name, loopback,
    /// the address it listens on (unless a wildcard) and the addresses of the machine's network
    /// interfaces.
    package static func namesOfThisMachine(listeningOn host: String) -> [String] {
        var names = ["localhost", "127.0.0.1", "::1"]
        // The kernel's host name, without a name lookup.
        var buffer = [CChar](repeating: 0, count: 256)
        if gethostname(&buffer, buffer.count) == 0 {
            let hostName = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !hostName.isEmpty { names.append(hostName) }
        }
        if host != "0.0.0.0" && host != "::" && !host.isEmpty { names.append(host) }
        for device in (try? System.enumerateDevices()) ?? [] {
            if let address = device.address?.ipAddress { names.append(address) }
        }
        return names
    }

    /// The 4 or 16 bytes of an IP address written as text; `nil` for a name.
    static func addressBytes(_ text: String) -> [UInt8]? {
        // A link-local IPv6 address may carry its interface (`fe80::1%eth0`): the bytes do not.
        let address = String(text.split(separator: "%", maxSplits: 1).first ?? "")
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, address, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}
