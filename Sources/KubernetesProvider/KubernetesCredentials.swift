import DockerParallelCore
import Foundation

/// Supplies the `Authorization` header for a ``KubernetesAccess``: its static token, its token
/// file (read again after 60 s, as service account tokens rotate), or its exec plugin's
/// `ExecCredential` (kept until a minute before its `expirationTimestamp`, or for the life of the
/// process when it has none).
///
/// Concurrent callers share one plugin run.
package actor KubernetesCredentials {
    /// A credential an exec plugin printed.
    struct ExecResult: Sendable {
        var token: String?
        var clientCertificate: Data?
        var clientKey: Data?
        var expiration: Date?

        /// Whether it is still good a minute from `now`.
        func isFresh(at now: Date) -> Bool {
            guard let expiration else { return true }
            return now < expiration.addingTimeInterval(-KubernetesCredentials.refreshMargin)
        }
    }

    /// How long a token file's contents are used before it is read again, in seconds.
    static let tokenFileLifetime: TimeInterval = 60
    /// How long before its expiry a plugin's credential is replaced, in seconds.
    static let refreshMargin: TimeInterval = 60

    private let access: KubernetesAccess
    private let environment: [String: String]
    private let now: @Sendable () -> Date
    private var fileToken: (value: String, readAt: Date)?
    private var execResult: ExecResult?
    private var execRun: Task<ExecResult, any Error>?
    /// Bumped by ``invalidate()``, so that a plugin run begun before it is not cached after it.
    private var generation = 0

    /// Creates a credential source.
    /// - Parameters:
    ///   - access: The user's settings.
    ///   - environment: The environment an exec plugin runs with (before the plugin's own `env`),
    ///     and whose `PATH` finds a plugin given by name.
    ///   - now: The clock for token lifetimes (tests pass their own).
    package init(
        access: KubernetesAccess, environment: [String: String] = ProcessInfo.processInfo.environment,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.access = access
        self.environment = environment
        self.now = now
    }

    /// The `Authorization` header value, `Bearer <token>`, or `nil` when the user authenticates
    /// with a client certificate only.
    /// - Throws: `DockerParallelError` `.providerFailed` when the token file cannot be read or the
    ///   exec plugin fails; `.invalidArgument` when the plugin's program is not installed.
    package func authorization() async throws -> String? {
        if let token = access.token, !token.isEmpty { return "Bearer \(token)" }
        if let path = access.tokenFile { return "Bearer \(try fileTokenValue(path))" }
        if access.exec != nil { return try await execCredential().token.map { "Bearer \($0)" } }
        return nil
    }

    /// Forgets the token read from the file and the exec plugin's credential, so the next call
    /// reads the file or runs the plugin again. Call it after the server answers 401.
    package func invalidate() {
        fileToken = nil
        execResult = nil
        execRun = nil
        generation += 1
    }

    /// The client certificate and key the exec plugin returned instead of a token, if any.
    /// - Throws: As ``authorization()``.
    package func execClientCertificate() async throws -> (certificate: Data, key: Data)? {
        guard access.exec != nil else { return nil }
        let result = try await execCredential()
        guard let certificate = result.clientCertificate, let key = result.clientKey else { return nil }
        return (certificate, key)
    }

    private func fileTokenValue(_ path: String) throws -> String {
        let time = now()
        if let fileToken, time.timeIntervalSince(fileToken.readAt) < Self.tokenFileLifetime { return fileToken.value }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DockerParallelError(
                .providerFailed,
                "cannot read the token file \(path) of \(access.source): check that it exists and is readable (a pod's token is mounted unless automountServiceAccountToken is false)")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else {
            throw DockerParallelError(.providerFailed, "the token file \(path) of \(access.source) is empty: write the token into it")
        }
        fileToken = (token, time)
        return token
    }

    /// The plugin's credential: the cached one while fresh, else the result of one run shared by
    /// every caller waiting for it.
    private func execCredential() async throws -> ExecResult {
        if let execResult, execResult.isFresh(at: now()) { return execResult }
        if let execRun { return try await execRun.value }
        guard let plugin = access.exec else { return ExecResult() }
        let started = generation
        let info = try ExecPluginRunner.execInfo(plugin: plugin, access: access)
        let (environment, source) = (environment, access.source)
        // An unstructured task, so that callers arriving while it runs wait for the same run and
        // a caller's cancellation does not fail the others; it ends when the plugin exits.
        let run = Task { try await ExecPluginRunner.run(plugin, info: info, environment: environment, source: source) }
        execRun = run
        do {
            let result = try await run.value
            if generation == started {
                execResult = result
                execRun = nil
            }
            return result
        } catch {
            if generation == started { execRun = nil }
            throw error
        }
    }
}

