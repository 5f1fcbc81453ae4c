import DockerParallelCore
import Foundation
import Hummingbird
import HummingbirdCore
import HTTPTypes
import Logging
import NIOCore

/// The server's HTTP side, on the same port as the binary stream: health checks, Prometheus
/// metrics and a JSON API, all but the health checks behind the cluster password as a bearer token.
///
/// A connection is handed over by ``ConnectionSniffer`` once its first byte says HTTP; Hummingbird
/// serves it from there (keep-alive, pipelining, bodies up to ``maximumBodySize``).
final class HTTPFace: Sendable {
    /// The largest request body taken.
    static let maximumBodySize = 1 << 20
    /// The largest body of a job submit (inputs of persistent-process tasks can be large).
    static let maximumJobBodySize = 32 << 20

    private let channel: HTTP1Channel
    private let logger: Logger
    /// The API's own client connection to this server.
    let client: SelfClient
    /// Finished tasks over the last minutes, for the dashboard's chart.
    let history = ThroughputHistory()

    init(broker: Broker, password: ServerPassword, certificateAuthority: String?, storePath: String?, logger: Logger) {
        self.logger = logger
        let client = SelfClient(password: password, certificateAuthority: certificateAuthority)
        self.client = client
        let responder = Self.router(
            broker: broker, password: password, storePath: storePath, client: client, history: history
        ).buildResponder()
        channel = HTTP1Channel(
            responder: { (request: Request, writer: consuming ResponseWriter, channel: any Channel) in
                var logger = logger
                logger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
                let context = BasicRequestContext(source: .init(channel: channel, logger: logger))
                let response: Response
                do {
                    response = try await responder.respond(to: request, context: context)
                } catch let error as HTTPError {
                    response = Self.error(error.status, error.body ?? Self.message(for: error.status))
                } catch {
                    response = Self.error(.internalServerError, "the server could not answer: \(error)")
                }
                try await writer.write(response: response.head, body: response.body)
            },
            configuration: .init(idleTimeout: .seconds(120)))
    }

    /// Takes over a connection whose first bytes, `buffered`, are HTTP; the sniffer goes.
    func adopt(context: ChannelHandlerContext, buffered: ByteBuffer, sniffer: ConnectionSniffer) {
        let channel = self.channel
        let logger = self.logger
        // A client that sends its request and half-closes still gets its answer.
        try? context.channel.syncOptions?.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        channel.setup(channel: context.channel, logger: logger).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let asyncChannel):
                context.fireChannelRead(NIOAny(buffered))
                context.fireChannelReadComplete()
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                Task { await channel.handle(value: asyncChannel, logger: logger) }
            case .failure(let error):
                logger.warning("cannot serve HTTP on a connection", metadata: ["error": "\(error)"])
                context.close(promise: nil)
            }
        }
    }

    // MARK: Routes

    static func router(
        broker: Broker, password: ServerPassword, storePath: String?, client: SelfClient, history: ThroughputHistory
    ) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.get("/healthz") { _, _ in Self.text("ok\n") }
        router.get("/") { _, _ in Self.asset(DashboardAssets.html, type: "text/html; charset=utf-8") }
        router.get("/dashboard.js") { _, _ in Self.asset(DashboardAssets.javascript, type: "text/javascript; charset=utf-8") }
        router.get("/dashboard.css") { _, _ in Self.asset(DashboardAssets.css, type: "text/css; charset=utf-8") }
        router.get("/readyz") { _, _ -> Response in
            if let reason = broker.storageFull {
                return Self.error(.serviceUnavailable, "not ready: the store's disk is full (\(reason)); free space where the server keeps its store")
            }
            return Self.text("ready\n")
        }
        let api = router.group().add(middleware: BearerToken(password: password))
        api.get("/metrics") { _, _ -> Response in
            let text = PrometheusText.render(broker.report(), storageFull: broker.storageFull != nil, storeBytes: Self.storeBytes(storePath))
                + broker.metrics.prometheusText()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        api.get("/api/v1/status") { _, _ in try Self.json(broker.report()) }
        api.get("/api/v1/jobs") { _, _ in try Self.json(broker.report().jobs) }
        api.get("/api/v1/jobs/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let job = broker.report().jobs.first(where: { $0.jobID.rawValue == id }) else {
                return Self.error(.notFound, "there is no job '\(id)' on this server: GET /api/v1/jobs lists them")
            }
            return try Self.json(job)
        }
        // The server's report once a second, as server-sent events, while the client listens.
        api.get("/api/v1/events") { _, _ -> Response in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    // What came before: `[time, tasks finished, dispatch latency, commit
                    // latency]` once a second; then each new sample with the report.
                    let samples = history.all
                    var lastSent = samples.last?.first.flatMap { $0 } ?? 0
                    let past = try encoder.encode(samples)
                    try await writer.write(ByteBuffer(string: "event: history\ndata: \(String(decoding: past, as: UTF8.self))\n\n"))
                    while !Task.isCancelled {
                        let data = try encoder.encode(broker.report())
                        var events = "event: status\ndata: \(String(decoding: data, as: UTF8.self))\n\n"
                        // Every sample taken since the last sent, none twice.
                        for sample in history.all where (sample.first.flatMap { $0 } ?? 0) > lastSent {
                            events += "event: sample\ndata: \(String(decoding: try encoder.encode(sample), as: UTF8.self))\n\n"
                            lastSent = sample.first.flatMap { $0 } ?? lastSent
                        }
                        try await writer.write(ByteBuffer(string: events))
                        try await Task.sleep(for: .seconds(1))
                    }
                    try await writer.finish(nil)
                })
        }
        HTTPJobs.add(to: api, client: client)
        addWorkerRoutes(to: api, broker: broker, client: client)
        return router
    }

    /// The dashboard's policy: its own scripts and styles only, no framing, no referrer.
    static let securityHeaders: HTTPFields = [
        .contentSecurityPolicy:
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("X-Frame-Options")!: "DENY",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        .cacheControl: "no-store",
    ]

    /// A dashboard file with its type and the security headers.
    static func asset(_ content: String, type: String) -> Response {
        var headers = securityHeaders
        headers[.contentType] = type
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: content)))
    }

    /// What an error without a message says.
    static func message(for status: HTTPResponse.Status) -> String {
        switch status {
        case .notFound: "no such route: see docs/openapi.yaml for the API"
        case .methodNotAllowed: "this route does not take that method: see docs/openapi.yaml"
        case .contentTooLarge: "the body is too large (a job submit takes up to \(maximumJobBodySize >> 20) MiB, other routes \(maximumBodySize >> 20) MiB): send the inputs in several submits of the same id, each with its firstIndex"
        default: status.reasonPhrase
        }
    }

    /// The store's size on disk: its file and its write-ahead log.
    static func storeBytes(_ path: String?) -> Int? {
        guard let path else { return nil }
        return [path, path + "-wal"].compactMap {
            (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? NSNumber)?.intValue
        }.reduce(0, +)
    }

    static func text(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(value))))
    }

    /// An error as JSON: `{"error": {"status": 404, "message": "…"}}`, the message naming the fix.
    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        struct Body: Encodable {
            struct Detail: Encodable {
                var status: Int
                var message: String
            }
            var error: Detail
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = (try? encoder.encode(Body(error: .init(status: status.code, message: message)))) ?? Data()
        var headers: HTTPFields = [.contentType: "application/json"]
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer realm=\"dockerparallel\"" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(data: body)))
    }
}

