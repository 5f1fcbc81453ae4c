import DockerParallelCore
import DockerParallelWire
import Foundation
import Hummingbird
import HummingbirdCore
import NIOConcurrencyHelpers
import NIOCore

/// The HTTP API's way to the broker: a client connection of its own to its own server (the unix
/// socket, or the bound address), so that HTTP jobs get what every client gets: durable submits,
/// watches, cancel, retry, the attempt log.
final class SelfClient: Sendable {
    private struct State {
        var endpoint: Endpoint?
        var connection: PeerConnection?
    }

    private let password: ServerPassword
    private let certificateAuthority: String?
    private let state = NIOLockedValueBox(State())

    init(password: ServerPassword, certificateAuthority: String?) {
        self.password = password
        self.certificateAuthority = certificateAuthority
    }

    /// Where the server listens, once it does.
    func serve(at endpoint: Endpoint) {
        var endpoint = endpoint
        // A server on every address is reached on loopback.
        if endpoint.host == "0.0.0.0" || endpoint.host == "::" { endpoint.host = "127.0.0.1"; endpoint.usesTLS = false }
        state.withLockedValue { $0.endpoint = endpoint }
    }

    /// The connection, made on first use and remade when lost.
    func connection() async throws -> PeerConnection {
        let (endpoint, existing) = state.withLockedValue { ($0.endpoint, $0.connection) }
        if let existing, existing.isOpen { return existing }
        guard let endpoint else { throw HTTPError(.serviceUnavailable, message: "the server is starting: try again") }
        let connection = try await PeerConnection.connect(
            to: endpoint, hello: Hello(role: .client, password: password.value, name: "http-api"),
            certificateAuthority: certificateAuthority)
        state.withLockedValue { $0.connection = connection }
        return connection
    }

    /// A connection of its own for one watch, closed when the watch ends, so that the server
    /// stops sending to a watcher nobody reads.
    func separateConnection() async throws -> PeerConnection {
        guard let endpoint = state.withLockedValue({ $0.endpoint }) else {
            throw HTTPError(.serviceUnavailable, message: "the server is starting: try again")
        }
        do {
            return try await PeerConnection.connect(
                to: endpoint, hello: Hello(role: .client, password: password.value, name: "http-api"),
                certificateAuthority: certificateAuthority)
        } catch let error as DockerParallelError {
            throw HTTPJobs.httpError(error)
        }
    }

    /// Sends a request; the server's refusal becomes an HTTP error with its message.
    func request(_ message: ClientMessage) async throws -> ServerMessage {
        do {
            return try await connection().request(message, timeout: 60)
        } catch let error as DockerParallelError {
            throw HTTPJobs.httpError(error)
        }
    }
}

/// The job routes of the HTTP API.
enum HTTPJobs {
    /// A job as `POST /api/v1/jobs` takes it: one command per input, GNU parallel style; or one
    /// task per input for a persistent process (`process`).
    struct Submission: Decodable {
        /// The job's id (default: a new one). Submitting again with the same id adds nothing twice.
        var id: String?
        /// The command and its arguments; `{}` is the input (appended when absent).
        var command: [String]?
        /// Instead of `command`: the program of a persistent process that each worker slot keeps
        /// running, to which each input is sent as a task (see PersistentProcessProtocol).
        var process: [String]?
        /// One task per input.
        var inputs: [String]
        /// How the inputs are written: `text` (default) or `base64` (bytes).
        var inputEncoding: String?
        /// The index of the first input in the job (default 0): a big job goes in several
        /// submits of the same id, each after the inputs sent before.
        var firstIndex: Int?
        /// Extra environment for every command.
        var environment: [String: String]?
        var maxAttempts: Int?
        var failureRetries: Int?
        /// Seconds a task may run.
        var timeout: Double?
    }

    /// A task's result as the API shows it: outputs as text, or in base64 when asked.
    struct Result: Encodable {
        var index: Int
        var status: String
        var attempts: Int
        var exitCode: Int32?
        var output: String
        var errorOutput: String
        var error: String?

        init(_ result: TaskResult, base64: Bool = false) {
            index = result.index
            status = result.status.rawValue
            attempts = result.attempts
            exitCode = result.exitCode
            output = base64 ? result.output.base64EncodedString() : String(decoding: result.output, as: UTF8.self)
            errorOutput = String(decoding: result.errorOutput, as: UTF8.self)
            error = result.error
        }
    }

    static let submitBatch = 10_000