/// Runs a client-go credential plugin and reads its `ExecCredential`.
enum ExecPluginRunner {
    /// The lines of the plugin's standard error quoted when it fails.
    static let quotedErrorLines = 5

    /// The `KUBERNETES_EXEC_INFO` JSON for a plugin.
    static func execInfo(plugin: KubernetesAccess.ExecPlugin, access: KubernetesAccess) throws -> String {
        struct Info: Encodable {
            var apiVersion: String
            var kind = "ExecCredential"
            var spec: Spec
        }
        struct Spec: Encodable {
            var interactive = false
            var cluster: Cluster?
        }
        struct Cluster: Encodable {
            var server: String
            var certificateAuthorityData: String?
            var insecureSkipTLSVerify: Bool

            enum CodingKeys: String, CodingKey {
                case server
                case certificateAuthorityData = "certificate-authority-data"
                case insecureSkipTLSVerify = "insecure-skip-tls-verify"
            }
        }
        var spec = Spec()
        if plugin.provideClusterInfo {
            spec.cluster = Cluster(
                server: access.server, certificateAuthorityData: access.certificateAuthority?.base64EncodedString(),
                insecureSkipTLSVerify: access.insecureSkipTLSVerify)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(Info(apiVersion: plugin.apiVersion, spec: spec)), as: UTF8.self)
    }

    /// Runs the plugin on a thread of its own and parses what it prints.
    /// - Throws: `DockerParallelError` `.invalidArgument` when the program is not found;
    ///   `.providerFailed` when it fails or prints no usable credential.
    static func run(
        _ plugin: KubernetesAccess.ExecPlugin, info: String, environment: [String: String], source: String
    ) async throws -> KubernetesCredentials.ExecResult {
        let executable = try resolve(plugin, path: environment["PATH"], source: source)
        var processEnvironment = environment
        for (name, value) in plugin.env { processEnvironment[name] = value }
        processEnvironment["KUBERNETES_EXEC_INFO"] = info
        let (status, output, errorOutput) = try await withCheckedThrowingContinuation { continuation in
            let environment = processEnvironment
            Thread.detachNewThread {
                continuation.resume(
                    with: Result { try runBlocking(executable, arguments: plugin.args, environment: environment, plugin: plugin) })
            }
        }
        guard status == 0 else {
            let lines = String(decoding: errorOutput, as: UTF8.self).split(whereSeparator: \.isNewline).suffix(quotedErrorLines)
            var message = "the exec plugin '\(plugin.command)' of \(source) exited with status \(status)"
            message += lines.isEmpty ? " and wrote nothing to standard error" : ": " + lines.joined(separator: " / ")
            if let hint = plugin.installHint { message += ". \(hint)" }
            if !lines.isEmpty || plugin.installHint == nil { message += ". Run the plugin by hand to see what it needs (often a fresh login)" }
            throw DockerParallelError(.providerFailed, message)
        }
        return try parse(output, plugin: plugin, source: source)
    }

