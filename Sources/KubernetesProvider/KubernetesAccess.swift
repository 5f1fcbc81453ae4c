import AsyncHTTPClient
import DockerParallelCore
import Foundation
import NIOSSL
import Yams

/// Where a Kubernetes API server is and how to authenticate to it: read from a kubeconfig or a
/// pod's service account.
///
/// Nothing here holds a connection; ``makeHTTPClient()`` builds the HTTP client and
/// ``KubernetesCredentials`` supplies the `Authorization` header.
package struct KubernetesAccess: Sendable, Hashable {
    /// The API server's base URL without a trailing slash, such as `https://10.0.0.1:6443`.
    package var server: String
    /// The namespace to work in: the one asked for, else the context's, else `default` (in a
    /// pod: the service account's namespace).
    package var namespace: String
    /// PEM certificates to trust for the server, or `nil` for the system's roots.
    package var certificateAuthority: Data?
    /// Whether to accept any server certificate (the cluster's `insecure-skip-tls-verify`).
    package var insecureSkipTLSVerify: Bool
    /// The PEM client certificate (chain) to present, if any.
    package var clientCertificate: Data?
    /// The PEM private key of ``clientCertificate``.
    package var clientKey: Data?
    /// A static bearer token (the user's `token`).
    package var token: String?
    /// A file holding the bearer token (the user's `tokenFile`, or the service account's token),
    /// read again when the copy in memory is older than a minute, as such tokens rotate.
    package var tokenFile: String?
    /// The credential plugin to run for a token or client certificate (the user's `exec`).
    package var exec: ExecPlugin?
    /// Where this came from, for messages: `context 'kind-x' of ~/.kube/config` or
    /// `the pod's service account`. Never holds a secret.
    package var source: String

    /// A client-go credential plugin: a program that prints an `ExecCredential` as JSON.
    package struct ExecPlugin: Sendable, Hashable {
        /// The `ExecCredential` version the plugin speaks: `client.authentication.k8s.io/v1` or
        /// `client.authentication.k8s.io/v1beta1`.
        package var apiVersion: String
        /// The program: an absolute path, a path relative to ``workingDirectory`` (when it holds
        /// a `/`), or a name to look up on `PATH`.
        package var command: String
        /// The program's arguments.
        package var args: [String]
        /// Variables added to the process's environment for the plugin.
        package var env: [String: String]
        /// What to tell a user who does not have the program.
        package var installHint: String?
        /// Whether the plugin wants the cluster's server and certificate authority in
        /// `KUBERNETES_EXEC_INFO`.
        package var provideClusterInfo: Bool
        /// The folder of the kubeconfig that named the plugin, for relative commands.
        package var workingDirectory: String

        /// Creates a plugin description.
        package init(
            apiVersion: String, command: String, args: [String] = [], env: [String: String] = [:],
            installHint: String? = nil, provideClusterInfo: Bool = false, workingDirectory: String
        ) {
            self.apiVersion = apiVersion
            self.command = command
            self.args = args
            self.env = env
            self.installHint = installHint
            self.provideClusterInfo = provideClusterInfo
            self.workingDirectory = workingDirectory
        }
    }

    /// Creates access settings.
    /// - Parameters:
    ///   - server: The base URL; a trailing slash is dropped.
    ///   - namespace: Default `default`.
    ///   - source: Where the settings came from, for messages.
    package init(
        server: String, namespace: String = "default", certificateAuthority: Data? = nil,
        insecureSkipTLSVerify: Bool = false, clientCertificate: Data? = nil, clientKey: Data? = nil,
        token: String? = nil, tokenFile: String? = nil, exec: ExecPlugin? = nil, source: String
    ) {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.namespace = namespace
        self.certificateAuthority = certificateAuthority
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.token = token
        self.tokenFile = tokenFile
        self.exec = exec
        self.source = source
    }

    /// The exec plugin API versions this package speaks.
    package static let supportedExecAPIVersions = [
        "client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1",
    ]

    /// Finds the cluster to use, as kubectl does.
    ///
    /// In order: `kubeconfig` (one path or a colon-separated list), else `$KUBECONFIG`
    /// (a colon-separated list; files that do not exist are skipped), else `~/.kube/config`
    /// (with `HOME` from `environment`), else the pod's service account when
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` are set. Several kubeconfig files
    /// merge: the first file to define a cluster, user or context wins, and the first file that
    /// sets `current-context` chooses it.
    /// - Parameters:
    ///   - kubeconfig: Kubeconfig path(s) to read instead of `$KUBECONFIG`; each must exist.
    ///   - context: The context to use instead of `current-context`.
    ///   - namespace: The namespace to use instead of the context's.
    ///   - environment: Where `KUBECONFIG`, `HOME` and `KUBERNETES_SERVICE_*` are read.
    ///   - serviceAccountDirectory: Where a pod's `token`, `ca.crt` and `namespace` are.
    /// - Throws: `DockerParallelError` `.invalidArgument` when no configuration is found, a file
    ///   cannot be read or parsed, or the context, its cluster or user is missing.
    package static func load(
        kubeconfig: String? = nil, context: String? = nil, namespace: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccountDirectory: String = "/var/run/secrets/kubernetes.io/serviceaccount"
    ) throws -> KubernetesAccess {
        let fileManager = FileManager.default
        if let kubeconfig, !kubeconfig.isEmpty {
            let paths = splitPathList(kubeconfig)
            for path in paths where !fileManager.fileExists(atPath: path) {
                throw DockerParallelError(
                    .invalidArgument, "the kubeconfig \(path) does not exist: pass the path of an existing kubeconfig file")
            }
            return try resolve(paths.map(readKubeconfig), context: context, namespace: namespace)
        }
        if let variable = environment["KUBECONFIG"], !variable.isEmpty {
            let paths = splitPathList(variable)
            let existing = paths.filter { fileManager.fileExists(atPath: $0) }
            guard !existing.isEmpty else {
                throw DockerParallelError(
                    .invalidArgument,
                    "KUBECONFIG names \(paths.joined(separator: ", ")), but none of these files exists: fix KUBECONFIG or unset it to use ~/.kube/config")
            }
            return try resolve(existing.map(readKubeconfig), context: context, namespace: namespace)
        }
        if let home = environment["HOME"], !home.isEmpty {
            let path = (home as NSString).appendingPathComponent(".kube/config")
            if fileManager.fileExists(atPath: path) {
                return try resolve([readKubeconfig(path)], context: context, namespace: namespace)
            }
        }
        if let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        {
            return try inCluster(host: host, port: port, directory: serviceAccountDirectory, namespace: namespace)
        }
        throw DockerParallelError(
            .invalidArgument,
            "no Kubernetes configuration: set KUBECONFIG, write ~/.kube/config, or run inside a pod with a service account")
    }

    /// Parses one kubeconfig (YAML or JSON) and picks its context.
    /// - Parameters:
    ///   - text: The file's contents.
    ///   - path: The file's path: relative paths in it are relative to its folder, and messages
    ///     name it.
    ///   - context: The context to use instead of `current-context`.
    ///   - namespace: The namespace to use instead of the context's.
    /// - Throws: `DockerParallelError` `.invalidArgument` when the text cannot be parsed, the
    ///   context, its cluster or user is missing, or a file it names cannot be read.
    package static func parse(kubeconfig text: String, path: String, context: String?, namespace: String?) throws
        -> KubernetesAccess
    {
        try resolve([KubeconfigFile(path: path, config: decodeKubeconfig(text, path: path))], context: context, namespace: namespace)
    }

    /// Settings for a program running in a pod, from its service account.
    /// - Throws: `DockerParallelError` `.invalidArgument` when the token is missing.
    static func inCluster(host: String, port: String, directory: String, namespace: String?) throws -> KubernetesAccess {
        let fileManager = FileManager.default
        let tokenPath = (directory as NSString).appendingPathComponent("token")
        guard fileManager.fileExists(atPath: tokenPath) else {
            throw DockerParallelError(
                .invalidArgument,
                "KUBERNETES_SERVICE_HOST is set, as in a pod, but the service account token \(tokenPath) does not exist: mount the service account token (automountServiceAccountToken: true) or set KUBECONFIG")
        }
        let caPath = (directory as NSString).appendingPathComponent("ca.crt")
        var certificateAuthority: Data?
        if fileManager.fileExists(atPath: caPath) {
            certificateAuthority = try readFile(caPath, what: "the service account's certificate authority")
        }
        var podNamespace = "default"
        let namespacePath = (directory as NSString).appendingPathComponent("namespace")
        if let data = fileManager.contents(atPath: namespacePath) {
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty { podNamespace = text }
        }
        let hostPart = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return KubernetesAccess(
            server: "https://\(hostPart):\(port)", namespace: nonEmpty(namespace) ?? podNamespace,
            certificateAuthority: certificateAuthority, tokenFile: tokenPath, source: "the pod's service account")
    }

    /// Builds an HTTP client for ``server``: it trusts ``certificateAuthority`` (else the system's
    /// roots), presents ``clientCertificate`` when set, and skips certificate verification only
    /// when ``insecureSkipTLSVerify`` is set. The caller shuts it down.
    /// - Throws: `DockerParallelError` `.invalidArgument` when a certificate or key is not valid PEM.
    package func makeHTTPClient() throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let certificateAuthority {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(certificateAuthority)))
            } catch {
                throw DockerParallelError(
                    .invalidArgument,
                    "the certificate authority of \(source) is not a PEM certificate: fix certificate-authority or certificate-authority-data",
                    underlying: error)
            }
        }
        if insecureSkipTLSVerify { tls.certificateVerification = .none }
        switch (clientCertificate, clientKey) {
        case (let certificate?, let key?):
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificate)).map { .certificate($0) }
            } catch {
                throw DockerParallelError(
                    .invalidArgument,
                    "the client certificate of \(source) is not a PEM certificate: fix client-certificate or client-certificate-data",
                    underlying: error)
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key), format: .pem))
            } catch {
                throw DockerParallelError(
                    .invalidArgument,
                    "the client key of \(source) is not a PEM private key: fix client-key or client-key-data",
                    underlying: error)
            }
        case (.some, nil), (nil, .some):
            throw DockerParallelError(
                .invalidArgument,
                "\(source) has a client certificate without its key, or a key without its certificate: set both client-certificate and client-key")
        case (nil, nil):
            break
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(tlsConfiguration: tls))
    }
}

// MARK: - Reading kubeconfig files

extension KubernetesAccess {
    /// One parsed kubeconfig file and where it is.
    struct KubeconfigFile {
        var path: String
        var config: Kubeconfig
        var directory: String { (path as NSString).deletingLastPathComponent }
    }

    /// The parts of a kubeconfig this package reads.
    struct Kubeconfig: Decodable {
        var currentContext: String?
        var clusters: [NamedCluster]?
        var users: [NamedUser]?
        var contexts: [NamedContext]?

        enum CodingKeys: String, CodingKey {
            case currentContext = "current-context", clusters, users, contexts
        }
    }

    struct NamedCluster: Decodable {
        var name: String
        var cluster: Cluster?
    }

    struct NamedUser: Decodable {
        var name: String
        var user: User?
    }

    struct NamedContext: Decodable {
        var name: String
        var context: Context?
    }

    struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
        }
    }

    struct User: Decodable {
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var token: String?
        var tokenFile: String?
        var exec: Exec?
        var authProvider: AuthProvider?
        var username: String?

        enum CodingKeys: String, CodingKey {
            case clientCertificate = "client-certificate", clientCertificateData = "client-certificate-data"
            case clientKey = "client-key", clientKeyData = "client-key-data"
            case token, tokenFile, exec, username
            case authProvider = "auth-provider"
        }
    }

    struct AuthProvider: Decodable {
        var name: String?
    }

    struct Exec: Decodable {
        var apiVersion: String?
        var command: String?
        var args: [String]?
        var env: [Variable]?
        var installHint: String?
        var provideClusterInfo: Bool?

        struct Variable: Decodable {
            var name: String
            var value: String?
        }
    }

    struct Context: Decodable {
        var cluster: String?
        var user: String?
        var namespace: String?
    }

    /// Splits a `KUBECONFIG`-style list, dropping empty entries.
    static func splitPathList(_ list: String) -> [String] {
        list.split(separator: ":", omittingEmptySubsequences: true).map(String.init)
    }

    static func readKubeconfig(_ path: String) throws -> KubeconfigFile {
        let data = try readFile(path, what: "the kubeconfig")
        return KubeconfigFile(path: path, config: try decodeKubeconfig(String(decoding: data, as: UTF8.self), path: path))
    }

    static func readFile(_ path: String, what: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "is not readable" : "does not exist"
            throw DockerParallelError(.invalidArgument, "\(what) file \(path) \(reason): fix the path or the file's permissions")
        }
        return data
    }

    /// Decodes YAML or JSON; an empty file is an empty configuration.
    static func decodeKubeconfig(_ text: String, path: String) throws -> Kubeconfig {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { return Kubeconfig() }
        do {
            if trimmed.hasPrefix("{") {
                // JSON is YAML too, but a JSON parser also takes tabs and long lines as written.
                if let config = try? JSONDecoder().decode(Kubeconfig.self, from: Data(trimmed.utf8)) { return config }
            }
            return try YAMLDecoder().decode(Kubeconfig.self, from: text)
        } catch {
            throw DockerParallelError(
                .invalidArgument, "cannot parse the kubeconfig \(path): \(describeParseError(error)). Fix the file's YAML")
        }
    }

    /// What went wrong in a parse, without quoting the text (it may hold secrets).
    static func describeParseError(_ error: any Error) -> String {
        if let error = error as? YamlError {
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
                .composer(_, let problem, let mark, _):
                return "\(problem) at line \(mark.line), column \(mark.column)"
            case .reader(let problem, _, _, _):
                return problem
            default:
                return "it is not valid YAML"
            }
        }
        if let error = error as? DecodingError {
            func path(_ keys: [any CodingKey]) -> String {
                keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            }
            switch error {
            case .typeMismatch(let type, let context):
                let name = "\(type)"
                let kind = name.hasPrefix("Array") || name.hasPrefix("Sequence") ? "list"
                    : name.hasPrefix("Dictionary") || name.hasPrefix("Mapping") ? "mapping" : name.lowercased()
                return "\(path(context.codingPath)) is not a \(kind)"
            case .valueNotFound(let type, let context):
                return "\(path(context.codingPath)) has no \(type)"
            case .keyNotFound(let key, let context):
                return "\(path(context.codingPath + [key])) is missing"
            case .dataCorrupted(let context):
                if let underlying = context.underlyingError { return describeParseError(underlying) }
                return context.codingPath.isEmpty ? "it is not valid YAML" : "\(path(context.codingPath)) is not valid"
            @unknown default:
                return "it is not a kubeconfig"
            }
        }
        return "it is not a kubeconfig"
    }

    /// Merges the files (the first to define a name wins) and builds the chosen context.
    static func resolve(_ files: [KubeconfigFile], context requested: String?, namespace: String?) throws -> KubernetesAccess {
        let paths = files.map(\.path).joined(separator: ", ")
        var clusters: [String: (Cluster, KubeconfigFile)] = [:]
        var users: [String: (User, KubeconfigFile)] = [:]
        var contexts: [String: (Context, KubeconfigFile)] = [:]
        var contextNames: [String] = []
        var currentContext: String?
        for file in files {
            for entry in file.config.clusters ?? [] where clusters[entry.name] == nil {
                clusters[entry.name] = (entry.cluster ?? Cluster(), file)
            }
            for entry in file.config.users ?? [] where users[entry.name] == nil {
                users[entry.name] = (entry.user ?? User(), file)
            }
            for entry in file.config.contexts ?? [] where contexts[entry.name] == nil {
                contexts[entry.name] = (entry.context ?? Context(), file)
                contextNames.append(entry.name)
            }
            if currentContext == nil { currentContext = nonEmpty(file.config.currentContext) }
        }
        let available = contextNames.isEmpty ? "it defines no contexts" : "its contexts are " + contextNames.map { "'\($0)'" }.joined(separator: ", ")

        guard let contextName = nonEmpty(requested) ?? currentContext else {
            throw DockerParallelError(
                .invalidArgument, "the kubeconfig \(paths) sets no current-context: choose a context (\(available))")
        }
        guard let (context, contextFile) = contexts[contextName] else {
            throw DockerParallelError(
                .invalidArgument, "the kubeconfig \(paths) has no context '\(contextName)': \(available)")
        }
        let source = "context '\(contextName)' of \(contextFile.path)"

        guard let clusterName = nonEmpty(context.cluster) else {
            throw DockerParallelError(.invalidArgument, "\(source) names no cluster: set the context's cluster")
        }
        guard let (cluster, clusterFile) = clusters[clusterName] else {
            throw DockerParallelError(
                .invalidArgument,
                "\(source) names cluster '\(clusterName)', which \(paths) does not define: add it under clusters or fix the context")
        }
        guard let server = nonEmpty(cluster.server) else {
            throw DockerParallelError(.invalidArgument, "cluster '\(clusterName)' in \(clusterFile.path) has no server: set its server URL")
        }
        guard server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw DockerParallelError(
                .invalidArgument,
                "cluster '\(clusterName)' in \(clusterFile.path) has server '\(server)', which is not an http:// or https:// URL: fix its server")
        }
        let certificateAuthority = try pem(
            data: cluster.certificateAuthorityData, file: cluster.certificateAuthority, in: clusterFile,
            field: "certificate-authority", of: "cluster '\(clusterName)'")

        var access = KubernetesAccess(
            server: server, namespace: nonEmpty(namespace) ?? nonEmpty(context.namespace) ?? "default",
            certificateAuthority: certificateAuthority, insecureSkipTLSVerify: cluster.insecureSkipTLSVerify ?? false,
            source: source)

        guard let userName = nonEmpty(context.user) else { return access }
        guard let (user, userFile) = users[userName] else {
            throw DockerParallelError(
                .invalidArgument,
                "\(source) names user '\(userName)', which \(paths) does not define: add it under users or fix the context")
        }
        let owner = "user '\(userName)'"
        access.clientCertificate = try pem(
            data: user.clientCertificateData, file: user.clientCertificate, in: userFile, field: "client-certificate", of: owner)
        access.clientKey = try pem(data: user.clientKeyData, file: user.clientKey, in: userFile, field: "client-key", of: owner)
        access.token = nonEmpty(user.token)
        access.tokenFile = nonEmpty(user.tokenFile).map { absolute($0, in: userFile.directory) }
        if let exec = user.exec {
            access.exec = try execPlugin(exec, owner: owner, file: userFile)
        }
        let hasCredentials = access.clientCertificate != nil || access.token != nil || access.tokenFile != nil || access.exec != nil
        if !hasCredentials, let provider = nonEmpty(user.authProvider?.name) {
            throw DockerParallelError(
                .invalidArgument,
                "\(owner) in \(userFile.path) uses auth-provider '\(provider)', which Kubernetes clients no longer support: switch the user to an exec plugin (such as gke-gcloud-auth-plugin, kubelogin or aws eks get-token)")
        }
        if !hasCredentials, user.username != nil {
            throw DockerParallelError(
                .invalidArgument,
                "\(owner) in \(userFile.path) uses a username and password, which Kubernetes no longer accepts: give the user a token, a client certificate or an exec plugin")
        }
        return access
    }

    static func execPlugin(_ exec: Exec, owner: String, file: KubeconfigFile) throws -> ExecPlugin {
        guard let command = nonEmpty(exec.command) else {
            throw DockerParallelError(.invalidArgument, "the exec plugin of \(owner) in \(file.path) has no command: set exec.command")
        }
        guard let apiVersion = nonEmpty(exec.apiVersion) else {
            throw DockerParallelError(
                .invalidArgument,
                "the exec plugin of \(owner) in \(file.path) has no apiVersion: set exec.apiVersion to client.authentication.k8s.io/v1")
        }
        guard supportedExecAPIVersions.contains(apiVersion) else {
            throw DockerParallelError(
                .invalidArgument,
                "the exec plugin of \(owner) in \(file.path) uses apiVersion \(apiVersion), which is not supported: use client.authentication.k8s.io/v1 (or v1beta1) and a plugin version that speaks it")
        }
        var env: [String: String] = [:]
        for variable in exec.env ?? [] { env[variable.name] = variable.value ?? "" }
        return ExecPlugin(
            apiVersion: apiVersion, command: command, args: exec.args ?? [], env: env, installHint: nonEmpty(exec.installHint),
            provideClusterInfo: exec.provideClusterInfo ?? false, workingDirectory: file.directory)
    }

    /// The PEM bytes of a `-data` field (base64) or of the file a field names.
    static func pem(data: String?, file path: String?, in file: KubeconfigFile, field: String, of owner: String) throws -> Data? {
        if let data = nonEmpty(data) {
            guard let decoded = Data(base64Encoded: data, options: .ignoreUnknownCharacters), !decoded.isEmpty else {
                throw DockerParallelError(
                    .invalidArgument, "\(field)-data of \(owner) in \(file.path) is not base64: set it to the base64 of the PEM file")
            }
            return decoded
        }
        guard let path = nonEmpty(path) else { return nil }
        let resolved = absolute(path, in: file.directory)
        guard let contents = FileManager.default.contents(atPath: resolved) else {
            let reason = FileManager.default.fileExists(atPath: resolved) ? "is not readable" : "does not exist"
            throw DockerParallelError(
                .invalidArgument,
                "the \(field) file \(resolved) of \(owner) in \(file.path) \(reason): fix the path (relative paths are relative to the kubeconfig's folder) or use \(field)-data")
        }
        return contents
    }

    static func absolute(_ path: String, in directory: String) -> String {
        path.hasPrefix("/") ? path : (directory as NSString).appendingPathComponent(path)
    }
}

/// `value` unless it is `nil` or empty.
private func nonEmpty(_ value: String?) -> String? {
    guard let value, !value.isEmpty else { return nil }
    return value
}
