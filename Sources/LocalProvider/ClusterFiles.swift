import DockerParallelCore
import Foundation

/// The files in one cluster's state folder.
struct ClusterFiles {
    struct WorkerProcess {
        var directory: String
        var number: Int
        var pid: pid_t
        var slots: Int

        var pidFile: String { "\(directory)/worker-\(number).pid" }
        var readyFile: String { "\(directory)/worker-\(number).ready" }
        var logFile: String { "\(directory)/worker-\(number).log" }
    }

    let directory: String

    var serverPIDFile: String { "\(directory)/server.pid" }
    var endpoint: String { "\(directory)/server.endpoint" }
    /// The server's unix domain socket, when its path is short enough for one (sockaddr_un).
    var socket: String? {
        let path = "\(directory)/server.sock"
        return path.utf8.count <= 100 ? path : nil
    }
    var serverLog: String { "\(directory)/server.log" }
    var staticDataFile: String { "\(directory)/static.json" }
    /// Held while a server is started or stopped.
    var lockFile: String { "\(directory)/cluster.lock" }
    var store: String { "\(directory)/broker.sqlite" }
    var workersDirectory: String { "\(directory)/workers" }

    func create() throws {
        try FileManager.default.createDirectory(
            atPath: workersDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// Runs `body` holding the cluster's lock (an exclusive `flock`, released if this process dies),
    /// which every process that starts or stops the server takes.
    func withLock<T>(_ body: () throws -> T) throws -> T {
        let descriptor = open(lockFile, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw DockerParallelError(.providerFailed, "cannot open \(lockFile): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else {
                throw DockerParallelError(.providerFailed, "cannot lock \(lockFile): \(String(cString: strerror(errno)))")
            }
        }
        return try body()
    }

    func write(_ text: String, to path: String) throws {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw DockerParallelError(.providerFailed, "cannot write \(path)")
        }
        guard rename(temporary, path) == 0 else {
            throw DockerParallelError(.providerFailed, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var serverPID: pid_t? { read(serverPIDFile).flatMap { pid_t($0) } }

    var serverEndpoint: Endpoint? { read(endpoint).flatMap { Endpoint(fileLine: $0) } }

    func writeStaticData(_ data: StaticData) throws {
        let encoded = try JSONEncoder().encode(data)
        try write(String(decoding: encoded, as: UTF8.self), to: staticDataFile)
    }

    var staticData: StaticData? { try? storedStaticData() }

    /// The static data; `nil` when there is no file (never started, or stopped on purpose).
    /// - Throws: `.providerFailed` when the file is there but cannot be read.
    func storedStaticData() throws -> StaticData? {
        guard FileManager.default.fileExists(atPath: staticDataFile) else { return nil }
        do {
            return try JSONDecoder().decode(StaticData.self, from: Data(contentsOf: URL(fileURLWithPath: staticDataFile)))
        } catch {
            throw DockerParallelError(
                .providerFailed, "cannot read the cluster's static data in \(staticDataFile): \(error). Restore the file, or stop the cluster with `dockerparallel down`.")
        }
    }

    func workers() -> [WorkerProcess] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: workersDirectory)) ?? []
        return names.compactMap { name -> WorkerProcess? in
            guard name.hasPrefix("worker-"), name.hasSuffix(".pid"),
                  let number = Int(name.dropFirst("worker-".count).dropLast(".pid".count)),
                  let text = read("\(workersDirectory)/\(name)") else { return nil }
            let parts = text.split(separator: " ")
            guard parts.count == 2, let pid = pid_t(parts[0]), let slots = Int(parts[1]) else { return nil }
            return WorkerProcess(directory: workersDirectory, number: number, pid: pid, slots: slots)
        }.sorted { $0.number < $1.number }
    }

    /// The last lines of a log file.
    func tail(of path: String, lines: Int = 10) -> String {
        guard let text = read(path), !text.isEmpty else { return "(the log is empty)" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}
