import DockerParallelTestKit
import Foundation
import Testing

@Suite(.timeLimit(.minutes(10))) struct RunCommandTests {
    @Test func printsATousandSquaresInInputOrder() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let outcome = try await cli.run(["run", "-j", "4", "-q", "--", "sh", "-c", "echo $(( {} * {} ))", ":::"] + (1...1000).map(String.init))
        #expect(outcome.status == 0, "\(outcome.errorOutput)")
        #expect(outcome.output == (1...1000).map { "\($0 * $0)\n" }.joined())
    }

    @Test func readsInputsFromStandardInput() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let outcome = try await cli.run(["run", "-j", "2", "--", "echo", "got"], stdin: "a\nb c\nd\n")
        #expect(outcome.status == 0, "\(outcome.errorOutput)")
        #expect(outcome.output == "got a\ngot b c\ngot d\n")
    }

    @Test func everyResultArrivesWhenWorkersAreKilled() async throws {
        // One heavy test at a time (HeavyTests): its deadlines need the machine to itself.
        try await HeavyTests.oneAtATime {
            // A run that ends before two of its workers could be killed shows nothing: under a
            // loaded machine that can happen, so such a run is tried again, twice at most.
            var seen: [String] = []
            for _ in 0..<3 {
                let (killed, folder) = try await runWhileKillingWorkers()
                if killed >= 2 { return }
                seen.append(folder)
            }
            Issue.record("three runs ended before two of their workers could be killed; worker folders seen: \(seen)")
        }
    }

    /// Runs 300 commands on 4 workers and kills two fresh workers three times; checks every
    /// result arrives. Returns how many workers were killed, and what their folder held.
    private func runWhileKillingWorkers() async throws -> (killed: Int, folder: String) {
        let cli = try CLI()
        defer { cli.tearDown() }
        let count = 300
        // Workers are killed again and again, and requeued tasks go first to fresh workers: give
        // tasks room for more lost attempts than the default 3.
        let (process, output, errorOutput) = try cli.start(
            ["run", "-j", "4", "--max-attempts", "10", "-q", "--", "sh", "-c", "sleep 0.05; echo $(( {} * {} ))", ":::"]
                + (1...count).map(String.init))
        let reader = StreamReader(output)
        let errorReader = StreamReader(errorOutput)
        // The ephemeral cluster's workers live in $TMPDIR/dockerparallel-run-<pid>/run-<pid>/workers.
        let workers = "\(cli.home)/dockerparallel-run-\(process.processIdentifier)/run-\(process.processIdentifier)/workers"
        var killed: Set<Int32> = []
        var listing = ""
        for _ in 0..<3 {
            // Wait for at least two workers that have not been killed yet (replacements count).
            try await waitUntil("fresh workers run") {
                listing = ((try? FileManager.default.contentsOfDirectory(atPath: workers)) ?? []).sorted().joined(separator: " ")
                return Set(workerProcessIDs(in: workers)).subtracting(killed).count >= 2 || !process.isRunning
            }
            guard process.isRunning else { break }
            for pid in Set(workerProcessIDs(in: workers)).subtracting(killed).prefix(2) where kill(pid, SIGKILL) == 0 {
                killed.insert(pid)
            }
        }
        try await waitUntil("the run ends", timeout: 120) { !process.isRunning }
        try await waitUntil("the output is read") { reader.isDone && errorReader.isDone }
        #expect(process.terminationStatus == 0, "\(errorReader.text)")
        #expect(reader.text == (1...count).map { "\($0 * $0)\n" }.joined())
        return (killed.count, "\(workers): [\(listing)]")
    }

    @Test func everyResultArrivesOnceWhenTheServerIsKilled() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let count = 300
        // Past the first 20, tasks wait for a gate, so that the job cannot end before the test
        // has killed its servers, however loaded the machine is.
        let gate = "\(cli.home)/gate"
        let script = "[ {} -le 20 ] || while [ ! -e '\(gate)' ]; do sleep 0.01; done; echo $(( {} * {} ))"
        let (process, output, errorOutput) = try cli.start(["run", "-j", "2", "-q", "--", "sh", "-c", script, ":::"] + (1...count).map(String.init))
        let reader = StreamReader(output)
        let errorReader = StreamReader(errorOutput)
        let folder = "\(cli.home)/dockerparallel-run-\(process.processIdentifier)/run-\(process.processIdentifier)"
        func serverPID() -> Int32? {
            (try? String(contentsOfFile: "\(folder)/server.pid", encoding: .utf8)).flatMap { Int32($0) }
        }
        try await waitUntil("the first 20 outputs are printed", timeout: 60) { reader.text.count(where: { $0 == "\n" }) >= 20 }
        var killed: [Int32] = []
        for _ in 0..<2 {
            // A server that has not been killed yet, and is running (its restart takes a moment).
            let pid = try await waitUntil("a fresh server runs", timeout: 60) { () -> Int32? in
                guard let pid = serverPID(), !killed.contains(pid), !isGone(pid) else { return nil }
                return pid
            }
            #expect(kill(pid, SIGKILL) == 0)
            killed.append(pid)
        }
        FileManager.default.createFile(atPath: gate, contents: nil)
        try await waitUntil("the run ends", timeout: 180) { reader.isDone && errorReader.isDone }
        try await waitUntil("the process exits") { !process.isRunning }
        #expect(killed.count == 2)
        #expect(process.terminationStatus == 0, "\(errorReader.text)")
        #expect(reader.text == (1...count).map { "\($0 * $0)\n" }.joined())
    }

    @Test func failuresAreSummarisedAndSetTheExitStatus() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let outcome = try await cli.run(["run", "-j", "2", "-q", "--", "sh", "-c", "[ {} != 3 ] && echo ok {} || { echo broken >&2; exit 7; }", ":::", "1", "2", "3", "4"])
        #expect(outcome.status == 1)
        #expect(outcome.output == "ok 1\nok 2\nok 4\n")
        #expect(outcome.errorOutput.contains("1 of 4 tasks failed"))
        #expect(outcome.errorOutput.contains("#3 (input 3): exited with status 7"))
        #expect(outcome.errorOutput.contains("broken"))
    }

    @Test func aMissingCommandIsNamed() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        // Run without a shell (-q), the worker names the command it cannot find; through the
        // shell, the shell does.
        let quoted = try await cli.run(["run", "-j", "1", "-q", "--", "no-such-command-xyz", ":::", "a"])
        #expect(quoted.status == 1)
        #expect(quoted.errorOutput.contains("command not found: 'no-such-command-xyz'"), "\(quoted.errorOutput)")
        let shell = try await cli.run(["run", "-j", "1", "--", "no-such-command-xyz", ":::", "a"])
        #expect(shell.status == 1)
        #expect(shell.errorOutput.contains("no-such-command-xyz: not found"), "\(shell.errorOutput)")
    }

    @Test func aTimeoutKillsTheTask() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let started = Date()
        let outcome = try await cli.run(["run", "-j", "1", "--timeout", "0.5", "--", "sleep", ":::", "30"])
        #expect(outcome.status == 1)
        #expect(outcome.errorOutput.contains("timed out after 0.5 s"))
        // The task sleeps 30 s: ending sooner shows the timeout ended it. The margin is for a
        // cluster's start and stop on a machine the other tests load (seen: 22 s in CI).
        #expect(Date().timeIntervalSince(started) < 29)
    }

    @Test func anEmptyCommandIsRejected() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let outcome = try await cli.run(["run", "--", "", ":::", "a"])
        #expect(outcome.status != 0)
        #expect(outcome.errorOutput.contains("the command's first word is empty"), "\(outcome.errorOutput)")
    }

    @Test func killingTheCLIStopsItsEphemeralCluster() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let (process, _, _) = try cli.start(["run", "-j", "2", "--", "sleep", ":::", "60", "60"])
        let folder = "\(cli.home)/dockerparallel-run-\(process.processIdentifier)/run-\(process.processIdentifier)"
        try await waitUntil("two workers run") { workerProcessIDs(in: "\(folder)/workers").count == 2 }
        let server = try #require(Int32(try String(contentsOfFile: "\(folder)/server.pid", encoding: .utf8)))
        let processes = workerProcessIDs(in: "\(folder)/workers") + [server]
        #expect(processes.allSatisfy { !isGone($0) })
        kill(process.processIdentifier, SIGKILL)
        try await waitUntil("the server and workers exit", timeout: 60) { processes.allSatisfy(isGone) }
    }
}

/// Whether a process has exited (a zombie waiting for its reaper counts as exited).
func isGone(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return true }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return true }
    return stat[stat.index(close, offsetBy: 2)] == "Z"
}
