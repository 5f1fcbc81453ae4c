#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// What a container does before it serves its role, as the original's containers do: write its
/// logs under `/workspace/log`, install system packages (apt-get) and language packages (pip, R),
/// and authorise an SSH public key.
///
/// Providers that run containers set `DOCKERPARALLEL_CONTAINER=1` and the package variables; a
/// failing step ends the container with status 78, its reason in the log.
enum ContainerStartup {
    /// The exit status of a failed start-up.
    static let failureStatus: Int32 = 78

    static func run(role: String, environment: [String: String]) {
        do {
            try startLog(role: role, environment: environment)
            try installSystemPackages(words(environment["DOCKERPARALLEL_SYSTEM_PACKAGES"]))
            try installLanguagePackages(words(environment["DOCKERPARALLEL_LANGUAGE_PACKAGES"]))
            try authorize(key: environment["DOCKERPARALLEL_SSH_PUBLIC_KEY"])
        } catch {
            FileHandle.standardError.write(Data("dockerparallel \(role): start-up failed: \(error)\n".utf8))
            finish()
            exit(failureStatus)
        }
    }

    /// Set once the log copy runs; signalled when it has copied everything.
    nonisolated(unsafe) private static var logCopied: DispatchSemaphore?

    /// Lets the log copy write out what is left; call before the process exits.
    static func finish() {
        guard let logCopied else { return }
        fflush(nil)
        close(1)
        close(2)
        _ = logCopied.wait(timeout: .now() + 2)
    }

    /// Writes a line to standard output at once (the process may exit before a buffer is flushed).
    private static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    private static func words(_ text: String?) -> [String] {
        (text ?? "").split(whereSeparator: \.isWhitespace).map(String.init)
    }

    /// Copies everything this process writes to standard output and error into
    /// `/workspace/log/<role>[-<name>].log` too (the engine still shows it as the container's log).
    private static func startLog(role: String, environment: [String: String]) throws {
        let directory = environment["DOCKERPARALLEL_LOG_DIR"] ?? "/workspace/log"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let name = environment[EnvironmentKey.workerName].map { "\(role)-\($0)" } ?? role
        let path = (directory as NSString).appendingPathComponent("\(name).log")
        let file = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard file >= 0 else { throw StartupError("cannot write the log \(path): \(String(cString: strerror(errno)))") }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw StartupError("cannot make a pipe for the log") }
        let console = dup(1)
        _ = fcntl(console, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        dup2(fds[1], 1)
        dup2(fds[1], 2)
        close(fds[1])
        let reader = fds[0]
        let done = DispatchSemaphore(value: 0)
        logCopied = done
        let thread = Thread {
            defer { done.signal() }
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = read(reader, &buffer, buffer.count)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return }
                buffer.withUnsafeBytes { bytes in
                    _ = write(console, bytes.baseAddress, count)
                    _ = write(file, bytes.baseAddress, count)
                }
            }
        }
        thread.name = "log-tee"
        thread.start()
    }

    private static func installSystemPackages(_ packages: [String]) throws {
        guard !packages.isEmpty else { return }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/apt-get") else {
            throw StartupError(
                "system packages \(packages.joined(separator: " ")) were asked for, but this image has no apt-get: build the image on a Debian base (`dockerparallel image build --base IMAGE`)")
        }
        say("Installing system packages: \(packages.joined(separator: " "))")
        let environment = ["DEBIAN_FRONTEND": "noninteractive"]
        try execute("/usr/bin/apt-get", ["update"], environment: environment)
        try execute("/usr/bin/apt-get", ["install", "-y", "--no-install-recommends"] + packages, environment: environment)
    }

    /// `pip:NAME` are Python packages; other names are R packages, as in the original.
    private static func installLanguagePackages(_ packages: [String]) throws {
        let python = packages.filter { $0.hasPrefix("pip:") }.map { String($0.dropFirst(4)) }
        let r = packages.filter { !$0.hasPrefix("pip:") }
        if !python.isEmpty {
            guard let pip = firstExecutable(["/usr/bin/python3", "/usr/local/bin/python3"]) else {
                throw StartupError("Python packages \(python.joined(separator: " ")) were asked for, but this image has no python3")
            }
            say("Installing Python packages: \(python.joined(separator: " "))")
            try execute(pip, ["-m", "pip", "install", "--no-input"] + python)
        }
        if !r.isEmpty {
            guard let rscript = firstExecutable(["/usr/bin/Rscript", "/usr/local/bin/Rscript"]) else {
                throw StartupError("R packages \(r.joined(separator: " ")) were asked for, but this image has no Rscript")
            }
            // Debian's binary builds first (r-cran-NAME, r-bioc-NAME): they install in seconds,
            // with their system libraries; the rest from CRAN.
            var fromCRAN = r
            if FileManager.default.isExecutableFile(atPath: "/usr/bin/apt-get") {
                let environment = ["DEBIAN_FRONTEND": "noninteractive"]
                try? execute("/usr/bin/apt-get", ["update", "-qq"], environment: environment)
                var debian: [String] = []
                fromCRAN = []
                for name in r {
                    let candidates = ["r-cran-\(name.lowercased())", "r-bioc-\(name.lowercased())"]
                    if let available = candidates.first(where: { (try? execute("/usr/bin/apt-cache", ["show", "-q", $0], quiet: true)) != nil }) {
                        debian.append(available)
                    } else {
                        fromCRAN.append(name)
                    }
                }
                if !debian.isEmpty {
                    say("Installing R packages from Debian: \(debian.joined(separator: " "))")
                    try execute("/usr/bin/apt-get", ["install", "-y", "-qq", "--no-install-recommends"] + debian, environment: environment)
                }
            }
            if !fromCRAN.isEmpty {
                say("Installing R packages from CRAN: \(fromCRAN.joined(separator: " "))")
                let list = fromCRAN.map { "'\($0.replacingOccurrences(of: "'", with: ""))'" }.joined(separator: ",")
                try execute(rscript, ["-e", "install.packages(c(\(list)), repos = 'https://cloud.r-project.org')"])
            }
            // install.packages only warns when it fails: each package must load.
            let list = r.map { "'\($0.replacingOccurrences(of: "'", with: ""))'" }.joined(separator: ",")
            do {
                try execute(rscript, ["-e", "p <- c(\(list)); ok <- vapply(p, requireNamespace, NA, quietly = TRUE); if (!all(ok)) { message('not installed: ', paste(p[!ok], collapse = ' ')); quit(status = 1) }"])
            } catch {
                throw StartupError("R packages \(r.joined(separator: " ")) could not all be installed (see the lines above): check their names, or use an image that has them")
            }
        }
    }

    private static func authorize(key: String?) throws {
        guard let key = key?.trimmingCharacters(in: .whitespacesAndNewlines), !key.isEmpty else { return }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/root"
        let directory = (home as NSString).appendingPathComponent(".ssh")
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = (directory as NSString).appendingPathComponent("authorized_keys")
        let existing = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        if !existing.split(separator: "\n").contains(Substring(key)) {
            try (existing + key + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        say("Authorised an SSH public key for \(home)")
        if FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") {
            try execute("/usr/sbin/sshd", [])
        }
    }

    private static func firstExecutable(_ paths: [String]) -> String? {
        paths.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private static func execute(_ program: String, _ arguments: [String], environment: [String: String] = [:], quiet: Bool = false) throws {
        let process = Process()
        if quiet {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        }
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw StartupError("\(program) \(arguments.joined(separator: " ")) exited with status \(process.terminationStatus)")
        }
    }

    struct StartupError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
