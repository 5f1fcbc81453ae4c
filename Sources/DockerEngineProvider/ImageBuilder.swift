import DockerParallelCore
import Foundation
import ProviderKit

/// Builds a server/worker image without a registry: the `dockerparallel` binary (and optionally a
/// program of yours that registers Swift tasks), with every shared library `ldd` lists, either
/// imported as a root filesystem of its own or added on top of a local base image.
public struct ImageBuilder: Sendable {
    /// What goes into the image.
    public struct Options: Sendable {
        /// The image's name, as `NAME[:TAG]` (default `dockerparallel:latest`).
        public var tag: String
        /// The `dockerparallel` binary.
        public var dockerparallelBinary: String
        /// A program of yours that calls `DockerParallelMain.runIfRequested`; it becomes the
        /// image's command, so its Swift tasks can run in the containers.
        public var executable: String?
        /// More programs to carry at their own paths, with their libraries (default `/bin/sh`,
        /// so that command tasks can use a shell).
        public var extraPrograms: [String]
        /// A local image to build on (it needs a C library as new as this machine's); `nil` for
        /// an image of these files alone.
        public var base: String?

        /// Creates options.
        public init(
            tag: String = "dockerparallel:latest", dockerparallelBinary: String, executable: String? = nil,
            extraPrograms: [String] = ["/bin/sh"], base: String? = nil
        ) {
            self.tag = tag
            self.dockerparallelBinary = dockerparallelBinary
            self.executable = executable
            self.extraPrograms = extraPrograms
            self.base = base
        }
    }

    let engine: DockerEngineClient

    /// Creates a builder for the daemon at `host`.
    public init(host: DockerHost) throws {
        engine = try DockerEngineClient(host: host)
    }

    /// Builds the image and returns its size in bytes as sent to the daemon.
    /// - Parameter progress: Receives a line per step.
    public func build(_ options: Options, progress: @Sendable (String) -> Void = { _ in }) async throws -> Int {
        let (repository, tag) = Self.split(options.tag)
        let entry: String
        var programs: [(source: String, target: String)] = [(options.dockerparallelBinary, "/usr/local/bin/dockerparallel")]
        if let executable = options.executable {
            entry = "/usr/local/bin/" + (executable as NSString).lastPathComponent
            programs.append((executable, entry))
        } else {
            entry = "/usr/local/bin/dockerparallel"
        }
        for program in options.extraPrograms { programs.append((program, program)) }

        var tar = TarWriter()
        tar.addsParentDirectories = options.base == nil
        var libraries: Set<String> = []
        for program in programs {
            guard FileManager.default.isExecutableFile(atPath: program.source) else {
                throw DockerParallelError(.invalidArgument, "'\(program.source)' is not an executable file")
            }
            tar.addFile(program.target, contents: try Data(contentsOf: URL(fileURLWithPath: program.source)), mode: 0o755)
            libraries.formUnion(try Self.sharedLibraries(of: program.source))
        }
        if options.base != nil {
            // The base brings its own C library; carry only what it cannot have (Swift's runtime, SQLite…).
            libraries = libraries.filter { !Self.isCLibrary($0) }
        }
        for library in libraries.sorted() {
            let resolved = (library as NSString).resolvingSymlinksInPath
            tar.addFile(library, contents: try Data(contentsOf: URL(fileURLWithPath: resolved)), mode: 0o755)
        }
        if options.base == nil {
            tar.addFile("/etc/passwd", contents: Data("root:x:0:0:root:/root:/bin/sh\n".utf8), mode: 0o644)
            tar.addFile("/etc/group", contents: Data("root:x:0:\n".utf8), mode: 0o644)
            tar.addDirectory("/tmp", mode: 0o1777)
            tar.addDirectory("/root", mode: 0o700)
        }
        tar.addDirectory("/workspace/log")
        tar.addDirectory("/workspace/store")
        let archive = tar.finished()
        progress("\(programs.count) program(s) and \(libraries.count) librar\(libraries.count == 1 ? "y" : "ies"), \(archive.count / 1_048_576) MB")

        let changes = [
            "CMD [\"\(entry)\"]", "WORKDIR /workspace",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
        if let base = options.base {
            try await buildOnBase(base, archive: archive, repository: repository, tag: tag, changes: changes)
        } else {
            let answer = try await engine.send(
                .POST, "/images/create", query: ["fromSrc": "-", "repo": repository, "tag": tag],
                repeated: changes.map { ("changes", $0) }, body: archive, contentType: "application/x-tar", timeout: 600)
            try Self.checkProgressStream(answer, image: options.tag)
        }
        progress("built \(options.tag)")
        return archive.count
    }

    private func buildOnBase(_ base: String, archive: Data, repository: String, tag: String, changes: [String]) async throws {
        struct Create: Encodable { var Image: String; var Cmd: [String] }
        let created: Data
        do {
            created = try await engine.send(.POST, "/containers/create", json: Create(Image: base, Cmd: ["/bin/true"]))
        } catch let error as RESTError where error.status == 404 {
            throw DockerParallelError(.invalidArgument, "the base image '\(base)' is not on the Docker engine at \(engine.host)")
        }
        let id = try JSONDecoder().decode(ContainerCreated.self, from: created).Id
        do {
            try await engine.send(
                .PUT, "/containers/\(id)/archive", query: ["path": "/"], body: archive, contentType: "application/x-tar",
                timeout: 600)
            try await engine.send(
                .POST, "/commit", query: ["container": id, "repo": repository, "tag": tag],
                repeated: changes.map { ("changes", $0) })
        } catch {
            _ = try? await engine.send(.DELETE, "/containers/\(id)", query: ["force": "true"])
            throw error
        }
        try await engine.send(.DELETE, "/containers/\(id)", query: ["force": "true"])
    }

    /// The libraries a program loads, as `ldd` lists them (the loader included).
    static func sharedLibraries(of program: String) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ldd")
        process.arguments = [program]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw DockerParallelError(.unsupported, "cannot run ldd to find the libraries of \(program): \(error)")
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // "libx.so => /path/libx.so (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)"; a static binary has none.
        return output.split(separator: "\n").compactMap { line in
            let words = line.split(whereSeparator: \.isWhitespace)
            if let arrow = words.firstIndex(of: "=>"), arrow + 1 < words.count, words[arrow + 1].hasPrefix("/") {
                return String(words[arrow + 1])
            }
            return words.first.flatMap { $0.hasPrefix("/") ? String($0) : nil }
        }
    }

    private static func isCLibrary(_ path: String) -> Bool {
        let name = (path as NSString).lastPathComponent
        return ["ld-linux", "libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "libgcc_s.so", "libstdc++.so", "libutil.so"]
            .contains { name.hasPrefix($0) }
    }

    /// `/images/create` answers 200 and reports a failure inside its progress stream.
    static func checkProgressStream(_ data: Data, image: String) throws {
        struct Line: Decodable { var error: String? }
        for line in data.split(separator: UInt8(ascii: "\n")) {
            if let error = try? JSONDecoder().decode(Line.self, from: Data(line)).error {
                throw DockerParallelError(.providerFailed, "the Docker daemon could not import \(image): \(error)")
            }
        }
    }

    static func split(_ reference: String) -> (repository: String, tag: String) {
        if let colon = reference.lastIndex(of: ":"), !reference[colon...].contains("/") {
            return (String(reference[..<colon]), String(reference[reference.index(after: colon)...]))
        }
        return (reference, "latest")
    }
}