    static func add(to api: RouterGroup<BasicRequestContext>, client: SelfClient) {
        api.post("/api/v1/jobs") { request, context -> Response in
            var request = request
            let body = try await request.collectBody(upTo: HTTPFace.maximumJobBodySize)
            let submission: Submission
            do {
                submission = try JSONDecoder().decode(Submission.self, from: Data(buffer: body))
            } catch {
                throw HTTPError(
                    .badRequest,
                    message: "the body is not a job: send JSON {\"command\": [\"echo\", \"{}\"], \"inputs\": [\"a\", \"b\"]} (\(error))")
            }
            // What each input becomes: a command line, or a task for a persistent process.
            let makeKind: (_ input: String, _ number: Int) -> TaskSpec.Kind
            let base64Inputs: Bool
            switch submission.inputEncoding ?? "text" {
            case "text": base64Inputs = false
            case "base64": base64Inputs = true
            case let other:
                throw HTTPError(.badRequest, message: "inputEncoding must be \"text\" or \"base64\", not \"\(other)\"")
            }
            let environment = submission.environment ?? [:]
            switch (submission.command, submission.process) {
            case (let command?, nil):
                guard !base64Inputs else {
                    throw HTTPError(.badRequest, message: "a command's inputs are text: base64 inputs are for a \"process\" job")
                }
                let template: CommandTemplate
                do {
                    template = try CommandTemplate(command)
                } catch let error as DockerParallelError {
                    throw HTTPError(.badRequest, message: error.message)
                }
                makeKind = { input, number in .command(argv: template.argv(input: input, number: number), environment: environment) }
            case (nil, let process?):
                guard let program = process.first, !program.isEmpty else {
                    throw HTTPError(.badRequest, message: "process must name a program: [\"Rscript\", \"-e\", \"…\"]")
                }
                makeKind = { _, _ in .process(argv: process, environment: environment) }
            case (nil, nil):
                throw HTTPError(.badRequest, message: "the job needs a \"command\" (run once per input) or a \"process\" (kept running, sent each input)")
            case (_?, _?):
                throw HTTPError(.badRequest, message: "send either \"command\" or \"process\", not both")
            }
            var inputData: [Data] = []
            if base64Inputs {
                inputData.reserveCapacity(submission.inputs.count)
                for (offset, input) in submission.inputs.enumerated() {
                    guard let data = Data(base64Encoded: input) else {
                        throw HTTPError(.badRequest, message: "input \(offset) is not base64, though inputEncoding is \"base64\"")
                    }
                    inputData.append(data)
                }
            }
            var options = JobOptions(maxAttempts: submission.maxAttempts ?? 3, failureRetries: submission.failureRetries ?? 0)
            if let seconds = submission.timeout {
                guard seconds > 0, let timeout = Duration(checkedSeconds: seconds) else {
                    throw HTTPError(.badRequest, message: "timeout must be a positive number of seconds, not \(seconds)")
                }
                options.timeout = timeout
            }
            let jobID = submission.id ?? JobID.random().rawValue
            let first = submission.firstIndex ?? 0
            guard first >= 0 else {
                throw HTTPError(.badRequest, message: "firstIndex must not be negative, not \(first): it is the index of the first input in the job")
            }
            var accepted = 0
            var duplicates = 0
            for start in stride(from: 0, to: max(submission.inputs.count, 1), by: submitBatch) {
                let end = min(start + submitBatch, submission.inputs.count)
                let tasks = (start..<end).map { offset in
                    let kind = makeKind(submission.inputs[offset], first + offset + 1)
                    let input: Data
                    if case .process = kind {
                        input = base64Inputs ? inputData[offset] : Data(submission.inputs[offset].utf8)
                    } else {
                        input = Data()
                    }
                    return TaskSpec(index: first + offset, kind: kind, input: input)
                }
                guard case .submitted(let taken, let again) = try await client.request(.submit(jobID: jobID, options: options, tasks: tasks)) else {
                    throw HTTPError(.internalServerError, message: "the broker did not take the job")
                }
                accepted += taken
                duplicates += again
            }
            struct Submitted: Encodable {
                var id: String
                var accepted: Int
                var duplicates: Int
            }
            return try HTTPFace.json(Submitted(id: jobID, accepted: accepted, duplicates: duplicates), status: .created)
        }

        // Results in input order, from `from` on, as they come: one JSON object a line.
        api.get("/api/v1/jobs/{id}/results") { request, context -> Response in
            let id = try context.parameters.require("id")
            let from = request.uri.queryParameters.get("from", as: Int.self) ?? 0
            guard from >= 0 else { throw HTTPError(.badRequest, message: "from must be 0 or more") }
            let base64: Bool
            switch request.uri.queryParameters.get("encoding") ?? "text" {
            case "text": base64 = false
            case "base64": base64 = true
            case let other: throw HTTPError(.badRequest, message: "encoding must be text or base64, not \(other)")
            }
            // Whether the job exists is known before the response starts.
            guard case .status(let report) = try await client.request(.status), report.jobs.contains(where: { $0.jobID.rawValue == id }) else {
                throw HTTPError(.notFound, message: "there is no job '\(id)' on this server: GET /api/v1/jobs lists them")
            }
            let watching = try await client.separateConnection()
            let stream = watching.stream(.watch(jobID: id))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return Response(
                status: .ok, headers: [.contentType: "application/x-ndjson", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    defer { watching.close() }
                    var waiting: [Int: TaskResult] = [:]
                    var next = from
                    var total: Int?
                    var iterator = stream.makeAsyncIterator()
                    func take(_ message: ServerMessage) async throws {
                        switch message {
                        case .results(let results):
                            for result in results where result.index >= next { waiting[result.index] = result }
                        case .job(let status):
                            total = status.total
                        default:
                            break
                        }
                        while let result = waiting.removeValue(forKey: next) {
                            var line = try encoder.encode(Result(result, base64: base64))
                            line.append(UInt8(ascii: "\n"))
                            try await writer.write(ByteBuffer(data: line))
                            next += 1
                        }
                    }
                    while total.map({ next < $0 }) ?? true, let message = try await iterator.next() {
                        try await take(message)
                    }
                    try await writer.finish(nil)
                })
        }

        // The failed tasks a job has now, each with the last lines it wrote.
        api.get("/api/v1/jobs/{id}/failures") { _, context -> Response in
            let id = try context.parameters.require("id")
            struct Failure: Encodable {
                var index: Int
                var status: String
                var attempts: Int
                var exitCode: Int32?
                var error: String?
                var lastLines: String
            }
            var failures: [Failure] = []
            let watching = try await client.separateConnection()
            defer { watching.close() }
            do {
                for try await reply in watching.stream(.watch(jobID: id)) {
                    if case .results(let results) = reply {
                        for result in results where result.status == .failed {
                            let log = result.errorOutput.isEmpty ? result.output : result.errorOutput
                            let lines = String(decoding: log, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                            failures.append(Failure(
                                index: result.index, status: result.status.rawValue, attempts: result.attempts,
                                exitCode: result.exitCode, error: result.error, lastLines: lines.suffix(10).joined(separator: "\n")))
                        }
                    }
                    if case .job = reply { break }
                }
            } catch let error as DockerParallelError {
                throw httpError(error)
            }
            return try HTTPFace.json(failures.sorted { $0.index < $1.index })
        }

        api.post("/api/v1/jobs/{id}/cancel") { request, context -> Response in
            let id = try context.parameters.require("id")
            let index = request.uri.queryParameters.get("task", as: Int.self)
            guard case .job(let status) = try await client.request(.cancel(jobID: id, index: index)) else {
                throw HTTPError(.internalServerError, message: "the broker did not cancel the job")
            }
            return try HTTPFace.json(status)
        }
        api.post("/api/v1/jobs/{id}/retry") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard case .job(let status) = try await client.request(.retry(jobID: id, indices: nil)) else {
                throw HTTPError(.internalServerError, message: "the broker did not retry the job")
            }
            return try HTTPFace.json(status)
        }
        api.delete("/api/v1/jobs/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            _ = try await client.request(.forget(jobID: id))
            return Response(status: .noContent)
        }
        api.get("/api/v1/jobs/{id}/attempts") { request, context -> Response in
            let id = try context.parameters.require("id")
            let index = request.uri.queryParameters.get("task", as: Int.self)
            var records: [AttemptRecord] = []
            do {
                for try await reply in try await client.connection().stream(.attempts(jobID: id, index: index)) {
                    if case .attempts(let batch) = reply { records += batch }
                    if case .done = reply { break }
                }
            } catch let error as DockerParallelError {
                throw httpError(error)
            }
            return try HTTPFace.json(records)
        }
    }

    /// The broker's refusal as an HTTP error with its message.
    static func httpError(_ error: DockerParallelError) -> HTTPError {
        let status: HTTPResponse.Status =
            switch error.code {
            case .invalidArgument: error.message.contains("there is no job") ? .notFound : .badRequest
            case .storageFull: HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")
            case .authenticationFailed: .unauthorized
            case .connectionFailed, .serverNotRunning: .serviceUnavailable
            default: .internalServerError
            }
        return HTTPError(status, message: error.message)
    }
}
