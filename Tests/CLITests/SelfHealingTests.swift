#if canImport(Glibc)
import Glibc
#endif
import DockerParallelTestKit
import Foundation
import Testing

/// A named cluster whose server dies heals: `up` (or `run`'s own supervision) restarts it with
/// its password and port, so that its workers and clients carry on and nothing is lost.
@Suite(.timeLimit(.minutes(5))) struct SelfHealingTests {
    /// The command of the operator scenario: a task that takes a little while, printing its input.
    static let command = ["sh", "-c", "sleep 0.002; echo {}"]
    static let count = 2_000

    /// The issue's scenario, with the operator's `up` as the only step: a job submitted to a
    /// named cluster, its server killed mid-job, `up`, and the same worker processes finish it.
    @Test func anOperatorsUpBringsBackAKilledServerWithItsWorkers() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "heal-up", "--port", "0", "--workers", "3"])
        #expect(up.status == 0, "\(up.errorOutput)")
        let folder = "\(cli.home)/clusters/heal-up"
        let port = try #require(up.output.firstMatch(of: /Running at 127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) })
        try await waitUntil("three workers connect") {
            try await cli.run(["status", "--name", "heal-up"]).output.contains("Connected:      3 worker process(es)")
        }
        let workers = Set(workerProcessIDs(in: "\(folder)/workers"))
        let submit = try await cli.run(["submit", "--name", "heal-up", "-q", "--"] + Self.command + [":::"] + (1...Self.count).map(String.init))
        #expect(submit.status == 0, "\(submit.errorOutput)")
        let jobID = submit.output.trimmingCharacters(in: .whitespacesAndNewlines)

        // Killed mid-job: some results are in, many tasks are not.
        try await waitUntil("a hundred tasks are done") { try await Self.finished(cli, "heal-up") >= 100 }
        let server = try #require(Self.serverPID(folder))
        #expect(kill(server, SIGKILL) == 0)
        try await waitUntil("the server is gone") { isGone(server) }
        let stopped = try await cli.run(["status", "--name", "heal-up"])
        #expect(stopped.status != 0)
        #expect(stopped.errorOutput.contains("has stopped; its tasks and results are kept. `dockerparallel up --name heal-up` restarts it"), "\(stopped.errorOutput)")

        let again = try await cli.run(["up", "--name", "heal-up"])
        #expect(again.status == 0, "\(again.errorOutput)")
        // The same port, and the same worker processes, connected again with the same password.
        #expect(again.output.contains("Running at 127.0.0.1:\(port)"), "\(again.output)")
        try await waitUntil("the three workers connect again") {
            try await cli.run(["status", "--name", "heal-up"]).output.contains("Connected:      3 worker process(es)")
        }
        #expect(Set(workerProcessIDs(in: "\(folder)/workers")) == workers)
        #expect(workers.allSatisfy { !isGone($0) })

        let results = try await cli.run(["results", "--name", "heal-up", "--job", jobID])
        #expect(results.status == 0, "\(results.errorOutput)")
        #expect(results.output == (1...Self.count).map { "\($0)\n" }.joined())
        let status = try await cli.run(["status", "--name", "heal-up"])
        #expect(status.output.contains("Restarts:       1 time since it first started at"), "\(status.output)")
    }

    /// `run --cluster` carries on when its cluster's server is killed: its supervision and an
    /// operator's `up`, at the same time, restart one server between them, and the run prints
    /// every output once, in order.
    @Test func aRunOnANamedClusterSurvivesItsServerBeingKilled() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "heal-run", "--port", "0", "--workers", "3"])
        #expect(up.status == 0, "\(up.errorOutput)")
        let folder = "\(cli.home)/clusters/heal-run"
        let (process, output, errorOutput) = try cli.start(
            ["run", "--cluster", "heal-run", "--no-progress", "-q", "--"] + Self.command + [":::"] + (1...Self.count).map(String.init))
        let reader = StreamReader(output)
        let errorReader = StreamReader(errorOutput)
        try await waitUntil("a hundred outputs are printed", timeout: 120) { reader.text.count(where: { $0 == "\n" }) >= 100 || reader.isDone }
        let server = try #require(Self.serverPID(folder))
        #expect(kill(server, SIGKILL) == 0)
        try await waitUntil("the server is gone") { isGone(server) }
        // The operator's `up`, racing the run's own restart of the server.
        async let operators = [cli.run(["up", "--name", "heal-run"]), cli.run(["up", "--name", "heal-run"])]
        for outcome in try await operators { #expect(outcome.status == 0, "\(outcome.errorOutput)") }

        try await waitUntil("the run ends", timeout: 120) { reader.isDone && errorReader.isDone }
        try await waitUntil("the process exits") { !process.isRunning }
        #expect(process.terminationStatus == 0, "\(errorReader.text)")
        #expect(reader.text == (1...Self.count).map { "\($0)\n" }.joined())
        #expect(serverProcesses(of: "heal-run").count == 1, "server processes: \(serverProcesses(of: "heal-run"))")
    }

    /// Several processes restarting a dead server at once end with one server.
    @Test func concurrentRestartsEndWithOneServer() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "heal-race", "--port", "0", "--workers", "1"])
        #expect(up.status == 0, "\(up.errorOutput)")
        let server = try #require(Self.serverPID("\(cli.home)/clusters/heal-race"))
        #expect(kill(server, SIGKILL) == 0)
        try await waitUntil("the server is gone") { isGone(server) }
        let outcomes = try await withThrowingTaskGroup(of: CLI.Outcome.self) { group in
            for _ in 0..<4 { group.addTask { try await cli.run(["up", "--name", "heal-race"]) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for outcome in outcomes { #expect(outcome.status == 0, "\(outcome.errorOutput)") }
        #expect(serverProcesses(of: "heal-race").count == 1, "server processes: \(serverProcesses(of: "heal-race"))")
        #expect(try await cli.run(["run", "--cluster", "heal-race", "--", "echo", ":::", "one"]).output == "one\n")
    }

    /// A client killed mid-job leaves its job running on the cluster's workers, to be collected
    /// by another process.
    @Test func aKilledRunLeavesItsJobRunningOnTheCluster() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "heal-client", "--port", "0", "--workers", "2"])
        #expect(up.status == 0, "\(up.errorOutput)")
        // Past the first 10, tasks wait for a gate, so that the run is killed long before its
        // job ends, however loaded the machine is; the gate opens once the run is gone.
        let count = 200
        let gate = "\(cli.home)/gate"
        let script = "[ {} -le 10 ] || while [ ! -e '\(gate)' ]; do sleep 0.01; done; echo {}"
        let (process, output, _) = try cli.start(
            ["run", "--cluster", "heal-client", "--no-progress", "-q", "--", "sh", "-c", script, ":::"] + (1...count).map(String.init))
        let reader = StreamReader(output)
        try await waitUntil("ten outputs are printed", timeout: 60) { reader.text.count(where: { $0 == "\n" }) >= 10 }
        #expect(kill(process.processIdentifier, SIGKILL) == 0)
        try await waitUntil("the run is gone") { !process.isRunning }
        #expect(process.terminationReason == .uncaughtSignal, "the run ended by itself before it was killed")
        FileManager.default.createFile(atPath: gate, contents: nil)
        let listing = try await cli.run(["results", "--name", "heal-client"])
        let jobID = try #require(listing.output.split(separator: "\t").first.map(String.init), "\(listing.output)")
        #expect(listing.output.contains("/\(count) done"), "\(listing.output)")
        let results = try await cli.run(["results", "--name", "heal-client", "--job", jobID])
        #expect(results.status == 0, "\(results.errorOutput)")
        #expect(results.output == (1...count).map { "\($0)\n" }.joined())
    }

    /// A `run --cluster` keeps the server, not the worker number: a `scale` from elsewhere holds.
    @Test func aRunLeavesTheWorkerNumberToTheClustersOwner() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "heal-scale", "--port", "0", "--workers", "1"])
        #expect(up.status == 0, "\(up.errorOutput)")
        let count = 100
        let (process, output, errorOutput) = try cli.start(
            ["run", "--cluster", "heal-scale", "--no-progress", "-q", "--", "sh", "-c", "sleep 0.03; echo {}", ":::"]
                + (1...count).map(String.init))
        let reader = StreamReader(output)
        let errorReader = StreamReader(errorOutput)
        try await waitUntil("ten outputs are printed") { reader.text.count(where: { $0 == "\n" }) >= 10 || reader.isDone }
        let scale = try await cli.run(["scale", "3", "--name", "heal-scale"])
        #expect(scale.status == 0, "\(scale.errorOutput)")
        try await waitUntil("the run ends", timeout: 60) { reader.isDone && errorReader.isDone }
        try await waitUntil("the process exits") { !process.isRunning }
        #expect(process.terminationStatus == 0, "\(errorReader.text)")
        let status = try await cli.run(["status", "--name", "heal-scale"])
        #expect(status.output.contains("Worker number:  3 / 3 / 0"), "\(status.output)")
    }

    /// `down` while a `run --cluster` uses the cluster: the run's supervision does not bring the
    /// server back, and the run fails, saying so.
    @Test func aClusterStoppedWhileARunUsesItStaysStopped() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "heal-down", "--port", "0", "--workers", "1"])
        #expect(up.status == 0, "\(up.errorOutput)")
        // Past the first 5, tasks wait for a gate that never opens: the job cannot end by itself.
        let gate = "\(cli.home)/never"
        let (process, output, errorOutput) = try cli.start(
            ["run", "--cluster", "heal-down", "--no-progress", "-q", "--", "sh", "-c",
             "[ {} -le 5 ] || while [ ! -e '\(gate)' ]; do sleep 0.01; done; echo {}", ":::"]
                + (1...400).map(String.init))
        let reader = StreamReader(output)
        let errorReader = StreamReader(errorOutput)
        try await waitUntil("five outputs are printed", timeout: 60) { reader.text.count(where: { $0 == "\n" }) >= 5 }
        let down = try await cli.run(["down", "--name", "heal-down"])
        #expect(down.status == 0, "\(down.errorOutput)")
        try await waitUntil("the run ends", timeout: 30) { reader.isDone && errorReader.isDone }
        try await waitUntil("the process exits") { !process.isRunning }
        #expect(process.terminationStatus != 0)
        #expect(errorReader.text.contains("the cluster 'heal-down' was stopped"), "\(errorReader.text)")
        #expect(serverProcesses(of: "heal-down").isEmpty, "a server came back after down: \(serverProcesses(of: "heal-down"))")
        #expect(!FileManager.default.fileExists(atPath: "\(cli.home)/clusters/heal-down/static.json"))
    }

    /// What `ps` shows: which process is the server and which a worker, and of which cluster.
    @Test func psTellsServersFromWorkersAndNamesTheirCluster() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "titled", "--port", "0", "--workers", "2"])
        #expect(up.status == 0, "\(up.errorOutput)")
        let ps = Process()
        ps.executableURL = URL(fileURLWithPath: "/bin/ps")
        ps.arguments = ["-eww", "-o", "pid,args"]
        let pipe = Pipe()
        ps.standardOutput = pipe
        try ps.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ps.waitUntilExit()
        let server = try #require(Self.serverPID("\(cli.home)/clusters/titled"))
        let lines = text.split(separator: "\n")
        let serverLine = try #require(lines.first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("\(server) ") })
        #expect(serverLine.hasSuffix("dockerparallel server --name titled"), "\(serverLine)")
        for pid in workerProcessIDs(in: "\(cli.home)/clusters/titled/workers") {
            let line = try #require(lines.first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("\(pid) ") })
            #expect(line.contains("dockerparallel worker --name titled-worker-"), "\(line)")
        }
    }

    static func serverPID(_ folder: String) -> Int32? {
        (try? String(contentsOfFile: "\(folder)/server.pid", encoding: .utf8)).flatMap { Int32($0) }
    }

    /// Tasks done of the cluster's jobs, as `status` shows them.
    static func finished(_ cli: CLI, _ name: String) async throws -> Int {
        let status = try await cli.run(["status", "--name", name]).output
        return status.firstMatch(of: /Job \S+: (\d+)\//).flatMap { Int($0.1) } ?? 0
    }
}

/// The live processes whose command line says they are the server of this cluster.
func serverProcesses(of name: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in
        guard !isGone(pid), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return arguments.dropFirst().starts(with: ["server", "--name", name])
    }
}
