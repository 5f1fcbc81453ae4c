import DockerParallel
import DockerParallelCore
import DockerParallelTestKit
import DockerParallelWire
import Foundation
import Testing

/// The dashboard with 1,000 connected workers and 100 jobs: it shows every worker and job, and
/// the page is ready within the browser's first seconds.
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: HeadlessBrowser.enabled, "needs Debian's chromium"))
struct DashboardScaleTests {
    @Test func aThousandWorkersAndAHundredJobsStayUsable() async throws {
        // One heavy test at a time (HeavyTests).
        try await HeavyTests.oneAtATime {
            try await withServer { endpoint in
                // A thousand worker connections that take no tasks, and a hundred jobs queued.
                var workers: [PeerConnection] = []
                for number in 0..<1_000 {
                    workers.append(try await PeerConnection.connect(
                        to: endpoint, hello: Hello(role: .worker, password: "right-password", name: "w\(number)", slots: 2)))
                }
                defer { for worker in workers { worker.close() } }
                let client = try await PeerConnection.connect(to: endpoint, hello: Hello(role: .client, password: "right-password", name: "c"))
                defer { client.close() }
                for job in 0..<100 {
                    let tasks = (0..<10).map { TaskSpec(index: $0, kind: .command(argv: ["true"], environment: [:])) }
                    _ = try await client.request(.submit(jobID: "job-\(job)", options: JobOptions(), tasks: tasks))
                }
                let dom = try await HeadlessBrowser.dom(
                    "http://127.0.0.1:\(endpoint.port)/#token=right-password", containing: ["1000 worker process(es), 2000 slot(s)"],
                    timeout: 30)
                #expect(dom.components(separatedBy: "<tr><td>w").count - 1 == 1_000)
                #expect(dom.components(separatedBy: #"<div class="job""#).count - 1 == 100)
            }
        }
    }
}
