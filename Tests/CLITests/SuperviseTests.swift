import DockerParallelTestKit
import Foundation
import Testing

/// Text a pipe's reader appends to while a test reads it.
final class PrintedText: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    func append(_ more: Data) {
        lock.lock()
        data.append(more)
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

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
        // What the supervisor prints, as it prints it.
        let printed = PrintedText()
        output.fileHandleForReading.readabilityHandler = { handle in printed.append(handle.availableData) }

        let api = try await cli.run(["api", "--name", "sup"])
        let url = try #require(api.output.firstMatch(of: /export DOCKERPARALLEL_API=(\S+)/)?.1)
        let token = try #require(api.output.firstMatch(of: /export DOCKERPARALLEL_TOKEN=(\S+)/)?.1)
        let auth = ["-s", "--max-time", "20", "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(token)"]
        // A bad number is refused with the reason, and changes nothing.
        let negative = try programOutput("/usr/bin/curl", auth + ["-X", "PUT", "-d", #"{"workers": -2}"#, "\(url)/api/v1/workers"])
        #expect(negative.contains("the worker number must be between 0 and") && negative.hasSuffix("\n400"), "\(negative)")
        let malformed = try programOutput("/usr/bin/curl", auth + ["-X", "PUT", "-d", "three", "\(url)/api/v1/workers"])
        #expect(malformed.contains(#"{\"workers\": 4}"#) && malformed.hasSuffix("\n400"), "\(malformed)")
        let unchanged = try programOutput("/usr/bin/curl", auth + ["\(url)/api/v1/workers"])
        #expect(!unchanged.contains(#""desired""#) && unchanged.hasSuffix("\n200"), "\(unchanged)")

        let put = try programOutput("/usr/bin/curl", auth + ["-X", "PUT", "-d", #"{"workers": 3}"#, "\(url)/api/v1/workers"])
        #expect(put.contains(#""desired":3"#) && put.hasSuffix("\n202"), "\(put)")
        #expect(put.contains("dockerparallel supervise --name sup"), "\(put)")
        try await waitUntil("the supervisor adopts the number") { printed.text.contains("Worker number now 3, as asked of the server") }
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
        // The supervisor takes the new number, and so does not bring the third worker back.
        try await waitUntil("the supervisor adopts 2") { printed.text.contains("Worker number now 2, as asked of the server") }
        try await waitUntil("two workers are left") {
            try await cli.run(["status", "--name", "sup"]).output.contains("Connected:      2 worker process(es)")
        }

        // Stopped with `down`, the cluster has nothing left to supervise.
        #expect(try await cli.run(["down", "--name", "sup"]).status == 0)
        try await waitUntil("the supervisor ends") { !supervisor.isRunning }
        #expect(supervisor.terminationStatus == 0)
        try await waitUntil("the supervisor says why it ended") { printed.text.contains("'sup' was stopped: nothing left to supervise") }
        // `down` asked the server for no workers first, so the supervisor did not bring any back.
        #expect(!printed.text.contains("could not update"), "\(printed.text)")
    }
}
