import DockerParallelCore
import Foundation
import Testing
import KubernetesProvider

/// Kubeconfig and service-account loading, and the credentials they lead to. No network: exec
/// plugins are small shell scripts in temporary folders.
@Suite struct KubernetesAccessTests {
    // A throwaway self-signed P-256 certificate and its key (CN=test), made for these tests only.
    static let certificatePEM = """
        -----BEGIN CERTIFICATE-----
        MIIBczCCARmgAwIBAgIUb7Ur04V/bGRel9OLPG+BGTfPswEwCgYIKoZIzj0EAwIw
        DzENMAsGA1UEAwwEdGVzdDAeFw0yNjEyMDIxODM1NTlaFw0zNjExMjkxODM1NTla
        MA8xDTALBgNVBAMMBHRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASQcuRE
        AQuni4N2PV0ggzQ9ClsTYNLCY/s1U9vi//v3DYpMOW0RkQ6QFLklLMi/J1QWGiO9
        NnMB2YQGGtISxIFFo1MwUTAdBgNVHQ4EFgQUjYYVJwSYudj/MXGzkf7RQOJiFYAw
        HwYDVR0jBBgwFoAUjYYVJwSYudj/MXGzkf7RQOJiFYAwDwYDVR0TAQH/BAUwAwEB
        /zAKBggqhkjOPQQDAgNIADBFAiEAxtaEptRfvJ4jqxgBBPz2BXB9xKzMydaowKIZ
        SgSbPWsCIFb6jmctJeyNohQp5CKB/9irLzGYNcWxvSAkzmEZwc1j
        -----END CERTIFICATE-----

        """
    static let keyPEM = """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggV+szTn/wCqpXHSJ
        utAouiyqfW8YAcqbA0FiqHCzRwKhRANCAASQcuREAQuni4N2PV0ggzQ9ClsTYNLC
        Y/s1U9vi//v3DYpMOW0RkQ6QFLklLMi/J1QWGiO9NnMB2YQGGtISxIFF
        -----END PRIVATE KEY-----

        """
    static var certificateBase64: String { Data(certificatePEM.utf8).base64EncodedString() }
    static var keyBase64: String { Data(keyPEM.utf8).base64EncodedString() }

    // MARK: Kubeconfig parsing

    @Test func parsesInlineDataFields() throws {
        let text = """
            apiVersion: v1
            kind: Config
            current-context: kind-test
            clusters:
            - name: kind-test
              cluster:
                server: https://127.0.0.1:6443/
                certificate-authority-data: \(Self.certificateBase64)
            users:
            - name: kind-test
              user:
                client-certificate-data: \(Self.certificateBase64)
                client-key-data: \(Self.keyBase64)
            contexts:
            - name: kind-test
              context:
                cluster: kind-test
                user: kind-test
                namespace: jobs
            """
        let access = try KubernetesAccess.parse(kubeconfig: text, path: "/home/me/.kube/config", context: nil, namespace: nil)
        #expect(access.server == "https://127.0.0.1:6443")
        #expect(access.namespace == "jobs")
        #expect(access.certificateAuthority == Data(Self.certificatePEM.utf8))
        #expect(access.clientCertificate == Data(Self.certificatePEM.utf8))
        #expect(access.clientKey == Data(Self.keyPEM.utf8))
        #expect(access.insecureSkipTLSVerify == false)
        #expect(access.token == nil && access.tokenFile == nil && access.exec == nil)
        #expect(access.source == "context 'kind-test' of /home/me/.kube/config")
    }

    @Test func parsesJSON() throws {
        let text = """
            {"apiVersion": "v1", "kind": "Config", "current-context": "prod",
             "clusters": [{"name": "prod", "cluster": {"server": "https://k8s.example:443", "insecure-skip-tls-verify": true}}],
             "users": [{"name": "robot", "user": {"token": "0123456789"}}],
             "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "robot"}}]}
            """
        let access = try KubernetesAccess.parse(kubeconfig: text, path: "/tmp/config.json", context: nil, namespace: nil)
        #expect(access.server == "https://k8s.example:443")
        #expect(access.insecureSkipTLSVerify)
        #expect(access.token == "0123456789")
        #expect(access.namespace == "default")
        #expect(access.certificateAuthority == nil)
    }

