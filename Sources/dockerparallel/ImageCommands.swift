import ArgumentParser
import DockerEngineProvider
import DockerParallel
import Foundation

struct Image: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make server and worker images for the docker provider.",
        subcommands: [ImageBuild.self])
}

struct ImageBuild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build an image holding this dockerparallel binary, without a registry.",
        discussion: """
            The image holds this binary and the shared libraries it needs (as ldd lists them), \
            plus /bin/sh for command tasks, imported into the engine as a root filesystem of its \
            own; or, with --base, added on top of a local image (one with apt-get, pip or R, for \
            containers that install packages at start-up). With --executable, your own program, \
            which registers Swift tasks and calls DockerParallelMain.runIfRequested, is the \
            image's command, so its tasks run in the containers.
            """)

    @Option(help: "The image's name.")
    var tag: String = "dockerparallel:latest"

    @Option(help: "Your program that registers Swift tasks; it becomes the image's command.")
    var executable: String?

    @Option(name: .customLong("add"), help: "Another program to carry, with its libraries (repeatable).")
    var programs: [String] = []

    @Flag(help: "Do not carry /bin/sh (a --base image keeps its own).")
    var noShell = false

    @Option(help: "A local image to build on, instead of an image of these files alone.")
    var base: String?

    @Option(help: ArgumentHelp("The Docker daemon.", discussion: "Default: $DOCKER_HOST, or unix:///var/run/docker.sock."))
    var dockerHost: String?

    func run() async throws {
        let host = try dockerHost.map { try DockerHost(parsing: $0) } ?? DockerHost.fromEnvironment()
        let builder = try ImageBuilder(host: host)
        let options = ImageBuilder.Options(
            tag: tag, dockerparallelBinary: LocalProcessContainer.currentExecutable(),
            executable: executable.map { URL(fileURLWithPath: $0).standardizedFileURL.path },
            // A base image has its own shell.
            extraPrograms: (noShell || base != nil ? [] : ["/bin/sh"]) + programs, base: base)
        _ = try await builder.build(options) { CLIEnvironment.messageLogger.info("\($0)") }
        print(tag)
    }
}
