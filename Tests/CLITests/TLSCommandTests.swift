import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// `up --listen` off loopback: the cluster speaks TLS, with its own authority or the user's
/// certificate. Needs root and iproute2 for the address (a veth pair), as the partition tests.
@Suite(
    .serialized, .timeLimit(.minutes(2)),
    .enabled(
        if: NetworkNamespace.unavailableReason == nil || ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_NETNS"] == "1",
        "needs root and iproute2 for network namespaces"))
struct TLSCommandTests {
    /// A state folder too deep for a unix socket: every command dials the address.
    static func deepCLI() throws -> CLI {
        var cli = try CLI()
        cli.home += "/" + String(repeating: "deep/", count: 16)
        try FileManager.default.createDirectory(atPath: cli.home, withIntermediateDirectories: true)
        return cli
    }

    @Test func upOffLoopbackSpeaksTLSWithTheClustersOwnAuthority() async throws {
        try await withNetworkNamespace { namespace in
            let cli = try Self.deepCLI()
            defer { cli.tearDown() }
            let up = try await cli.run(["up", "--name", "secure", "--port", "0", "--workers", "2", "--listen", namespace.hostAddress])
            #expect(up.status == 0, "\(up.errorOutput)")
            #expect(up.output.contains("Running at \(namespace.hostAddress):"), "\(up.output)")
            let line = try String(contentsOfFile: "\(cli.home)/clusters/secure/server.endpoint", encoding: .utf8)
            #expect(line.hasPrefix("tls \(namespace.hostAddress) "), "\(line)")
            let run = try await cli.run(["run", "--cluster", "secure", "--", "echo", ":::", "a", "b"])
            #expect(run.status == 0, "\(run.errorOutput)")
            #expect(run.output == "a\nb\n")
            // The private key is in the static data (mode 0600), never in a log.
            let logs = try FileManager.default.contentsOfDirectory(atPath: "\(cli.home)/clusters/secure")
                .filter { $0.hasSuffix(".log") }
                .map { try String(contentsOfFile: "\(cli.home)/clusters/secure/\($0)", encoding: .utf8) }
            #expect(!logs.joined().contains("PRIVATE KEY"))

            // `api` gives the address, a token and the authority: curl checks the server's name
            // against the certificate the server signed itself for its address.
            let api = try await cli.run(["api", "--name", "secure"])
            #expect(api.status == 0, "\(api.errorOutput)")
            let url = try #require(api.output.firstMatch(of: /export DOCKERPARALLEL_API=(\S+)/)?.1)
            let token = try #require(api.output.firstMatch(of: /export DOCKERPARALLEL_TOKEN=(\S+)/)?.1)
            #expect(url.hasPrefix("https://\(namespace.hostAddress):"))
            let authority = try await cli.run(["api", "--name", "secure", "--ca"])
            #expect(authority.output.hasPrefix("-----BEGIN CERTIFICATE-----"), "\(authority.output)")
            #expect(!authority.output.contains("PRIVATE KEY"))
            let caFile = cli.home + "/ca.pem"
            #expect(FileManager.default.createFile(atPath: caFile, contents: Data(authority.output.utf8)))
            let status = try programOutput(
                "/usr/bin/curl", ["-s", "--max-time", "20", "--cacert", caFile, "-H", "Authorization: Bearer \(token)", "\(url)/api/v1/status"])
            #expect(status.contains(#""jobQueueName":"secure""#), "\(status)")
        }
    }

    @Test func upServesTheUsersOwnCertificate() async throws {
        try await withNetworkNamespace { namespace in
            let cli = try Self.deepCLI()
            defer { cli.tearDown() }
            let own = try TransportSecurity.ownAuthority(for: "users")
            let files = ["cert.pem": own.serverCertificateChain, "key.pem": own.serverPrivateKey?.value, "ca.pem": own.certificateAuthority]
            for (name, text) in files {
                #expect(FileManager.default.createFile(atPath: "\(cli.home)/\(name)", contents: Data((text ?? "").utf8)))
            }
            let up = try await cli.run([
                "up", "--name", "users", "--port", "0", "--workers", "1", "--listen", namespace.hostAddress,
                "--tls-certificate", "\(cli.home)/cert.pem", "--tls-key", "\(cli.home)/key.pem", "--tls-ca", "\(cli.home)/ca.pem",
            ])
            #expect(up.status == 0, "\(up.errorOutput)")
            let run = try await cli.run(["run", "--cluster", "users", "--", "echo", ":::", "mine"])
            #expect(run.status == 0, "\(run.errorOutput)")
            #expect(run.output == "mine\n")
            // Clients trust the authority given, kept with the cluster's static data.
            let staticData = try String(contentsOfFile: "\(cli.home)/clusters/users/static.json", encoding: .utf8)
                .replacingOccurrences(of: "\\/", with: "/")
            let authorityLine = try #require(own.certificateAuthority?.split(separator: "\n").dropFirst().first)
            #expect(staticData.contains(String(authorityLine)), "the given authority is not the one clients trust")
        }
    }

    @Test func halfATLSPairIsRefused() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "half", "--tls-certificate", "/nonexistent.pem"])
        #expect(up.status != 0)
        #expect(up.errorOutput.contains("--tls-certificate and --tls-key go together"))
    }
}