    @Test func contextAndNamespaceOverrides() throws {
        let text = Self.twoContexts
        let current = try KubernetesAccess.parse(kubeconfig: text, path: "/k/config", context: nil, namespace: nil)
        #expect(current.server == "https://one:6443")
        #expect(current.namespace == "default")
        let other = try KubernetesAccess.parse(kubeconfig: text, path: "/k/config", context: "two", namespace: nil)
        #expect(other.server == "https://two:6443")
        #expect(other.namespace == "team-two")
        #expect(other.token == "two-token")
        #expect(other.source == "context 'two' of /k/config")
        let overridden = try KubernetesAccess.parse(kubeconfig: text, path: "/k/config", context: "two", namespace: "mine")
        #expect(overridden.namespace == "mine")
    }

    @Test func unknownContextListsTheContexts() throws {
        let error = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.parse(kubeconfig: Self.twoContexts, path: "/k/config", context: "three", namespace: nil)
        }
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains("no context 'three'"))
        #expect(error.message.contains("'one', 'two'"))
        #expect(!error.message.contains("two-token"))
    }

    @Test func contextNamingAMissingClusterOrUser() throws {
        let missingCluster = """
            current-context: c
            contexts: [{name: c, context: {cluster: gone, user: u}}]
            users: [{name: u, user: {token: secret-token}}]
            """
        let clusterError = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.parse(kubeconfig: missingCluster, path: "/k/config", context: nil, namespace: nil)
        }
        #expect(clusterError.message.contains("cluster 'gone'"))
        let missingUser = """
            current-context: c
            contexts: [{name: c, context: {cluster: k, user: nobody}}]
            clusters: [{name: k, cluster: {server: "https://k:6443"}}]
            """
        let userError = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.parse(kubeconfig: missingUser, path: "/k/config", context: nil, namespace: nil)
        }
        #expect(userError.message.contains("user 'nobody'"))
    }

    @Test func noCurrentContextSaysWhichToChoose() throws {
        let text = Self.twoContexts.replacingOccurrences(of: "current-context: one\n", with: "")
        let error = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.parse(kubeconfig: text, path: "/k/config", context: nil, namespace: nil)
        }
        #expect(error.message.contains("sets no current-context"))
        #expect(error.message.contains("'one', 'two'"))
    }

    @Test func parseErrorsDoNotQuoteTheFile() throws {
        let text = "users:\n- name: u\n  user:\n    token: \"super-secret-value\n  : ["
        let error = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.parse(kubeconfig: text, path: "/k/config", context: nil, namespace: nil)
        }
        #expect(error.message.contains("cannot parse the kubeconfig /k/config"))
        #expect(!error.message.contains("super-secret-value"))
    }

    @Test func unsupportedExecAPIVersion() throws {
        let text = Self.execConfig(command: "plugin", apiVersion: "client.authentication.k8s.io/v1alpha1")
        let error = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.parse(kubeconfig: text, path: "/k/config", context: nil, namespace: nil)
        }
        #expect(error.message.contains("v1alpha1"))
        #expect(error.message.contains("client.authentication.k8s.io/v1"))
    }

    // MARK: Files and loading

    @Test func filePathsAreRelativeToTheKubeconfig() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try folder.write("pki/ca.crt", Self.certificatePEM)
        try folder.write("pki/client.crt", Self.certificatePEM)
        try folder.write("pki/client.key", Self.keyPEM)
        try folder.write("token", "file-token\n")
        let config = try folder.write("config", """
            current-context: c
            clusters: [{name: k, cluster: {server: "https://k:6443", certificate-authority: pki/ca.crt}}]
            users: [{name: u, user: {client-certificate: pki/client.crt, client-key: \(folder.path)/pki/client.key, tokenFile: token}}]
            contexts: [{name: c, context: {cluster: k, user: u}}]
            """)
        let access = try KubernetesAccess.load(kubeconfig: config, environment: [:])
        #expect(access.certificateAuthority == Data(Self.certificatePEM.utf8))
        #expect(access.clientCertificate == Data(Self.certificatePEM.utf8))
        #expect(access.clientKey == Data(Self.keyPEM.utf8))
        #expect(access.tokenFile == folder.path + "/token")
    }

    @Test func missingCertificateAuthorityFileIsNamed() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let config = try folder.write("config", """
            current-context: c
            clusters: [{name: k, cluster: {server: "https://k:6443", certificate-authority: pki/missing.crt}}]
            contexts: [{name: c, context: {cluster: k}}]
            """)
        let error = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.load(kubeconfig: config, environment: [:])
        }
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains(folder.path + "/pki/missing.crt"))
        #expect(error.message.contains("does not exist"))
    }

    @Test func mergesTheFilesOfKUBECONFIG() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let first = try folder.write("first", """
            current-context: a
            clusters: [{name: shared, cluster: {server: "https://first:6443"}}]
            users: [{name: u, user: {token: first-token}}]
            contexts: [{name: a, context: {cluster: shared, user: u}}]
            """)
        let second = try folder.write("second", """
            current-context: b
            clusters:
            - {name: shared, cluster: {server: "https://second:6443"}}
            - {name: only-second, cluster: {server: "https://only-second:6443"}}
            users: [{name: u, user: {token: second-token}}]
            contexts:
            - {name: a, context: {cluster: only-second, user: u}}
            - {name: b, context: {cluster: shared, user: u, namespace: bee}}
            """)
        let environment = ["KUBECONFIG": "\(first)::\(folder.path)/absent:\(second)", "HOME": folder.path]
        let current = try KubernetesAccess.load(environment: environment)
        #expect(current.server == "https://first:6443")
        #expect(current.token == "first-token")
        #expect(current.source == "context 'a' of \(first)")
        let chosen = try KubernetesAccess.load(context: "b", environment: environment)
        #expect(chosen.server == "https://first:6443")  // 'shared' as the first file defines it
        #expect(chosen.namespace == "bee")
        #expect(chosen.source == "context 'b' of \(second)")
        // An explicit path list takes precedence over KUBECONFIG.
        let explicit = try KubernetesAccess.load(kubeconfig: "\(second):\(first)", environment: environment)
        #expect(explicit.source == "context 'b' of \(second)")
        #expect(explicit.server == "https://second:6443")
    }

    @Test func readsTheHomeKubeconfig() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try folder.write(".kube/config", Self.twoContexts)
        let access = try KubernetesAccess.load(environment: ["HOME": folder.path, "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"])
        #expect(access.server == "https://one:6443")
        #expect(access.source == "context 'one' of \(folder.path)/.kube/config")
    }

    @Test func noConfigurationAtAll() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let error = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.load(environment: ["HOME": folder.path], serviceAccountDirectory: folder.path + "/sa")
        }
        #expect(error.code == .invalidArgument)
        #expect(error.message == "no Kubernetes configuration: set KUBECONFIG, write ~/.kube/config, or run inside a pod with a service account")
        let missing = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.load(environment: ["KUBECONFIG": folder.path + "/nope"])
        }
        #expect(missing.message.contains(folder.path + "/nope"))
    }

    @Test func inClusterFromTheServiceAccount() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try folder.write("sa/token", "pod-token\n")
        try folder.write("sa/ca.crt", Self.certificatePEM)
        try folder.write("sa/namespace", "workers\n")
        let environment = ["HOME": folder.path, "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        let access = try KubernetesAccess.load(environment: environment, serviceAccountDirectory: folder.path + "/sa")
        #expect(access.server == "https://10.96.0.1:443")
        #expect(access.namespace == "workers")
        #expect(access.certificateAuthority == Data(Self.certificatePEM.utf8))
        #expect(access.tokenFile == folder.path + "/sa/token")
        #expect(access.source == "the pod's service account")
        #expect(try await KubernetesCredentials(access: access).authorization() == "Bearer pod-token")

        var ipv6 = environment
        ipv6["KUBERNETES_SERVICE_HOST"] = "fd00::1"
        let v6 = try KubernetesAccess.load(namespace: "other", environment: ipv6, serviceAccountDirectory: folder.path + "/sa")
        #expect(v6.server == "https://[fd00::1]:443")
        #expect(v6.namespace == "other")

        let error = try #require(throws: DockerParallelError.self) {
            try KubernetesAccess.load(environment: environment, serviceAccountDirectory: folder.path + "/none")
        }
        #expect(error.message.contains(folder.path + "/none/token"))
    }

    @Test func makesAnHTTPClientWithTheTestAuthority() async throws {
        let access = KubernetesAccess(
            server: "https://127.0.0.1:6443", certificateAuthority: Data(Self.certificatePEM.utf8),
            clientCertificate: Data(Self.certificatePEM.utf8), clientKey: Data(Self.keyPEM.utf8), source: "a test")
        let client = try access.makeHTTPClient()
        try await client.shutdown()

        var broken = access
        broken.certificateAuthority = Data("not a certificate".utf8)
        let error = try #require(throws: DockerParallelError.self) { try broken.makeHTTPClient() }
        #expect(error.message.contains("certificate authority of a test"))
        #expect(!error.message.contains("not a certificate"))
    }

    // MARK: Credentials

    @Test func staticTokenAndCertificateOnly() async throws {
        let withToken = KubernetesAccess(server: "https://k", token: "abc", source: "t")
        #expect(try await KubernetesCredentials(access: withToken).authorization() == "Bearer abc")
        let certificateOnly = KubernetesAccess(
            server: "https://k", clientCertificate: Data(Self.certificatePEM.utf8), clientKey: Data(Self.keyPEM.utf8), source: "t")
        #expect(try await KubernetesCredentials(access: certificateOnly).authorization() == nil)
        #expect(try await KubernetesCredentials(access: certificateOnly).execClientCertificate() == nil)
    }

    @Test func tokenFileIsReadAgainAfterAMinute() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let path = try folder.write("token", "first\n")
        let clock = TestClock()
        let credentials = KubernetesCredentials(
            access: KubernetesAccess(server: "https://k", tokenFile: path, source: "t"), now: clock.now)
        #expect(try await credentials.authorization() == "Bearer first")
        try folder.write("token", "second")
        clock.advance(30)
        #expect(try await credentials.authorization() == "Bearer first")
        clock.advance(31)
        #expect(try await credentials.authorization() == "Bearer second")
        try folder.write("token", "third")
        await credentials.invalidate()
        #expect(try await credentials.authorization() == "Bearer third")
        try FileManager.default.removeItem(atPath: path)
        await credentials.invalidate()
        let error = await #expect(throws: DockerParallelError.self) { try await credentials.authorization() }
        #expect(error?.message.contains(path) == true)
    }

    @Test func execPluginTokenIsCachedUntilNearItsExpiry() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let clock = TestClock()
        let expiry = clock.now().addingTimeInterval(600)
        let plugin = try PluginScript(folder: folder, expiry: expiry)
        // A relative command, found in the kubeconfig's folder.
        let access = try KubernetesAccess.parse(
            kubeconfig: Self.execConfig(command: "./bin/plugin", env: ["COUNT_FILE": plugin.countFile, "EXPIRY": plugin.expiryText, "INFO_FILE": plugin.infoFile]),
            path: folder.path + "/config", context: nil, namespace: nil)
        #expect(access.exec?.workingDirectory == folder.path)
        let credentials = KubernetesCredentials(access: access, environment: ["PATH": "/usr/bin:/bin"], now: clock.now)

        #expect(try await credentials.authorization() == "Bearer token-1")
        #expect(try await credentials.authorization() == "Bearer token-1")
        #expect(plugin.runs == 1)
        let info = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: plugin.infoFile))) as? [String: Any]
        #expect(info?["apiVersion"] as? String == "client.authentication.k8s.io/v1")
        #expect(info?["kind"] as? String == "ExecCredential")
        #expect((info?["spec"] as? [String: Any])?["interactive"] as? Bool == false)
        #expect((info?["spec"] as? [String: Any])?["cluster"] == nil)

        clock.advance(530)  // 70 s before expiry: still good
        #expect(try await credentials.authorization() == "Bearer token-1")
        clock.advance(20)  // 50 s before expiry: replaced
        #expect(try await credentials.authorization() == "Bearer token-2")
        #expect(plugin.runs == 2)

        await credentials.invalidate()
        #expect(try await credentials.authorization() == "Bearer token-3")
        #expect(plugin.runs == 3)
    }

    @Test func execPluginWithoutExpiryRunsOnceForConcurrentCallers() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let plugin = try PluginScript(folder: folder, expiry: nil, delay: "0.3")
        let access = try KubernetesAccess.parse(
            kubeconfig: Self.execConfig(command: plugin.path, env: ["COUNT_FILE": plugin.countFile], provideClusterInfo: true),
            path: folder.path + "/config", context: nil, namespace: nil)
        let clock = TestClock()
        let credentials = KubernetesCredentials(access: access, environment: ["PATH": "/usr/bin:/bin"], now: clock.now)
        let headers = try await withThrowingTaskGroup(of: String?.self) { group in
            for _ in 0..<8 { group.addTask { try await credentials.authorization() } }
            return try await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(headers == Array(repeating: "Bearer token-1", count: 8))
        #expect(plugin.runs == 1)
        clock.advance(86_400)
        #expect(try await credentials.authorization() == "Bearer token-1")
        #expect(plugin.runs == 1)
    }

    @Test func execPluginFoundOnPATHWithClusterInfo() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let plugin = try PluginScript(folder: folder, expiry: nil)
        let text = Self.execConfig(
            command: "plugin", env: ["COUNT_FILE": plugin.countFile, "INFO_FILE": plugin.infoFile], provideClusterInfo: true)
            .replacingOccurrences(of: "server: https://k:6443", with: "server: https://k:6443\n    certificate-authority-data: \(Self.certificateBase64)")
        let access = try KubernetesAccess.parse(kubeconfig: text, path: "/elsewhere/config", context: nil, namespace: nil)
        let credentials = KubernetesCredentials(access: access, environment: ["PATH": "/nonexistent:\(folder.path)/bin:/usr/bin:/bin"])
        #expect(try await credentials.authorization() == "Bearer token-1")
        let info = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: plugin.infoFile))) as? [String: Any]
        let cluster = (info?["spec"] as? [String: Any])?["cluster"] as? [String: Any]
        #expect(cluster?["server"] as? String == "https://k:6443")
        #expect(cluster?["certificate-authority-data"] as? String == Self.certificateBase64)
    }

    @Test func execPluginClientCertificate() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let certificate = Self.certificatePEM.replacingOccurrences(of: "\n", with: "\\n")
        let key = Self.keyPEM.replacingOccurrences(of: "\n", with: "\\n")
        let script = try folder.writeScript("plugin", """
            #!/bin/sh
            printf '%s' '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"clientCertificateData":"\(certificate)","clientKeyData":"\(key)"}}'
            """)
        let access = try KubernetesAccess.parse(
            kubeconfig: Self.execConfig(command: script, apiVersion: "client.authentication.k8s.io/v1beta1"),
            path: folder.path + "/config", context: nil, namespace: nil)
        let credentials = KubernetesCredentials(access: access, environment: ["PATH": "/usr/bin:/bin"])
        #expect(try await credentials.authorization() == nil)
        let pair = try #require(try await credentials.execClientCertificate())
        #expect(pair.certificate == Data(Self.certificatePEM.utf8))
        #expect(pair.key == Data(Self.keyPEM.utf8))
    }

    @Test func execPluginFailureNamesCommandStatusStderrAndHint() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let script = try folder.writeScript("plugin", """
            #!/bin/sh
            for i in 1 2 3 4 5 6 7; do echo "line $i" >&2; done
            echo "error: you must log in first" >&2
            exit 3
            """)
        let access = try KubernetesAccess.parse(
            kubeconfig: Self.execConfig(command: script, installHint: "Install it with: brew install the-plugin"),
            path: folder.path + "/config", context: nil, namespace: nil)
        let credentials = KubernetesCredentials(access: access, environment: ["PATH": "/usr/bin:/bin"])
        let error = await #expect(throws: DockerParallelError.self) { try await credentials.authorization() }
        let message = try #require(error?.message)
        #expect(message.contains("'\(script)'"))
        #expect(message.contains("exited with status 3"))
        #expect(message.contains("error: you must log in first"))
        #expect(message.contains("line 7"))
        #expect(!message.contains("line 1 "))
        #expect(message.contains("brew install the-plugin"))
        #expect(message.contains("context 'c' of \(folder.path)/config"))
    }

    @Test func execPluginNotFoundGivesTheInstallHint() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let access = try KubernetesAccess.parse(
            kubeconfig: Self.execConfig(command: "no-such-auth-plugin", installHint: "Install no-such-auth-plugin from its vendor."),
            path: folder.path + "/config", context: nil, namespace: nil)
        let credentials = KubernetesCredentials(access: access, environment: ["PATH": folder.path])
        let error = await #expect(throws: DockerParallelError.self) { try await credentials.authorization() }
        #expect(error?.message.contains("'no-such-auth-plugin'") == true)
        #expect(error?.message.contains("not found on PATH") == true)
        #expect(error?.message.contains("Install no-such-auth-plugin from its vendor.") == true)
    }

    @Test func execPluginBadOutputIsNotQuoted() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let script = try folder.writeScript("plugin", "#!/bin/sh\necho 'token=hunter2-secret'\n")
        let access = try KubernetesAccess.parse(
            kubeconfig: Self.execConfig(command: script), path: folder.path + "/config", context: nil, namespace: nil)
        let credentials = KubernetesCredentials(access: access, environment: ["PATH": "/usr/bin:/bin"])
        let error = await #expect(throws: DockerParallelError.self) { try await credentials.authorization() }
        #expect(error?.message.contains("not an ExecCredential") == true)
        #expect(error?.message.contains("hunter2") == false)
    }

    // MARK: Fixtures

    static let twoContexts = """
        current-context: one
        clusters:
        - name: one
          cluster: {server: "https://one:6443"}
        - name: two
          cluster: {server: "https://two:6443"}
        users:
        - name: one
          user: {token: one-token}
        - name: two
          user: {token: two-token}
        contexts:
        - name: one
          context: {cluster: one, user: one}
        - name: two
          context: {cluster: two, user: two, namespace: team-two}

        """

    static func execConfig(
        command: String, apiVersion: String = "client.authentication.k8s.io/v1", env: [String: String] = [:],
        installHint: String? = nil, provideClusterInfo: Bool = false
    ) -> String {
        var exec = """
                  apiVersion: \(apiVersion)
                  command: "\(command)"
                  provideClusterInfo: \(provideClusterInfo)
                  interactiveMode: Never

            """
        if !env.isEmpty {
            exec += "      env:\n"
            for (name, value) in env.sorted(by: { $0.key < $1.key }) {
                exec += "      - name: \(name)\n        value: \"\(value)\"\n"
            }
        }
        if let installHint { exec += "      installHint: \"\(installHint)\"\n" }
        return """
            current-context: c
            clusters:
            - name: k
              cluster:
                server: https://k:6443
            users:
            - name: u
              user:
                exec:
            \(exec)
            contexts:
            - name: c
              context: {cluster: k, user: u}

            """
    }
}

