import DockerParallelCore
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct CommandTemplateTests {
    @Test func replacesEveryReplacementString() throws {
        let template = try CommandTemplate(["convert", "{}", "{.}.png", "{/}", "{//}", "{/.}", "{#}"])
        #expect(template.argv(input: "data/photo.jpg", number: 7) == ["convert", "data/photo.jpg", "data/photo.png", "photo.jpg", "data", "photo", "7"])
    }

    @Test func appendsTheInputWhenNoReplacementStringIsUsed() throws {
        #expect(try CommandTemplate(["gzip", "-k"]).argv(input: "a.csv", number: 1) == ["gzip", "-k", "a.csv"])
    }

    @Test func replacesInsideAnArgument() throws {
        #expect(try CommandTemplate(["sh", "-c", "echo $(( {} * {} ))"]).argv(input: "12", number: 1) == ["sh", "-c", "echo $(( 12 * 12 ))"])
    }

    @Test func rejectsAnEmptyCommand() {
        #expect(throws: DockerParallelError.self) { try CommandTemplate([]) }
    }
}

@Suite(.timeLimit(.minutes(2))) struct ConfigurationTests {
    @Test func hasTheOriginalsDefaults() {
        let configuration = ClusterConfiguration()
        #expect(configuration.jobQueueName == "DockerParallelQueue")
        #expect(configuration.workerHardware == Hardware(cpu: 1024, memory: 2048))
        #expect(configuration.serverHardware == Hardware(cpu: 256, memory: 2048))
        #expect(configuration.serverPort == 8888)
        #expect(configuration.serverWorkerSameLAN)
        #expect(!configuration.serverClientSameLAN)
        #expect(configuration.expectedWorkerNumber == 1)
        #expect(configuration.serverPassword.value.count == 26)
        #expect(configuration.serverPassword.value.allSatisfy { $0.isLowercase })
        #expect(ClusterConfiguration().serverPassword != configuration.serverPassword)
    }

    @Test func thePasswordNeverPrintsItself() {
        let configuration = ClusterConfiguration()
        let secret = configuration.serverPassword.value
        #expect(!"\(configuration)".contains(secret))
        #expect(!String(reflecting: configuration).contains(secret))
    }

    @Test func passwordComparisonIsExact() {
        let password = ServerPassword("abcdef")
        #expect(password.matches("abcdef"))
        #expect(!password.matches("abcdeg"))
        #expect(!password.matches("abcde"))
        #expect(!password.matches("abcdefg"))
        #expect(!password.matches(""))
    }

    @Test(arguments: ["", "../etc", "a b", "x/y", String(repeating: "a", count: 65)])
    func rejectsUnsafeClusterNames(name: String) {
        #expect(throws: DockerParallelError.self) { try ClusterConfiguration.validate(jobQueueName: name) }
    }

    @Test func endpointsPreferTheRequestedNetwork() {
        let endpoints = ServerEndpoints(publicEndpoint: Endpoint(host: "1.2.3.4", port: 1), privateEndpoint: Endpoint(host: "10.0.0.1", port: 2))
        #expect(endpoints.endpoint(sameLAN: true)?.host == "10.0.0.1")
        #expect(endpoints.endpoint(sameLAN: false)?.host == "1.2.3.4")
    }

    /// The endpoint file's line carries the port and, when there is one, the unix socket's path
    /// (spaces included); anything else is not an endpoint.
    @Test func endpointFileLinesRoundTrip() {
        let endpoints = [
            Endpoint(host: "127.0.0.1", port: 8888),
            Endpoint(host: "::1", port: 1, unixSocketPath: "/tmp/my clusters/a/server.sock"),
        ]
        for endpoint in endpoints { #expect(Endpoint(fileLine: endpoint.fileLine + "\n") == endpoint) }
        #expect(Endpoint(fileLine: "127.0.0.1 8888") == Endpoint(host: "127.0.0.1", port: 8888))
        for line in ["", "127.0.0.1", "127.0.0.1 port", "8888"] { #expect(Endpoint(fileLine: line) == nil) }
    }
}
