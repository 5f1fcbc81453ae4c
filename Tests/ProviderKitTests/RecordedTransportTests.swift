import Foundation
import ProviderKit
import Testing

@Suite struct RecordedTransportTests {
    @Test func answersInRecordedOrderPerRequestAndVerifies() async throws {
        let transport = RecordedTransport([
            .json(.GET, "/a", "1"),
            .json(.GET, "/b", query: nil, "2"),
            .json(.GET, "/a", "3"),
        ])
        #expect(try await transport.send(RESTRequest(.GET, "/b", query: [QueryItem("any", "thing")])).body == Data("2".utf8))
        #expect(try await transport.send(RESTRequest(.GET, "/a")).body == Data("1".utf8))
        #expect(try await transport.send(RESTRequest(.GET, "/a")).body == Data("3".utf8))
        try await transport.verify()
    }

    @Test func anUnexpectedRequestFailsClearlyAndVerifyReportsItEvenIfSwallowed() async throws {
        let transport = RecordedTransport([.json(.GET, "/a", query: [QueryItem("x", "1")], "1")])
        let error = await #expect(throws: RecordedTransport.Mismatch.self) {
            try await transport.send(RESTRequest(.GET, "/a", query: [QueryItem("x", "2")]))
        }
        #expect(error?.description.contains("unexpected request GET /a?x=2") == true)
        #expect(error?.description.contains("GET /a?x=1") == true)
        let verified = await #expect(throws: RecordedTransport.Mismatch.self) { try await transport.verify() }
        #expect(verified?.description.contains("unexpected request GET /a?x=2") == true)
        #expect(verified?.description.contains("unused exchange GET /a?x=1") == true)
    }

    @Test func anUnusedExchangeFailsVerification() async throws {
        let transport = RecordedTransport([.json(.GET, "/a", "1"), .json(.DELETE, "/a", "")])
        _ = try await transport.send(RESTRequest(.GET, "/a"))
        let error = await #expect(throws: RecordedTransport.Mismatch.self) { try await transport.verify() }
        #expect(error?.description == "unused exchange DELETE /a?")
    }
}