/// A folder under the temporary directory; `remove()` it when done.
private struct TemporaryFolder {
    let path: String

    init() throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("k8s-access-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// Deletes the folder and everything in it.
    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Writes a file (making its folders) and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String, permissions: Int = 0o644) throws -> String {
        let file = (path as NSString).appendingPathComponent(name)
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        try FileManager.default.setAttributes([.posixPermissions: permissions], ofItemAtPath: file)
        return file
    }

    /// Writes an executable script and returns its path.
    func writeScript(_ name: String, _ text: String) throws -> String {
        try write(name, text + "\n", permissions: 0o755)
    }
}

/// An exec plugin at `bin/plugin` that appends a line to a file each run and prints `token-<run>`.
private struct PluginScript {
    let path: String
    let countFile: String
    let infoFile: String
    let expiryText: String

    init(folder: TemporaryFolder, expiry: Date?, delay: String = "0") throws {
        countFile = folder.path + "/count"
        infoFile = folder.path + "/exec-info.json"
        let formatter = ISO8601DateFormatter()
        expiryText = expiry.map { formatter.string(from: $0) } ?? ""
        let expiryField = expiry == nil ? "" : #","expirationTimestamp":"%s""#
        let expiryArgument = expiry == nil ? "" : #" "$EXPIRY""#
        path = try folder.writeScript("bin/plugin", """
            #!/bin/sh
            echo run >> "$COUNT_FILE"
            count=$(wc -l < "$COUNT_FILE" | tr -d ' ')
            [ -n "$INFO_FILE" ] && printf '%s' "$KUBERNETES_EXEC_INFO" > "$INFO_FILE"
            sleep \(delay)
            printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"token-%s"\(expiryField)}}' "$count"\(expiryArgument)
            """)
    }

    /// How many times the plugin has run.
    var runs: Int {
        // One line a run: appends do not race the way a read-increment-write counter would.
        (try? String(contentsOfFile: countFile, encoding: .utf8))?.split(separator: "\n").count ?? 0
    }
}

/// A clock the test moves by hand.
///
/// `@unchecked Sendable` is safe: `current` is only touched under `lock`.
private final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)

    /// The current time; pass as `now:`.
    var now: @Sendable () -> Date { { [self] in lock.withLock { current } } }

    /// Moves the time forward.
    func advance(_ seconds: TimeInterval) { lock.withLock { current += seconds } }
}