    /// The program's path: absolute, relative to the kubeconfig's folder, or found on `PATH`.
    static func resolve(_ plugin: KubernetesAccess.ExecPlugin, path: String?, source: String) throws -> String {
        let fileManager = FileManager.default
        let command = plugin.command
        let candidates: [String]
        if command.hasPrefix("/") {
            candidates = [command]
        } else if command.contains("/") {
            candidates = [(plugin.workingDirectory as NSString).appendingPathComponent(command)]
        } else {
            candidates = (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").map { ($0 + "/" + command) }
        }
        if let found = candidates.first(where: { fileManager.isExecutableFile(atPath: $0) }) { return found }
        var message = "the exec plugin '\(command)' of \(source) was not found"
        if !command.contains("/") { message += " on PATH" } else if !command.hasPrefix("/") { message += " at \(candidates[0])" }
        message += plugin.installHint.map { ". \($0)" } ?? ": install it, or fix users[].user.exec.command in the kubeconfig"
        throw DockerParallelError(.invalidArgument, message)
    }

    /// Runs the program to its end, with standard input closed; blocks its thread.
    static func runBlocking(
        _ executable: String, arguments: [String], environment: [String: String], plugin: KubernetesAccess.ExecPlugin
    ) throws -> (status: Int32, output: Data, errorOutput: Data) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        do {
            try process.run()
        } catch {
            var message = "cannot start the exec plugin \(executable): \(error)"
            message += plugin.installHint.map { ". \($0)" } ?? ""
            throw DockerParallelError(.providerFailed, message, underlying: error)
        }
        // Read both pipes to their ends before waiting, so a chatty plugin never blocks on a full pipe.
        let errorOutput = ErrorOutput()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            errorOutput.set(errors.fileHandleForReading.readDataToEndOfFile())
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return (status, data, errorOutput.get())
    }

    /// Standard error, read on another thread.
    ///
    /// `@unchecked Sendable` is safe: the one stored value is only touched under `lock`.
    private final class ErrorOutput: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()
        func set(_ value: Data) { lock.withLock { data = value } }
        func get() -> Data { lock.withLock { data } }
    }

    /// Reads the `ExecCredential` a plugin printed.
    /// - Throws: `DockerParallelError` `.providerFailed` naming what is wrong, never quoting the
    ///   output (it holds secrets).
    static func parse(_ output: Data, plugin: KubernetesAccess.ExecPlugin, source: String) throws
        -> KubernetesCredentials.ExecResult
    {
        struct Credential: Decodable {
            var apiVersion: String?
            var kind: String?
            var status: Status?
        }
        struct Status: Decodable {
            var token: String?
            var clientCertificateData: String?
            var clientKeyData: String?
            var expirationTimestamp: String?
        }
        let who = "the exec plugin '\(plugin.command)' of \(source)"
        guard let credential = try? JSONDecoder().decode(Credential.self, from: output) else {
            throw DockerParallelError(
                .providerFailed,
                "\(who) printed \(output.count) bytes that are not an ExecCredential in JSON: check that the plugin is meant for kubectl and runs without a terminal")
        }
        if let kind = credential.kind, kind != "ExecCredential" {
            throw DockerParallelError(.providerFailed, "\(who) printed a \(kind), not an ExecCredential: check exec.command")
        }
        if let apiVersion = credential.apiVersion, apiVersion != plugin.apiVersion {
            throw DockerParallelError(
                .providerFailed,
                "\(who) answered in \(apiVersion), but the kubeconfig asks for \(plugin.apiVersion): set exec.apiVersion to \(apiVersion)")
        }
        guard let status = credential.status else {
            throw DockerParallelError(.providerFailed, "\(who) printed an ExecCredential without a status: check the plugin's login")
        }
        var result = KubernetesCredentials.ExecResult()
        if let token = status.token, !token.isEmpty { result.token = token }
        switch (status.clientCertificateData, status.clientKeyData) {
        case (let certificate?, let key?) where !certificate.isEmpty && !key.isEmpty:
            result.clientCertificate = Data(certificate.utf8)
            result.clientKey = Data(key.utf8)
        case (nil, nil), ("", ""), ("", nil), (nil, ""):
            break
        default:
            throw DockerParallelError(
                .providerFailed, "\(who) returned a client certificate without its key, or a key without its certificate")
        }
        guard result.token != nil || result.clientCertificate != nil else {
            throw DockerParallelError(
                .providerFailed, "\(who) returned neither a token nor a client certificate: check the plugin's login")
        }
        if let timestamp = status.expirationTimestamp, !timestamp.isEmpty {
            guard let date = parseTimestamp(timestamp) else {
                throw DockerParallelError(
                    .providerFailed, "\(who) returned expirationTimestamp '\(timestamp)', which is not an RFC 3339 time")
            }
            result.expiration = date
        }
        return result
    }

    /// An RFC 3339 time, with or without fractional seconds.
    static func parseTimestamp(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}
