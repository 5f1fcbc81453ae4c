import Foundation
import NIOHTTP1
import ProviderKit
import Testing

@Suite struct RESTClientTests {
    struct Item: Codable, Equatable { var name: String }

    /// Records the delays the client waits instead of waiting.
    actor Sleeps {
        private(set) var all: [Duration] = []
        func record(_ delay: Duration) { all.append(delay) }
    }

    func client(_ transport: RecordedTransport, retry: RetryPolicy = RetryPolicy(maxAttempts: 3), sleeps: Sleeps = Sleeps()) -> RESTClient {
        RESTClient(
            transport: transport, configuration: .init(platform: "the Test API", pathPrefix: "/v1", retry: retry),
            random: { 0.5 }, sleep: { await sleeps.record($0) })
    }

    @Test func aThrottledRequestIsRetriedThenSucceeds() async throws {
        let transport = RecordedTransport([
            .json(.GET, "/v1/items", query: [QueryItem("all", "true")], status: 429, #"{"message":"slow down"}"#),
            .json(.GET, "/v1/items", query: [QueryItem("all", "true")], status: 503, #"{"message":"busy"}"#),
            .json(.GET, "/v1/items", query: [QueryItem("all", "true")], #"[{"name":"a"},{"name":"b"}]"#),
        ])
        let sleeps = Sleeps()
        let items = try await client(transport, sleeps: sleeps).json([Item].self, .GET, "/items", query: [QueryItem("all", "true")])
        #expect(items == [Item(name: "a"), Item(name: "b")])
        // Equal jitter at 0.5: three quarters of 100 ms, then of 200 ms.
        #expect(await sleeps.all == [.milliseconds(75), .milliseconds(150)])
        try await transport.verify()
    }

    @Test func anErrorCarriesThePlatformsStatusAndMessage() async throws {
        let transport = RecordedTransport([
            .json(.GET, "/v1/items/x", status: 404, #"{"message":"No such item: x\n"}"#),
        ])
        let error = await #expect(throws: RESTError.self) { try await client(transport).data(.GET, "/items/x") }
        #expect(error?.code == .unexpectedStatus)
        #expect(error?.status == 404)
        #expect(error?.message == "No such item: x")
        #expect(error?.description == "the Test API answered 404: No such item: x")
        try await transport.verify()
    }

    @Test func aServerErrorOfANonIdempotentRequestIsNotRetried() async throws {
        let transport = RecordedTransport([.json(.POST, "/v1/items", status: 500, #"{"message":"boom"}"#)])
        let error = await #expect(throws: RESTError.self) { try await client(transport).data(.POST, "/items", json: Item(name: "a")) }
        #expect(error?.status == 500)
        #expect(error?.message == "boom")
        try await transport.verify()
    }

    @Test func retriesStopAtTheMaximumAndTheLastAnswerIsReported() async throws {
        let transport = RecordedTransport(Array(repeating: .json(.GET, "/v1/items", status: 503, #"{"message":"still busy"}"#), count: 3))
        let sleeps = Sleeps()
        let error = await #expect(throws: RESTError.self) { try await client(transport, sleeps: sleeps).data(.GET, "/items") }
        #expect(error?.status == 503)
        #expect(error?.message == "still busy")
        #expect(await sleeps.all.count == 2)
        try await transport.verify()
    }

    @Test func aBodyThatIsNotJSONIsReportedAsText() async throws {
        let transport = RecordedTransport([.init(.GET, "/v1/items", status: 400, body: Data("bad filter\n".utf8))])
        let error = await #expect(throws: RESTError.self) { try await client(transport).data(.GET, "/items") }
        #expect(error?.message == "bad filter")
    }

    @Test func aJSONBodyIsSentWithItsContentType() async throws {
        let transport = RecordedTransport([
            .json(.POST, "/v1/items", #"{"name":"made"}"#) { (request: RESTRequest) throws in
                #expect(request.headers.first(name: "Content-Type") == "application/json")
                #expect(try JSONDecoder().decode(Item.self, from: request.body ?? Data()) == Item(name: "new"))
            },
        ])
        let made = try await client(transport).json(Item.self, .POST, "/items", json: Item(name: "new"))
        #expect(made == Item(name: "made"))
        try await transport.verify()
    }

    @Test func anAnswerOfTheWrongShapeNamesThePlatformThePathAndTheField() async throws {
        let transport = RecordedTransport([.json(.GET, "/v1/items", #"[{"name":"a"},{"name":3}]"#)])
        let error = await #expect(throws: RESTError.self) { try await client(transport).json([Item].self, .GET, "/items") }
        #expect(error?.code == .decodingFailed)
        #expect(error?.description.contains("the Test API's answer to GET /items could not be read: [1].name") == true, "\(String(describing: error))")
    }

    /// A transport that fails to connect a given number of times, then answers.
    actor FlakyTransport: HTTPTransport {
        var failures: Int
        var calls = 0
        init(failures: Int) { self.failures = failures }
        func send(_ request: RESTRequest) async throws -> RESTResponse {
            calls += 1
            if calls <= failures {
                throw RESTError(.connectionFailed, platform: "test", request: request.summary, message: "Connection refused")
            }
            return RESTResponse(status: 200, body: Data("{}".utf8))
        }
    }

    @Test func lostConnectionsAreRetriedOnlyForIdempotentRequests() async throws {
        let flaky = FlakyTransport(failures: 2)
        let rest = RESTClient(
            transport: flaky, configuration: .init(platform: "the Test API", retry: RetryPolicy(maxAttempts: 3)),
            sleep: { _ in })
        try await rest.data(.GET, "/ping")
        #expect(await flaky.calls == 3)

        let once = FlakyTransport(failures: 1)
        let post = RESTClient(transport: once, configuration: .init(platform: "the Test API"), sleep: { _ in })
        let error = await #expect(throws: RESTError.self) { try await post.data(.POST, "/items") }
        #expect(error?.code == .connectionFailed)
        #expect(error?.message == "Connection refused")
        #expect(await once.calls == 1)
    }

    @Test func theQueryIsPercentEncodedPlusSignsIncluded() throws {
        let items = [QueryItem("filters", #"{"label":["a=b+c"]}"#), QueryItem("t", "1 2"), QueryItem("t", "3")]
        let query = RESTRequest(.GET, "/x", query: items).encodedQuery
        #expect(query.hasPrefix("?filters=%7B%22label%22"))
        #expect(!query.contains("+") && !query.contains(" ") && query.contains("%2B"))
        let decoded = try #require(URLComponents(string: "http://host/x" + query)?.queryItems)
        #expect(decoded.map { QueryItem($0.name, $0.value ?? "") } == items)
        #expect(RESTRequest(.GET, "/x").encodedQuery == "")
    }
}
