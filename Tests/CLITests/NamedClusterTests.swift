import DockerParallelTestKit
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct NamedClusterTests {
    @Test func upRunScaleStatusDown() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "demo", "--port", "0", "--workers", "2"])
        #expect(up.status == 0, "\(up.errorOutput)")
        #expect(up.output.contains("Server status:  Running at 127.0.0.1:"))

        let run = try await cli.run(["run", "--cluster", "demo", "--", "echo", "hello", ":::", "a", "b", "c"])
        #expect(run.status == 0, "\(run.errorOutput)")
        #expect(run.output == "hello a\nhello b\nhello c\n")

        let scale = try await cli.run(["scale", "3", "--name", "demo"])
        #expect(scale.status == 0, "\(scale.errorOutput)")
        try await waitUntil("three workers connect") {
            try await cli.run(["status", "--name", "demo"]).output.contains("Connected:      3 worker process(es), 3 slot(s)")
        }
        let status = try await cli.run(["status", "--name", "demo"])
        #expect(status.output.contains("Worker number:  3 / 3 / 0"))

        let down = try await cli.run(["down", "--name", "demo"])
        #expect(down.status == 0, "\(down.errorOutput)")
        let after = try await cli.run(["status", "--name", "demo"])
        #expect(after.status != 0)
        #expect(after.errorOutput.contains("no cluster named 'demo' is running"))
    }

    @Test(arguments: [["status", "--name", "nope"], ["scale", "2", "--name", "nope"], ["down", "--name", "nope"],
                      ["run", "--cluster", "nope", "--", "echo", ":::", "x"]])
    func anUnknownClusterIsAClearError(arguments: [String]) async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let outcome = try await cli.run(arguments)
        #expect(outcome.status != 0)
        #expect(outcome.errorOutput.contains("no cluster named 'nope' is running"))
        #expect(outcome.errorOutput.contains("dockerparallel up --name nope"))
    }

    @Test func aPortInUseIsAClearError() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        // Hold a port with a first cluster, then ask for the same port.
        let first = try await cli.run(["up", "--name", "first", "--port", "0", "--workers", "0"])
        #expect(first.status == 0, "\(first.errorOutput)")
        let port = try #require(first.output.firstMatch(of: /Running at 127\.0\.0\.1:(\d+)/).flatMap { Int($0.1) })
        let second = try await cli.run(["up", "--name", "second", "--port", String(port), "--workers", "0"])
        #expect(second.status != 0)
        #expect(second.errorOutput.contains("port \(port) on 127.0.0.1 is already in use"))
        // The first cluster still serves.
        let run = try await cli.run(["scale", "1", "--name", "first"])
        #expect(run.status == 0)
        #expect(try await cli.run(["run", "--cluster", "first", "--", "echo", ":::", "still"]).output == "still\n")
    }

    @Test func thePasswordIsInNoProcessArguments() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "secret", "--port", "0", "--workers", "2"])
        #expect(up.status == 0, "\(up.errorOutput)")
        let staticData = try String(contentsOfFile: "\(cli.home)/clusters/secret/static.json", encoding: .utf8)
        let password = try #require(staticData.firstMatch(of: /"serverPassword":"([a-z]+)"/)?.1)
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(cli.home)/clusters/secret/static.json")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        var commandLines = ""
        for pid in try FileManager.default.contentsOfDirectory(atPath: "/proc") where Int(pid) != nil {
            if let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") {
                commandLines += String(decoding: data, as: UTF8.self) + "\n"
            }
        }
        #expect(commandLines.contains("dockerparallel"))
        #expect(!commandLines.contains(String(password)))
        let status = try await cli.run(["status", "--name", "secret"])
        #expect(!status.output.contains(String(password)))
        let logs = try FileManager.default.contentsOfDirectory(atPath: "\(cli.home)/clusters/secret")
            .filter { $0.hasSuffix(".log") }
            .map { try String(contentsOfFile: "\(cli.home)/clusters/secret/\($0)", encoding: .utf8) }
        #expect(!logs.joined().contains(String(password)))
    }
}

@Suite(.timeLimit(.minutes(2))) struct JobCommandTests {
    @Test func aJobSubmittedByOneProcessIsCollectedByAnother() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--cluster", "batch", "--port", "0", "--workers", "2"])
        #expect(up.status == 0, "\(up.errorOutput)")
        let submit = try await cli.run(["submit", "--cluster", "batch", "--job", "nightly", "-q", "--",
                                        "sh", "-c", "echo out {}; echo err {} >&2; [ {} != 2 ]", ":::", "1", "2", "3"])
        #expect(submit.status == 0, "\(submit.errorOutput)")
        #expect(submit.output == "nightly\n")
        // Submitting again with the same id adds nothing.
        let again = try await cli.run(["submit", "--cluster", "batch", "--job", "nightly", "-q", "--",
                                       "sh", "-c", "echo out {}; echo err {} >&2; [ {} != 2 ]", ":::", "1", "2", "3"])
        #expect(again.status == 0)

        let results = try await cli.run(["results", "--cluster", "batch", "--job", "nightly"])
        #expect(results.output == "out 1\nout 2\nout 3\n")
        #expect(results.status == 1)
        #expect(results.errorOutput.contains("1 of 3 tasks failed"))
        #expect(results.errorOutput.contains("#2 (task 2): exited with status 1"))

        let list = try await cli.run(["results", "--cluster", "batch"])
        #expect(list.output == "nightly\t3/3 done, 1 failed, 0 cancelled\n")

        let logs = try await cli.run(["logs", "--cluster", "batch", "--job", "nightly", "--task", "2"])
        #expect(logs.output.contains("--- task 2: failed, exit 1, 1 attempt(s): exited with status 1\nerr 2\n"))
        #expect(!logs.output.contains("err 1"))

        let forget = try await cli.run(["results", "--cluster", "batch", "--job", "nightly", "--forget"])
        #expect(forget.output == "out 1\nout 2\nout 3\n")
        let gone = try await cli.run(["results", "--cluster", "batch", "--job", "nightly"])
        #expect(gone.status != 0)
        #expect(gone.errorOutput.contains("there is no job 'nightly'"))
    }

    @Test func failedTasksAreListedAndRetried() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--cluster", "retry", "--port", "0", "--workers", "1"])
        #expect(up.status == 0, "\(up.errorOutput)")
        // Task 2 fails until its marker file exists.
        let marker = "\(cli.home)/fixed"
        let script = "[ {} != 2 ] || [ -e \"$0\" ] || { echo missing >&2; exit 3; }; echo ok {}"
        _ = try await cli.run(["submit", "--cluster", "retry", "--job", "j", "-q", "--", "sh", "-c", script, marker, ":::", "1", "2", "3"])
        let first = try await cli.run(["results", "--cluster", "retry", "--job", "j"])
        #expect(first.status == 1)
        #expect(first.output == "ok 1\nok 3\n")
        let failed = try await cli.run(["logs", "--cluster", "retry", "--job", "j", "--failed"])
        #expect(failed.output.contains("--- task 2: failed, exit 3, 1 attempt(s): exited with status 3\nmissing\n"))
        #expect(!failed.output.contains("--- task 1"))

        #expect(FileManager.default.createFile(atPath: marker, contents: Data()))
        let retry = try await cli.run(["retry", "--cluster", "retry", "--job", "j"])
        #expect(retry.output == "queued 1 task(s) of j again\n", "\(retry.errorOutput)")
        let second = try await cli.run(["results", "--cluster", "retry", "--job", "j"])
        #expect(second.status == 0, "\(second.errorOutput)")
        #expect(second.output == "ok 1\nok 2\nok 3\n")
    }
}
