import ArgumentParser
import DockerParallel
import DockerParallelServer
import Foundation

struct Dashboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print (and open) the link to a named cluster's live dashboard.",
        discussion: "The link carries the cluster's API token (derived from its password, good for the HTTP API only) in its fragment, which browsers never send to a server or log.")

    @OptionGroup var cluster: ClusterOptions

    @Flag(help: "Only print the link.")
    var noOpen = false

    func run() async throws {
        let server = try await APIAddress(cluster)
        let link = "\(server.url)/#token=\(server.token)"
        print(link)
        let endpoint = server.endpoint
        if endpoint.usesTLS {
            CLIEnvironment.warn("the server's certificate is the cluster's own: the browser asks whether to go on. Do not import the cluster's authority into a browser or system store: its key is kept with the cluster, so whoever can read that could pass for any site to it")
        }
        guard !noOpen, let opener = ["xdg-open", "open"].lazy.compactMap(Self.executable).first,
              ProcessInfo.processInfo.environment["DISPLAY"] != nil || ProcessInfo.processInfo.environment["BROWSER"] != nil
        else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: opener)
        process.arguments = [link]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try? process.run()
    }

    private static func executable(_ name: String) -> String? {
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(folder)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}

/// Where a named cluster's HTTP API is and the token it takes.
struct APIAddress {
    var endpoint: Endpoint
    var url: String
    var token: String
    var certificateAuthority: String?

    init(_ cluster: ClusterOptions) async throws {
        let handle = try await cluster.reconnected()
        let configuration = await handle.configuration
        guard let endpoint = await handle.runtime.serverEndpoints?.endpoint(sameLAN: configuration.serverClientSameLAN) else {
            throw CLIError("the server of '\(cluster.name)' has no address yet: try again in a moment")
        }
        let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
        self.endpoint = endpoint
        url = "\(endpoint.usesTLS ? "https" : "http")://\(host):\(endpoint.port)"
        token = APIToken.derive(from: configuration.serverPassword)
        certificateAuthority = endpoint.usesTLS ? configuration.transportSecurity.certificateAuthority : nil
    }
}

struct API: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a named cluster's HTTP API address and token, as shell variables.",
        discussion: """
            `eval "$(dockerparallel api --name demo)"` sets DOCKERPARALLEL_API and DOCKERPARALLEL_TOKEN (derived from the cluster password, good for the HTTP API only). With TLS, `--ca` prints the cluster's certificate authority instead, for `curl --cacert`.
            """)

    @OptionGroup var cluster: ClusterOptions

    @Flag(help: "Print the cluster's certificate authority (PEM) instead.")
    var ca = false

    func run() async throws {
        let server = try await APIAddress(cluster)
        if ca {
            guard let authority = server.certificateAuthority else {
                throw CLIError(server.endpoint.usesTLS
                    ? "'\(cluster.name)' serves a certificate from an authority your system trusts: curl needs no --cacert"
                    : "'\(cluster.name)' speaks plain HTTP on loopback: there is no certificate authority to trust")
            }
            print(authority, terminator: authority.hasSuffix("\n") ? "" : "\n")
            return
        }
        print("export DOCKERPARALLEL_API=\(server.url)")
        print("export DOCKERPARALLEL_TOKEN=\(server.token)")
    }
}
