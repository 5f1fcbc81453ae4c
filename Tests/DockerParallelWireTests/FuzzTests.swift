import DockerParallelCore
@testable import DockerParallelWire
import NIOCore
import NIOFoundationCompat
import Foundation
import Testing

/// A small seeded generator, so a failing case can be reproduced from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite(.timeLimit(.minutes(2))) struct MessageFuzzTests {
    /// Valid messages of every kind, the seeds the mutations start from.
    static let seeds: [ClientMessage] = [
        .hello(Hello(role: .worker, password: "secret", name: "w", slots: 2, taskNames: ["Square"])),
        .submit(jobID: "job", options: JobOptions(maxAttempts: 2, failureRetries: 1, timeout: .milliseconds(5000)), tasks: [
            TaskSpec(index: 0, kind: .command(argv: ["echo", "{}"], environment: ["A": "b"])),
            TaskSpec(index: 1, kind: .swift(name: "Square"), input: Data("12".utf8)),
        ]),
        .credit(count: 3),
        .heartbeat(leaseIDs: [1, 2, 3]),
        .complete(leaseID: 9, jobID: "job", index: 1, report: AttemptReport(succeeded: true, exitCode: 0, output: Data("144".utf8))),
        .completed([Completion(leaseID: 3, jobID: "job", index: 0, report: AttemptReport(succeeded: false, exitCode: 2, error: "no"))], credit: 4),
        .release(leaseIDs: [4]),
        .watch(jobID: "job"),
        .run(jobID: "run", options: JobOptions(), tasks: [TaskSpec(index: 0, kind: .swift(name: "Square"), input: Data("3".utf8))]),
        .cancel(jobID: "job", index: nil),
        .forget(jobID: "job"),
        .status,
    ]

    /// Decoding arbitrary bytes either yields a message or throws a protocol violation; it never
    /// crashes. 100,000 cases: random bytes, and valid messages with bytes flipped, cut, or spliced.
    @Test func theDecoderSurvivesAHundredThousandHostileInputs() throws {
        var generator = SplitMix64(state: 0xD0C4_E2FA_2A11E1)
        let encoded = try Self.seeds.map { Array(try MessageCoding.encode($0).readableBytesView) }
        var decoded = 0
        var rejected = 0
        for _ in 0..<100_000 {
            var bytes: [UInt8]
            switch generator.next() % 4 {
            case 0:
                bytes = (0..<Int(generator.next() % 64)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            case 1:
                bytes = encoded.randomElement(using: &generator)!
                for _ in 0...(generator.next() % 4) {
                    let at = Int(generator.next() % UInt64(bytes.count))
                    bytes[at] = UInt8.random(in: 0...255, using: &generator)
                }
            case 2:
                bytes = encoded.randomElement(using: &generator)!
                bytes = Array(bytes.prefix(Int(generator.next() % UInt64(bytes.count))))
            default:
                let a = encoded.randomElement(using: &generator)!
                let b = encoded.randomElement(using: &generator)!
                bytes = Array(a.prefix(Int(generator.next() % UInt64(a.count)))) + Array(b.suffix(Int(generator.next() % UInt64(b.count))))
            }
            do {
                _ = try MessageCoding.decode(ClientMessage.self, from: Data(bytes))
                decoded += 1
            } catch let error as DockerParallelError {
                #expect(error.code == .protocolViolation)
                rejected += 1
            }
        }
        #expect(decoded + rejected == 100_000)
        #expect(rejected > 50_000)
    }
}
