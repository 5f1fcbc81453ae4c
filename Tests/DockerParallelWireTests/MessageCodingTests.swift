import DockerParallelCore
@testable import DockerParallelWire
import Foundation
import NIOCore
import NIOFoundationCompat
import Testing

extension MessageCoding {
    /// Decodes bytes a test wrote by hand.
    static func decode<Message: WireMessage>(_ type: Message.Type, from bytes: Data) throws -> Message {
        try decode(type, from: ByteBuffer(data: bytes))
    }
}

@Suite(.timeLimit(.minutes(2))) struct MessageCodingTests {
    @Test func messagesSurviveTheWire() throws {
        let message = ClientMessage.submit(jobID: "j", options: JobOptions(timeout: .milliseconds(3000)), tasks: [
            TaskSpec(index: 4, kind: .swift(name: "Square"), input: Data([0, 1, 255])),
        ])
        #expect(try MessageCoding.decode(ClientMessage.self, from: MessageCoding.encode(message)) == message)
        #expect(throws: DockerParallelError.self) { try MessageCoding.decode(ClientMessage.self, from: Data("{\"nope\":1}".utf8)) }
    }

    /// Every case with a binary layout comes back equal, with edge values; the others stay JSON.
    @Test func everyMessageSurvivesItsBinaryLayout() throws {
        let report = AttemptReport(succeeded: false, permanent: true, exitCode: -7, output: Data(), errorOutput: Data("é\n".utf8), error: "boom")
        let clients: [ClientMessage] = [
            .credit(count: -1),
            .credit(count: Int.max),
            .complete(leaseID: LeaseID(UInt64.max), jobID: "", index: 0, report: report),
            .completed([Completion(leaseID: 1, jobID: "j", index: Int.min, report: AttemptReport(succeeded: true))], credit: 3),
            .completed([], credit: 0),
            .submit(jobID: "j", options: JobOptions(maxAttempts: 5, failureRetries: 2, timeout: .milliseconds(250)), tasks: [
                TaskSpec(index: 0, kind: .command(argv: ["sh", "-c", "echo {}"], environment: ["B": "2", "A": ""])),
                TaskSpec(index: 1, kind: .swift(name: "Ünïcode"), input: Data(repeating: 0xFF, count: 300)),
                TaskSpec(index: 2, kind: .swiftChunk(name: "Square"), input: TaskChunk.pack([Data("1".utf8), Data()])),
            ]),
            .run(jobID: "r", options: JobOptions(), tasks: [TaskSpec(index: 7, kind: .swift(name: "Square"), input: Data("7".utf8))]),
            .run(jobID: "empty", options: JobOptions(maxAttempts: 1), tasks: []),
            .heartbeat(leaseIDs: [0, 127, 128, LeaseID(UInt64.max)]),
            .release(leaseIDs: []),
        ]
        for message in clients {
            let body = try MessageCoding.encode(message)
            #expect(body.readableBytesView.first != UInt8(ascii: "{"), "\(message) is not binary")
            #expect(try MessageCoding.decode(ClientMessage.self, from: body) == message)
        }
        var status = JobStatus(jobID: "j")
        (status.total, status.queued, status.running, status.succeeded, status.failed, status.cancelled) = (6, 1, 1, 2, 1, 1)
        let servers: [ServerMessage] = [
            .assign([Assignment(leaseID: 9, jobID: "j", task: TaskSpec(index: 3, kind: .swift(name: "S"), input: Data("3".utf8)), attempt: 2, timeout: nil)]),
            .results([TaskResult(jobID: "j", index: 2, status: .cancelled, attempts: 0, exitCode: nil, output: Data([0]), error: nil),
                      TaskResult(jobID: "j", index: 3, status: .failed, attempts: 4, exitCode: Int32.min, error: "lost")]),
            .job(status),
            .submitted(accepted: 4096, duplicates: 0),
            .abort(leaseIDs: [5]),
        ]
        for message in servers {
            let body = try MessageCoding.encode(message)
            #expect(body.readableBytesView.first != UInt8(ascii: "{"), "\(message) is not binary")
            #expect(try MessageCoding.decode(ServerMessage.self, from: body) == message)
        }
        for message in [ServerMessage.done, .welcome(leaseDuration: 30), .error(code: .invalidArgument, message: "no")] {
            let body = try MessageCoding.encode(message)
            #expect(body.readableBytesView.first == UInt8(ascii: "{"))
            #expect(try MessageCoding.decode(ServerMessage.self, from: body) == message)
        }
    }

    @Test func chunksKeepTheirPartsAndRefuseBrokenBytes() throws {
        let parts = [Data("1".utf8), Data(), Data(repeating: 7, count: 200), Data("\"ü\"".utf8)]
        #expect(try TaskChunk.unpack(TaskChunk.pack(parts)) == parts)
        #expect(try TaskChunk.unpack(TaskChunk.pack([])) == [])
        let packed = Array(TaskChunk.pack(parts))
        for cut in 0..<packed.count {
            #expect(throws: DockerParallelError.self) { try TaskChunk.unpack(Data(packed.prefix(cut))) }
        }
        let error = #expect(throws: DockerParallelError.self) { try TaskChunk.unpack(Data(packed + [0])) }
        #expect(error?.code == .codingFailed)
        #expect(error?.message.contains("chunk") == true)
    }

    /// Truncated, padded or retagged binary bodies are protocol violations, never crashes.
    @Test func brokenBinaryBodiesAreRefused() throws {
        let body = Array(try MessageCoding.encode(ServerMessage.results([TaskResult(jobID: "job", index: 1, status: .succeeded, attempts: 1, output: Data("1".utf8))])).readableBytesView)
        for cut in 0..<body.count {
            #expect(throws: DockerParallelError.self) { try MessageCoding.decode(ServerMessage.self, from: Data(body.prefix(cut))) }
        }
        #expect(throws: DockerParallelError.self) { try MessageCoding.decode(ServerMessage.self, from: Data(body + [0])) }
        #expect(throws: DockerParallelError.self) { try MessageCoding.decode(ServerMessage.self, from: Data([0x80] + body.dropFirst())) }
        // A job id that is not UTF-8 (0xFF), in a job status frame, is refused; the same frame
        // with a valid id is read.
        #expect(throws: DockerParallelError.self) { try MessageCoding.decode(ServerMessage.self, from: Data([0x83, 1, 0xFF, 0, 0, 0, 0, 0, 0])) }
        #expect(try MessageCoding.decode(ServerMessage.self, from: Data([0x83, 1, 0x6A, 0, 0, 0, 0, 0, 0])) == .job(JobStatus(jobID: "j")))
        // A count far beyond the bytes left is refused before anything is allocated.
        #expect(throws: DockerParallelError.self) { try MessageCoding.decode(ClientMessage.self, from: Data([5, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])) }
    }
}
