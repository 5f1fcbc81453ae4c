#if canImport(Glibc)
import Glibc
#endif
import DockerParallel
import DockerParallelCore
import DockerParallelServer
import DockerParallelTestKit
import DockerParallelWire
import Foundation
import Logging
import Testing

/// A server off loopback speaks TLS with the cluster's own authority, which clients and workers
/// pin. The server listens on the host's end of a veth pair made for the test (needs root and
/// iproute2, as the partition tests), its state folder too deep for a unix socket, so that every
/// peer dials the address as it would from another machine.
@Suite(
    .serialized, .timeLimit(.minutes(2)),
    .enabled(if: PartitionTesting.enabled, "needs root and iproute2 for network namespaces (set DOCKERPARALLEL_REQUIRE_NETNS=1 to fail instead)"))
struct TLSTests {
    @Test func offLoopbackTheClusterSpeaksTLSWithItsOwnPinnedAuthority() async throws {
        try await withNetworkNamespace { namespace in
            try await withStateDirectory { folder in
                let state = folder + "/" + String(repeating: "deep/", count: 16) + "clusters"
                try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
                let cluster = try DockerCluster(
                    provider: LocalProvider(configuration: .init(stateDirectory: state, host: namespace.hostAddress)),
                    workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                    configuration: ClusterConfiguration(jobQueueName: "tls", expectedWorkerNumber: 2, serverPort: 0),
                    verbosity: 0)
                try await cluster.withStarted { cluster in
                    let endpoint = try #require(await cluster.runtime.serverEndpoints?.publicEndpoint)
                    #expect(endpoint.host == namespace.hostAddress)
                    #expect(endpoint.usesTLS)
                    #expect(endpoint.unixSocketPath == nil)
                    let security = await cluster.configuration.transportSecurity
                    let authority = try #require(security.certificateAuthority)
                    #expect(authority.hasPrefix("-----BEGIN CERTIFICATE-----"))
                    // Workers and the client work through TLS.
                    let inputs = (0..<200).map { "input \($0)" }
                    #expect(try await cluster.map(inputs, using: BuiltinEcho.self) == inputs)
                    #expect(try await cluster.serverReport().workerSlots == 2)

                    let password = await cluster.configuration.serverPassword.value
                    let hello = Hello(role: .client, password: password, name: "tls-test")
                    // The cluster's own authority: welcome.
                    let pinned = try await PeerConnection.connect(to: endpoint, hello: hello, certificateAuthority: authority)
                    pinned.close()
                    // Another authority (another cluster's): refused in the handshake.
                    let other = try TransportSecurity.ownAuthority(for: "impostor").certificateAuthority
                    let wrongAuthority = await #expect(throws: DockerParallelError.self) {
                        _ = try await PeerConnection.connect(to: endpoint, hello: hello, timeout: 5, certificateAuthority: other)
                    }
                    #expect(wrongAuthority?.code == .connectionFailed)
                    #expect(wrongAuthority?.message.contains("TLS handshake") == true, "\(String(describing: wrongAuthority))")
                    // Without an authority: the system's do not know the cluster's.
                    await #expect(throws: DockerParallelError.self) {
                        _ = try await PeerConnection.connect(to: endpoint, hello: hello, timeout: 5, certificateAuthority: nil)
                    }
                    // Plain text from off the server's machine: refused, saying to use TLS.
                    var plain = endpoint
                    plain.usesTLS = false
                    let refused = await #expect(throws: DockerParallelError.self) {
                        _ = try await PeerConnection.connect(to: plain, hello: hello, timeout: 5)
                    }
                    #expect(refused?.message.contains("speaks TLS off its machine") == true, "\(String(describing: refused))")
                    // HTTPS on the same port, trusting the cluster's authority; plain HTTP refused.
                    let caFile = "\(folder)/ca.pem"
                    #expect(FileManager.default.createFile(atPath: caFile, contents: Data(authority.utf8)))
                    // The server signed itself a certificate for its addresses: curl, which checks
                    // names, takes the address as it is, and `localhost` too.
                    let https = "https://\(endpoint.host):\(endpoint.port)"
                    let trust = ["--cacert", caFile]
                    #expect(try await curl(trust + ["\(https)/healthz"]) == (200, "ok"))
                    #expect(try await curl(trust + ["--resolve", "localhost:\(endpoint.port):\(endpoint.host)", "https://localhost:\(endpoint.port)/healthz"]) == (200, "ok"))
                    let status = try await curl(trust + ["-H", "Authorization: Bearer \(password)", "\(https)/api/v1/status"])
                    #expect(status.status == 200)
                    #expect(try JSONDecoder().decode(ServerReport.self, from: Data(status.body.utf8)).workerSlots == 2)
                    // A name the certificate does not give is refused by a client that checks names.
                    #expect(try await curl(trust + ["--resolve", "impostor.example:\(endpoint.port):\(endpoint.host)", "https://impostor.example:\(endpoint.port)/healthz"]).status == 0)
                    // curl with only the system's authorities cannot tell the server is genuine.
                    #expect(try await curl(["\(https)/healthz"]).status == 0)
                    let plainHTTP = try await curl(["http://\(endpoint.host):\(endpoint.port)/healthz"])
                    #expect(plainHTTP.status == 403)
                    #expect(plainHTTP.body.contains("speaks HTTPS off its machine"), "\(plainHTTP.body)")
                    // The password never travels in clear: the server's log has no trace of it either.
                    let log = try String(contentsOfFile: "\(state)/tls/server.log", encoding: .utf8)
                    #expect(!log.contains(password))
                    #expect(!log.contains("PRIVATE KEY"))
                }
            }
        }
    }

    /// A server bound off loopback without a certificate does not start, unless told loudly.
    @Test func aServerOffLoopbackWithoutACertificateRefusesToStart() async throws {
        let server = BrokerServer(
            configuration: ServerConfiguration(host: "0.0.0.0", port: 0, password: ServerPassword("secret")),
            logger: Logger(label: "test"))
        let error = await #expect(throws: DockerParallelError.self) { try await server.run() }
        #expect(error?.code == .serverStartFailed)
        #expect(error?.message.contains("without a TLS certificate") == true, "\(String(describing: error))")
        #expect(error?.message.contains("DOCKERPARALLEL_INSECURE_PLAINTEXT=1") == true)
    }

    /// The endpoint file says whether host and port speak TLS.
    @Test func anEndpointLineKeepsItsTLSMark() {
        let endpoint = Endpoint(host: "10.0.0.5", port: 8888, unixSocketPath: "/tmp/s.sock", usesTLS: true)
        #expect(endpoint.fileLine == "tls 10.0.0.5 8888 /tmp/s.sock")
        #expect(Endpoint(fileLine: endpoint.fileLine) == endpoint)
        #expect(Endpoint(fileLine: "127.0.0.1 8888")?.usesTLS == false)
    }
}
