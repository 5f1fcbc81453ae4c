import DockerParallelTestKit
import Foundation
import Testing

/// `dockerparallel supervise` keeps a named cluster at the worker number asked of its server,
/// from the HTTP API or `scale` in another process, and ends when the cluster is stopped.
@Suite(.timeLimit(.minutes(2))) struct SuperviseTests {
    @Test func theWorkerNumberAskedOverHTTPIsAppliedByTheSupervisor() async throws {
        let cli = try CLI()
        defer { cli.tearDown() }
        let up = try await cli.run(["up", "--name", "sup", "--port", "0", "--workers", "1"])
        #expect(up.status == 0, "\(up.errorOutput)")
        let (supervisor, output, _) = try cli.start(["supervise", "--name", "sup"])
        defer { if supervisor.isRunning { supervisor.terminate() } }

        let api = try await cli.run(["api", "--name", "sup"])
        let url = try #require(api.output.firstMatch(of: /export DOCKERPARALLEL_API=(\S+)/)?.1)
        let token = try #require(api.output.firstMatch(of: /export DOCKERPARALLEL_TOKEN=(\S+)/)?.1)
        let auth = ["-s", "--max-time", "20", "-H", "Authorization: Bearer \(token)"]
        // A bad number is refused with the reason, and changes nothing.
        let negative = try programOutput("/usr/bin/curl", auth + ["-X", "PUT", "-d", #"{"workers": -2}"#, "\(url)/api/v1/workers"])
        #expect(negative.contains("the worker number must be between 0 and"), "\(negative)")
        let malformed = try programOutput("/usr/bin/curl", auth + ["-X", "PUT", "-d", "three", "\(url)/api/v1/workers"])
        #expect(malformed.contains(#"{\"workers\": 4}"#), "\(malformed)")

        let put = try programOutput("/usr/bin/curl", auth + ["-X", "PUT", "-d", #"{"workers": 3}"#, "\(url)/api/v1/workers"])
        #expect(put.contains(#""desired":3"#), "\(put)")
        #expect(put.contains("dockerparallel supervise --name sup"), "\(put)")
        try await waitUntil("the supervisor starts two more workers") {
            try await cli.run(["status", "--name", "sup"]).output.contains("Connected:      3 worker process(es)")
        }
        let status = try await cli.run(["status", "--name", "sup"])
        #expect(status.output.contains("Asked for:      3 worker(s)"), "\(status.output)")

        // `scale` from another process is asked of the server too: the supervisor keeps it.
        let scale = try await cli.run(["scale", "2", "--name", "sup"])
        #expect(scale.status == 0, "\(scale.errorOutput)")
        let workers = try programOutput("/usr/bin/curl", auth + ["\(url)/api/v1/workers"])
        #expect(workers.contains(#""desired":2"#), "\(workers)")
        try await waitUntil("two workers are left") {
            try await cli.run(["status", "--name", "sup"]).output.contains("Connected:      2 worker process(es)")
        }

        // Stopped with `down`, the cluster has nothing left to supervise.
        #expect(try await cli.run(["down", "--name", "sup"]).status == 0)
        try await waitUntil("the supervisor ends") { !supervisor.isRunning }
        #expect(supervisor.terminationStatus == 0)
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(printed.contains("Worker number now 3, as asked of the server"), "\(printed)")
        #expect(printed.contains("'sup' was stopped: nothing left to supervise"), "\(printed)")
    }
}
