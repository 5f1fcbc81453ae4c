#if canImport(Glibc)
import Glibc
#endif
import DockerParallel
import DockerParallelTestKit
import Foundation
import Testing

/// Runs curl on a thread of its own (never blocking the tests' shared threads) and returns the
/// status code and body of its answer.
func curl(_ arguments: [String]) async throws -> (status: Int, body: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            continuation.resume(with: Result {
                let output = try programOutput("/usr/bin/curl", ["-s", "--max-time", "20", "-w", "\n%{http_code}"] + arguments)
                let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
                return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines))
            })
        }.start()
    }
}

/// The server's HTTP side on its binary port: health, metrics and the JSON API, behind the
/// cluster password as a bearer token.
@Suite(.timeLimit(.minutes(2))) struct HTTPTests {
    @Test func healthMetricsAndTheAPIShareThePortWithTheBinaryStream() async throws {
        try await withStateDirectory { state in
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                configuration: ClusterConfiguration(jobQueueName: "http", expectedWorkerNumber: 2, serverPort: 0),
                verbosity: 0)
            try await cluster.withStarted { cluster in
                let endpoint = try #require(await cluster.runtime.serverEndpoints?.publicEndpoint)
                let base = "http://127.0.0.1:\(endpoint.port)"
                let token = await cluster.configuration.serverPassword.value
                let job = try await cluster.submit((0..<50).map { "x\($0)" }, using: BuiltinEcho.self)
                _ = try await job.outputs()

                // Health needs no token.
                #expect(try await curl(["\(base)/healthz"]) == (200, "ok"))
                #expect(try await curl(["\(base)/readyz"]) == (200, "ready"))
                // Everything else does, and says how to give it.
                let anonymous = try await curl(["\(base)/api/v1/status"])
                #expect(anonymous.status == 401)
                #expect(anonymous.body.contains("Authorization: Bearer <password>"), "\(anonymous.body)")
                let wrong = try await curl(["-H", "Authorization: Bearer nope", "\(base)/metrics"])
                #expect(wrong.status == 401)
                #expect(!wrong.body.contains(token))

                let auth = ["-H", "Authorization: Bearer \(token)"]
                let status = try await curl(auth + ["\(base)/api/v1/status"])
                #expect(status.status == 200)
                let report = try JSONDecoder().decode(ServerReport.self, from: Data(status.body.utf8))
                #expect(report.jobQueueName == "http")
                #expect(report.workerSlots == 2)
                let jobs = try await curl(auth + ["\(base)/api/v1/jobs"])
                let listed = try JSONDecoder().decode([JobStatus].self, from: Data(jobs.body.utf8))
                #expect(listed.map(\.jobID) == [job.id])
                let one = try await curl(auth + ["\(base)/api/v1/jobs/\(job.id.rawValue)"])
                #expect(try JSONDecoder().decode(JobStatus.self, from: Data(one.body.utf8)).succeeded == 50)
                let missing = try await curl(auth + ["\(base)/api/v1/jobs/nope"])
                #expect(missing.status == 404)
                #expect(missing.body.contains("GET /api/v1/jobs lists them"), "\(missing.body)")

                // Prometheus text: every sample line parses, and the numbers are the server's.
                let metrics = try await curl(auth + ["\(base)/metrics"])
                #expect(metrics.status == 200)
                let samples = try Self.parsePrometheus(metrics.body)
                #expect(samples["dockerparallel_workers_connected{queue=\"http\"}"] == 2)
                #expect(samples["dockerparallel_job_tasks{queue=\"http\",job=\"\(job.id.rawValue)\",state=\"succeeded\"}"] == 50)
                #expect(samples["dockerparallel_storage_full{queue=\"http\"}"] == 0)
                #expect((samples["dockerparallel_store_bytes{queue=\"http\"}"] ?? 0) > 0)
                // The latency histograms: each of the 50 tasks was dispatched once, and every
                // batch of the store's writes was timed; buckets only grow, up to the count.
                #expect(metrics.body.contains("# TYPE dockerparallel_dispatch_latency_seconds histogram"))
                #expect(samples["dockerparallel_dispatch_latency_seconds_count{queue=\"http\"}"] == 50)
                #expect((samples["dockerparallel_commit_latency_seconds_count{queue=\"http\"}"] ?? 0) >= 1)
                for name in ["dockerparallel_dispatch_latency_seconds", "dockerparallel_commit_latency_seconds"] {
                    let buckets = Self.buckets(name, in: metrics.body)
                    #expect(buckets.count > 10, "\(name): \(buckets)")
                    #expect(buckets.map(\.count) == buckets.map(\.count).sorted(), "\(name) buckets must be cumulative: \(buckets)")
                    #expect(buckets.last?.bound == .infinity)
                    #expect(buckets.last?.count == samples["\(name)_count{queue=\"http\"}"])
                }

                // The binary stream on the same port is unchanged.
                #expect(try await cluster.map(["a", "b"], using: BuiltinEcho.self) == ["a", "b"])
            }
        }
    }

    /// A job submitted, watched, cancelled, retried and forgotten over HTTP with curl alone.
    @Test func aJobThroughTheHTTPAPIEndToEnd() async throws {
        try await withStateDirectory { state in
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                configuration: ClusterConfiguration(jobQueueName: "api", expectedWorkerNumber: 2, serverPort: 0),
                verbosity: 0)
            try await cluster.withStarted { cluster in
                let port = try #require(await cluster.runtime.serverEndpoints?.publicEndpoint?.port)
                let token = await cluster.configuration.serverPassword.value
                let base = "http://127.0.0.1:\(port)/api/v1"
                let auth = ["-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json"]
                let inputs = (0..<100).map(String.init)
                let body = try String(decoding: JSONSerialization.data(withJSONObject: [
                    "id": "web", "command": ["sh", "-c", "echo {}"], "inputs": inputs,
                ]), as: UTF8.self)
                let submitted = try await curl(auth + ["-X", "POST", "--data", body, "\(base)/jobs"])
                #expect(submitted.status == 201, "\(submitted.body)")
                #expect(submitted.body == #"{"accepted":100,"duplicates":0,"id":"web"}"#)
                // Sent again: nothing twice.
                let again = try await curl(auth + ["-X", "POST", "--data", body, "\(base)/jobs"])
                #expect(again.body == #"{"accepted":0,"duplicates":100,"id":"web"}"#)
                // A big job in two submits: the second's inputs follow the first's.
                for (first, part) in [(0, ["a", "b"]), (2, ["c"])] {
                    let submit = try String(decoding: JSONSerialization.data(withJSONObject: [
                        "id": "parts", "command": ["echo", "{#}:{}"], "inputs": part, "firstIndex": first,
                    ]), as: UTF8.self)
                    let sent = try await curl(auth + ["-X", "POST", "--data", submit, "\(base)/jobs"])
                    #expect(sent.body == #"{"accepted":\#(part.count),"duplicates":0,"id":"parts"}"#, "\(sent.body)")
                }
                let parts = try await curl(auth + ["\(base)/jobs/parts/results"])
                #expect(parts.body.contains(#""output":"3:c\n""#), "\(parts.body)")
                #expect(parts.body.split(separator: "\n").count == 3, "\(parts.body)")

                // Results stream in input order, one JSON object a line, and resume from an index.
                struct Line: Decodable { var index: Int; var status: String; var output: String; var attempts: Int }
                let results = try await curl(auth + ["\(base)/jobs/web/results"])
                let lines = try results.body.split(separator: "\n").map { try JSONDecoder().decode(Line.self, from: Data($0.utf8)) }
                #expect(lines.map(\.index) == Array(0..<100))
                #expect(lines.allSatisfy { $0.status == "succeeded" && $0.output == "\($0.index)\n" })
                let tail = try await curl(auth + ["\(base)/jobs/web/results?from=95"])
                #expect(tail.body.split(separator: "\n").count == 5)
                let attempts = try await curl(auth + ["\(base)/jobs/web/attempts?task=3"])
                #expect(attempts.status == 200)
                #expect(attempts.body.contains(#""outcome":"succeeded""#), "\(attempts.body)")

                // A slow job cancelled: its results say so, and it can be retried, then forgotten.
                let slow = try String(decoding: JSONSerialization.data(withJSONObject: [
                    "id": "slow", "command": ["sleep", "{}"], "inputs": ["30", "30", "30"],
                ]), as: UTF8.self)
                #expect(try await curl(auth + ["-X", "POST", "--data", slow, "\(base)/jobs"]).status == 201)
                let cancelled = try await curl(auth + ["-X", "POST", "\(base)/jobs/slow/cancel"])
                #expect(cancelled.status == 200)
                #expect(try JSONDecoder().decode(JobStatus.self, from: Data(cancelled.body.utf8)).cancelled == 3)
                let stopped = try await curl(auth + ["\(base)/jobs/slow/results"])
                #expect(stopped.body.split(separator: "\n").count == 3)
                #expect(stopped.body.contains(#""status":"cancelled""#))
                let retried = try await curl(auth + ["-X", "POST", "\(base)/jobs/slow/retry"])
                #expect(try JSONDecoder().decode(JobStatus.self, from: Data(retried.body.utf8)).cancelled == 0)
                #expect(try await curl(auth + ["-X", "DELETE", "\(base)/jobs/slow"]).status == 204)
                #expect(try await curl(auth + ["\(base)/jobs/slow"]).status == 404)
                #expect(try await curl(auth + ["\(base)/jobs/slow/results"]).status == 404)

                // Bad bodies: the error says what to send.
                let bad = try await curl(auth + ["-X", "POST", "--data", "{not json", "\(base)/jobs"])
                #expect(bad.status == 400)
                #expect(bad.body.contains("send JSON"), "\(bad.body)")
                let empty = try await curl(auth + ["-X", "POST", "--data", #"{"command": [], "inputs": ["a"]}"#, "\(base)/jobs"])
                #expect(empty.status == 400, "\(empty)")
                // The Swift client sees the HTTP job as any other.
                #expect(try await cluster.jobStatus(jobID: JobID("web")).succeeded == 100)
            }
        }
    }

    /// `DOCKERPARALLEL_LOG_FORMAT=json`: the server's log is one JSON object a line.
    @Test func serverLogsCanBeJSONLines() async throws {
        try await withStateDirectory { state in
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel, environment: ["DOCKERPARALLEL_LOG_FORMAT": "json"]),
                configuration: ClusterConfiguration(jobQueueName: "jsonlog", expectedWorkerNumber: 1, serverPort: 0),
                verbosity: 0)
            try await cluster.withStarted { cluster in
                #expect(try await cluster.map(["a"], using: BuiltinEcho.self) == ["a"])
                let password = await cluster.configuration.serverPassword.value
                let log = try String(contentsOfFile: "\(state)/jsonlog/server.log", encoding: .utf8)
                let lines = log.split(separator: "\n")
                #expect(!lines.isEmpty)
                for line in lines {
                    let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
                    #expect(object?["level"] != nil && object?["message"] != nil && object?["time"] != nil, "\(line)")
                }
                #expect(lines.contains { $0.contains(#""message":"listening on 127.0.0.1:"#) }, "\(log)")
                #expect(!log.contains(password))
            }
        }
    }

    /// Hostile input gets a clear answer and disturbs no one else.
    @Test func badRequestsGetClearErrorsAndDisturbNoOne() async throws {
        try await withStateDirectory { state in
            let cluster = try DockerCluster(
                provider: LocalProvider(configuration: .init(stateDirectory: state)),
                workerContainer: LocalProcessContainer(executable: Binaries.dockerparallel),
                configuration: ClusterConfiguration(jobQueueName: "hostile", expectedWorkerNumber: 1, serverPort: 0),
                verbosity: 0)
            try await cluster.withStarted { cluster in
                let port = try #require(await cluster.runtime.serverEndpoints?.publicEndpoint?.port)
                let token = await cluster.configuration.serverPassword.value
                // A request line that is no HTTP: 400, and the connection closes.
                let garbage = try await Self.raw("GARBAGE\r\n\r\n", port: port)
                #expect(garbage.hasPrefix("HTTP/1.1 400"), "\(garbage)")
                // Headers of a megabyte: refused, not read forever.
                let huge = try await Self.raw("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 1 << 20))\r\n\r\n", port: port)
                #expect(huge.isEmpty || huge.hasPrefix("HTTP/1.1 4"), "\(huge.prefix(200))")
                // A body over a job submit's 32 MiB limit: 413 or refused before it is read.
                let body = NSTemporaryDirectory() + "dp-big-\(UUID().uuidString.prefix(8))"
                FileManager.default.createFile(atPath: body, contents: Data(count: 40 << 20))
                defer { try? FileManager.default.removeItem(atPath: body) }
                let big = try await curl([
                    "-H", "Authorization: Bearer \(token)", "-X", "POST", "--data-binary", "@\(body)", "http://127.0.0.1:\(port)/api/v1/jobs",
                ])
                #expect([404, 405, 413].contains(big.status), "\(big)")
                // Unknown routes: JSON 404.
                let unknown = try await curl(["-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(port)/no/such/route"])
                #expect(unknown.status == 404)
                // Meanwhile the cluster serves its jobs as before.
                #expect(try await cluster.map((0..<20).map(String.init), using: BuiltinEcho.self) == (0..<20).map(String.init))
                #expect(try await curl(["http://127.0.0.1:\(port)/healthz"]) == (200, "ok"))
            }
        }
    }

    /// Sends raw bytes and reads the answer until the server closes (at most 10 s), on a thread
    /// of its own.
    static func raw(_ request: String, port: Int) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    String(decoding: try rawExchange(Endpoint(host: "127.0.0.1", port: port), send: Array(request.utf8)), as: UTF8.self)
                })
            }.start()
        }
    }

    /// A histogram's buckets in the order given: upper bound and cumulative count.
    static func buckets(_ name: String, in text: String) -> [(bound: Double, count: Double)] {
        text.split(separator: "\n").compactMap { line -> (Double, Double)? in
            guard line.hasPrefix("\(name)_bucket{"), let match = line.firstMatch(of: /le="([^"]+)"\} ([0-9.e+-]+)$/) else { return nil }
            let bound = match.1 == "+Inf" ? Double.infinity : Double(match.1) ?? .nan
            return (bound, Double(match.2) ?? .nan)
        }
    }

    /// Parses Prometheus text: `# HELP`/`# TYPE` comments and `name{labels} value` samples.
    static func parsePrometheus(_ text: String) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw DockerParallelError(.invalidArgument, "not a Prometheus sample: \(line)")
            }
            let name = line[..<space]
            #expect(name.wholeMatch(of: /[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})?/) != nil, "\(name)")
            samples[String(name)] = value
        }
        for line in text.split(separator: "\n") where line.hasPrefix("#") {
            #expect(line.hasPrefix("# HELP dockerparallel_") || line.hasPrefix("# TYPE dockerparallel_"), "\(line)")
        }
        return samples
    }
}
