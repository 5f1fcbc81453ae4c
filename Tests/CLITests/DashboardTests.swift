import DockerParallelTestKit
import Foundation
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)), .enabled(if: HeadlessBrowser.enabled, "needs Debian's chromium (set DOCKERPARALLEL_REQUIRE_BROWSER=1 to fail instead)"))
struct DashboardTests {
    @Test func theDashboardShowsAJobsProgressMovingAndAFailedTasksLog() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "board", "--port", "0", "--workers", "2"])
        #expect(up.status == 0, "\(up.errorOutput)")
        // Past the first 10, tasks wait for a gate; task 3 fails with a line on standard error.
        let gate = "\(cli.home)/gate"
        let script = "[ {} != 3 ] || { echo 'boom on three' >&2; exit 3; }; [ {} -le 10 ] || while [ ! -e '\(gate)' ]; do sleep 0.01; done; echo {}"
        let submit = try await cli.run(["submit", "--name", "board", "--job", "web", "-q", "--", "sh", "-c", script, ":::"] + (1...40).map(String.init))
        #expect(submit.status == 0, "\(submit.errorOutput)")
        try await waitUntil("ten tasks are done") {
            try await cli.run(["status", "--name", "board"]).output.contains("Job web: 10/40 done")
        }
        let dashboard = try await cli.run(["dashboard", "--name", "board", "--no-open"])
        let link = dashboard.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(link.hasPrefix("http://127.0.0.1:") && link.contains("/#token="), "\(link)")
        let password = try #require(try String(contentsOfFile: "\(cli.home)/clusters/board/static.json", encoding: .utf8)
            .firstMatch(of: /"serverPassword":"([a-z]+)"/)?.1)
        #expect(!link.contains(String(password)), "the link carries the password itself")

        // While the gate holds the job at 10 of 40: its progress, its failed task's log, the workers.
        _ = try await HeadlessBrowser.dom(link, containing: [
            #"class="progress"> 10/40 done"#, "2 worker process(es), 2 slot(s)", "boom on three", "web #3: exited with status 3",
        ])

        FileManager.default.createFile(atPath: gate, contents: nil)
        try await waitUntil("the job ends") {
            try await cli.run(["status", "--name", "board"]).output.contains("Job web: 40/40 done")
        }
        // The progress moved; the chart draws the server's own samples of the past seconds.
        // The chart's legend gives the dispatch latency the server measured.
        let page = try await HeadlessBrowser.dom(link, containing: [
            #"class="progress"> 40/40 done, 0 running, 1 failed"#, "tasks/s now", "dispatch latency ",
        ])
        #expect(page.firstMatch(of: /dispatch latency (idle|[0-9.]+ m?s) now, peak [0-9.]+ m?s/) != nil, "\(page)")
        #expect(page.firstMatch(of: /<polyline id="latency" points="[0-9]/) != nil, "the latency line is drawn")
    }

    @Test func withoutAValidTokenTheDashboardAsksForOneAndShowsNothing() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "locked", "--port", "0", "--workers", "1"])
        #expect(up.status == 0, "\(up.errorOutput)")
        let link = try await cli.run(["dashboard", "--name", "locked", "--no-open"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let base = String(link.prefix { $0 != "#" })
        let anonymous = try await HeadlessBrowser.dom(base, containing: [#"<form id="login">"#])
        #expect(anonymous.contains(#"<main id="main" hidden="">"#), "\(Self.excerpt(anonymous))")
        #expect(!anonymous.contains("worker process(es)"))
        let wrong = try await HeadlessBrowser.dom(base + "#token=not-the-token", containing: ["is not this cluster"])
        #expect(!wrong.contains("worker process(es)"))
        // The pages come with a strict content security policy, and no inline script to allow.
        let headers = try programOutput("/usr/bin/curl", ["-s", "-D", "-", "-o", "/dev/null", base])
        #expect(headers.lowercased().contains("content-security-policy: default-src 'none'; script-src 'self'"), "\(headers)")
        #expect(headers.lowercased().contains("x-frame-options: deny"))
    }

    static func excerpt(_ dom: String) -> String {
        String(dom.drop { $0 != "<" }.prefix(3000))
    }
}