/// Lets a request through only with `Authorization: Bearer <the cluster password>` (compared in
/// constant time).
struct BearerToken: RouterMiddleware {
    typealias Context = BasicRequestContext
    let password: ServerPassword
    /// The API token derived from the password (see ``APIToken``).
    let token: ServerPassword

    init(password: ServerPassword) {
        self.password = password
        self.token = ServerPassword(APIToken.derive(from: password))
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            return HTTPFace.error(
                .unauthorized, "this needs the cluster password or its API token as a bearer token: send the header `Authorization: Bearer <password>` (`dockerparallel dashboard --name NAME` prints a link with the token)")
        }
        let token = header.hasPrefix("Bearer ") ? String(header.dropFirst("Bearer ".count)) : ""
        // Both compared in full, in constant time.
        let matchesPassword = password.matches(token)
        let matchesToken = self.token.matches(token)
        guard matchesPassword || matchesToken else {
            return HTTPFace.error(.unauthorized, "the bearer token is neither this cluster's password nor its API token")
        }
        return try await next(request, context)
    }
}

extension HTTPFace {
    /// The workers as `GET /api/v1/workers` shows them.
    struct Workers: Codable {
        /// The worker number last asked for, which a supervisor applies; `nil` when none was.
        var desired: Int?
        /// Worker slots connected now.
        var slots: Int
        /// The connected workers and what each runs.
        var workers: [ServerReport.Worker]
        /// What happens to the number asked for.
        var note: String?
    }

    /// `GET /api/v1/workers` and `PUT /api/v1/workers {"workers": N}`.
    static func addWorkerRoutes(to api: RouterGroup<BasicRequestContext>, broker: Broker, client: SelfClient) {
        api.get("/api/v1/workers") { _, _ -> Response in
            let report = broker.report()
            return try json(Workers(desired: report.desiredWorkers, slots: report.workerSlots, workers: report.workers))
        }
        api.put("/api/v1/workers") { request, _ -> Response in
            struct Wanted: Decodable { var workers: Int }
            var request = request
            let body = try await request.collectBody(upTo: maximumBodySize)
            guard let wanted = try? JSONDecoder().decode(Wanted.self, from: Data(buffer: body)) else {
                throw HTTPError(.badRequest, message: "the body is not a worker number: send JSON {\"workers\": 4}")
            }
            guard case .status(let report) = try await client.request(.setWorkers(count: wanted.workers)) else {
                throw HTTPError(.internalServerError, message: "the broker did not take the worker number")
            }
            let note = "\(wanted.workers) worker(s) asked for: the cluster's supervisor (`dockerparallel supervise --name \(report.jobQueueName)`, or a program's DockerCluster.supervise(followingRequests: true)) starts or stops workers to match within a second; without one, nothing changes"
            return try json(
                Workers(desired: report.desiredWorkers, slots: report.workerSlots, workers: report.workers, note: note), status: .accepted)
        }
    }
}
