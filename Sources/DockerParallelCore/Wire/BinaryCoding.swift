import Foundation

/// Appends the compact binary layout of hot-path messages: unsigned LEB128 varints, zigzag for
/// signed integers, little-endian IEEE doubles, and byte strings prefixed by their varint length.
public struct WireWriter {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8] = []

    /// Creates an empty writer.
    public init(capacity: Int = 64) {
        bytes.reserveCapacity(capacity)
    }

    mutating func byte(_ value: UInt8) {
        bytes.append(value)
    }

    mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    mutating func int(_ value: Int) {
        let wide = Int64(value)
        varint(UInt64(bitPattern: (wide << 1) ^ (wide >> 63)))
    }

    mutating func double(_ value: Double) {
        var bits = value.bitPattern.littleEndian
        withUnsafeBytes(of: &bits) { bytes.append(contentsOf: $0) }
    }

    mutating func data(_ value: Data) {
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func optional<Value>(_ value: Value?, _ write: (inout WireWriter, Value) -> Void) {
        guard let value else { return byte(0) }
        byte(1)
        write(&self, value)
    }

    mutating func array<Element>(_ values: [Element], _ write: (inout WireWriter, Element) -> Void) {
        varint(UInt64(values.count))
        for value in values { write(&self, value) }
    }
}

/// Reads what ``WireWriter`` wrote, checking every length against the bytes left, so that hostile
/// input is an error and never a crash or a huge allocation.
public struct WireReader {
    private let buffer: UnsafeRawBufferPointer
    private var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
    }

    var isAtEnd: Bool { offset == buffer.count }

    static func malformed(_ what: String) -> DockerParallelError {
        DockerParallelError(.protocolViolation, "malformed binary message: \(what)")
    }

    mutating func byte() throws -> UInt8 {
        guard offset < buffer.count else { throw Self.malformed("it ends early") }
        defer { offset += 1 }
        return buffer[offset]
    }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = try byte()
            guard shift < 64 else { throw Self.malformed("a varint is too long") }
            value |= UInt64(next & 0x7F) << shift
            if next < 0x80 { return value }
            shift += 7
        }
    }

    mutating func int() throws -> Int {
        let raw = try varint()
        let decoded = Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
        guard let value = Int(exactly: decoded) else { throw Self.malformed("an integer is out of range") }
        return value
    }

    mutating func int32() throws -> Int32 {
        guard let value = Int32(exactly: try int()) else { throw Self.malformed("an exit code is out of range") }
        return value
    }

    mutating func double() throws -> Double {
        guard buffer.count - offset >= 8 else { throw Self.malformed("it ends early") }
        var bits: UInt64 = 0
        withUnsafeMutableBytes(of: &bits) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + 8])) }
        offset += 8
        return Double(bitPattern: UInt64(littleEndian: bits))
    }

    /// A count of elements, each at least one byte long.
    mutating func count() throws -> Int {
        let count = try varint()
        guard count <= UInt64(buffer.count - offset) else { throw Self.malformed("a count exceeds the bytes left") }
        return Int(count)
    }

    private mutating func slice() throws -> UnsafeRawBufferPointer {
        let length = try count()
        defer { offset += length }
        return UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + length])
    }

    mutating func data() throws -> Data {
        Data(try slice())
    }

    mutating func string() throws -> String {
        let bytes = try slice()
        // Foundation's initializer, not String(validating:): that one needs macOS 15.
        guard let string = String(bytes: bytes, encoding: .utf8) else {
            throw Self.malformed("a string is not UTF-8")
        }
        return string
    }

    mutating func bool() throws -> Bool {
        switch try byte() {
        case 0: return false
        case 1: return true
        default: throw Self.malformed("a flag is neither 0 nor 1")
        }
    }

    mutating func optional<Value>(_ read: (inout WireReader) throws -> Value) throws -> Value? {
        try bool() ? read(&self) : nil
    }

    mutating func array<Element>(_ read: (inout WireReader) throws -> Element) throws -> [Element] {
        let count = try count()
        var values: [Element] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try read(&self)) }
        return values
    }
}

/// A message with a compact binary layout for its frequent cases; the others stay JSON.
///
/// A binary body starts with its case's tag byte; a JSON body starts with `{` (0x7B), which no
/// tag uses, so a reader tells them apart by the first byte.
public protocol WireMessage: Codable {
    /// Writes the binary layout, tag first; returns `false` for a case that is sent as JSON.
    func encodeBinary(into writer: inout WireWriter) -> Bool
    /// Reads the case with this tag.
    static func decodeBinary(tag: UInt8, from reader: inout WireReader) throws -> Self
}

// MARK: Values

extension WireWriter {
    mutating func taskSpec(_ spec: TaskSpec) {
        int(spec.index)
        switch spec.kind {
        case .command(let argv, let environment):
            byte(0)
            array(argv) { $0.string($1) }
            array(environment.sorted { $0.key < $1.key }) {
                $0.string($1.key)
                $0.string($1.value)
            }
        case .swift(let name):
            byte(1)
            string(name)
        case .swiftChunk(let name):
            byte(2)
            string(name)
        }
        data(spec.input)
    }

    mutating func taskKind(_ kind: TaskSpec.Kind) {
        taskSpec(TaskSpec(index: 0, kind: kind))
    }

    mutating func options(_ options: JobOptions) {
        int(options.maxAttempts)
        int(options.failureRetries)
        optional(options.timeout) { $0.double($1) }
    }

    mutating func report(_ report: AttemptReport) {
        byte((report.succeeded ? 1 : 0) | (report.permanent ? 2 : 0))
        optional(report.exitCode) { $0.int(Int($1)) }
        data(report.output)
        data(report.errorOutput)
        optional(report.error) { $0.string($1) }
    }

    mutating func result(_ result: TaskResult) {
        string(result.jobID)
        int(result.index)
        byte(result.status.wireTag)
        int(result.attempts)
        optional(result.exitCode) { $0.int(Int($1)) }
        data(result.output)
        data(result.errorOutput)
        optional(result.error) { $0.string($1) }
    }

    mutating func status(_ status: JobStatus) {
        string(status.jobID)
        for count in [status.total, status.queued, status.running, status.succeeded, status.failed, status.cancelled] {
            int(count)
        }
    }

    mutating func assignment(_ assignment: Assignment) {
        varint(assignment.leaseID)
        string(assignment.jobID)
        taskSpec(assignment.task)
        int(assignment.attempt)
        optional(assignment.timeout) { $0.double($1) }
    }

    mutating func completion(_ completion: Completion) {
        varint(completion.leaseID)
        string(completion.jobID)
        int(completion.index)
        report(completion.report)
    }
}

extension WireReader {
    mutating func taskSpec() throws -> TaskSpec {
        let index = try int()
        let kind: TaskSpec.Kind
        switch try byte() {
        case 0:
            let argv = try array { try $0.string() }
            let pairs = try array { (try $0.string(), try $0.string()) }
            kind = .command(argv: argv, environment: Dictionary(pairs, uniquingKeysWith: { _, last in last }))
        case 1:
            kind = .swift(name: try string())
        case 2:
            kind = .swiftChunk(name: try string())
        case let tag:
            throw Self.malformed("unknown task kind \(tag)")
        }
        return TaskSpec(index: index, kind: kind, input: try data())
    }

    mutating func options() throws -> JobOptions {
        JobOptions(maxAttempts: try int(), failureRetries: try int(), timeout: try optional { try $0.double() })
    }

    mutating func report() throws -> AttemptReport {
        let flags = try byte()
        guard flags < 4 else { throw Self.malformed("unknown report flags \(flags)") }
        return AttemptReport(
            succeeded: flags & 1 != 0, permanent: flags & 2 != 0, exitCode: try optional { try $0.int32() },
            output: try data(), errorOutput: try data(), error: try optional { try $0.string() })
    }

    mutating func result() throws -> TaskResult {
        let jobID = try string()
        let index = try int()
        guard let status = TaskStatus(wireTag: try byte()) else { throw Self.malformed("unknown task status") }
        return TaskResult(
            jobID: jobID, index: index, status: status, attempts: try int(), exitCode: try optional { try $0.int32() },
            output: try data(), errorOutput: try data(), error: try optional { try $0.string() })
    }

    mutating func status() throws -> JobStatus {
        var status = JobStatus(jobID: try string())
        status.total = try int()
        status.queued = try int()
        status.running = try int()
        status.succeeded = try int()
        status.failed = try int()
        status.cancelled = try int()
        return status
    }

    mutating func assignment() throws -> Assignment {
        Assignment(
            leaseID: try varint(), jobID: try string(), task: try taskSpec(), attempt: try int(),
            timeout: try optional { try $0.double() })
    }

    mutating func completion() throws -> Completion {
        Completion(leaseID: try varint(), jobID: try string(), index: try int(), report: try report())
    }
}

extension TaskStatus {
    var wireTag: UInt8 {
        switch self {
        case .succeeded: 0
        case .failed: 1
        case .cancelled: 2
        }
    }

    init?(wireTag: UInt8) {
        switch wireTag {
        case 0: self = .succeeded
        case 1: self = .failed
        case 2: self = .cancelled
        default: return nil
        }
    }
}

// MARK: Messages

extension ClientMessage: WireMessage {
    private enum Tag: UInt8 {
        case credit = 1, complete, completed, submit, heartbeat, release, run
    }

    public func encodeBinary(into writer: inout WireWriter) -> Bool {
        switch self {
        case .credit(let count):
            writer.byte(Tag.credit.rawValue)
            writer.int(count)
        case .complete(let leaseID, let jobID, let index, let report):
            writer.byte(Tag.complete.rawValue)
            writer.completion(Completion(leaseID: leaseID, jobID: jobID, index: index, report: report))
        case .completed(let completions, let credit):
            writer.byte(Tag.completed.rawValue)
            writer.array(completions) { $0.completion($1) }
            writer.int(credit)
        case .submit(let jobID, let options, let tasks):
            writer.byte(Tag.submit.rawValue)
            writer.string(jobID)
            writer.options(options)
            writer.array(tasks) { $0.taskSpec($1) }
        case .run(let jobID, let options, let tasks):
            writer.byte(Tag.run.rawValue)
            writer.string(jobID)
            writer.options(options)
            writer.array(tasks) { $0.taskSpec($1) }
        case .heartbeat(let leaseIDs):
            writer.byte(Tag.heartbeat.rawValue)
            writer.array(leaseIDs) { $0.varint($1) }
        case .release(let leaseIDs):
            writer.byte(Tag.release.rawValue)
            writer.array(leaseIDs) { $0.varint($1) }
        default:
            return false
        }
        return true
    }

    public static func decodeBinary(tag: UInt8, from reader: inout WireReader) throws -> ClientMessage {
        switch Tag(rawValue: tag) {
        case .credit?:
            return .credit(count: try reader.int())
        case .complete?:
            let completion = try reader.completion()
            return .complete(leaseID: completion.leaseID, jobID: completion.jobID, index: completion.index, report: completion.report)
        case .completed?:
            return .completed(try reader.array { try $0.completion() }, credit: try reader.int())
        case .submit?:
            return .submit(jobID: try reader.string(), options: try reader.options(), tasks: try reader.array { try $0.taskSpec() })
        case .run?:
            return .run(jobID: try reader.string(), options: try reader.options(), tasks: try reader.array { try $0.taskSpec() })
        case .heartbeat?:
            return .heartbeat(leaseIDs: try reader.array { try $0.varint() })
        case .release?:
            return .release(leaseIDs: try reader.array { try $0.varint() })
        case nil:
            throw WireReader.malformed("unknown client message tag \(tag)")
        }
    }
}

extension ServerMessage: WireMessage {
    private enum Tag: UInt8 {
        case assign = 0x81, results, job, submitted, abort
    }

    public func encodeBinary(into writer: inout WireWriter) -> Bool {
        switch self {
        case .assign(let assignments):
            writer.byte(Tag.assign.rawValue)
            writer.array(assignments) { $0.assignment($1) }
        case .results(let results):
            writer.byte(Tag.results.rawValue)
            writer.array(results) { $0.result($1) }
        case .job(let status):
            writer.byte(Tag.job.rawValue)
            writer.status(status)
        case .submitted(let accepted, let duplicates):
            writer.byte(Tag.submitted.rawValue)
            writer.int(accepted)
            writer.int(duplicates)
        case .abort(let leaseIDs):
            writer.byte(Tag.abort.rawValue)
            writer.array(leaseIDs) { $0.varint($1) }
        default:
            return false
        }
        return true
    }

    public static func decodeBinary(tag: UInt8, from reader: inout WireReader) throws -> ServerMessage {
        switch Tag(rawValue: tag) {
        case .assign?: return .assign(try reader.array { try $0.assignment() })
        case .results?: return .results(try reader.array { try $0.result() })
        case .job?: return .job(try reader.status())
        case .submitted?: return .submitted(accepted: try reader.int(), duplicates: try reader.int())
        case .abort?: return .abort(leaseIDs: try reader.array { try $0.varint() })
        case nil: throw WireReader.malformed("unknown server message tag \(tag)")
        }
    }
}

extension MessageCoding {
    /// Encodes a message: its binary layout when it has one, JSON otherwise.
    public static func encode<Message: WireMessage>(_ message: Message) throws -> Data {
        var writer = WireWriter()
        if message.encodeBinary(into: &writer) { return Data(writer.bytes) }
        return try JSONEncoder().encode(message)
    }

    /// Decodes a message written by ``encode(_:)-(WireMessage)``.
    /// - Throws: `.protocolViolation` saying what was wrong.
    public static func decode<Message: WireMessage>(_ type: Message.Type, from body: Data) throws -> Message {
        guard let first = body.first, first != UInt8(ascii: "{") else {
            do {
                return try JSONDecoder().decode(Message.self, from: body)
            } catch {
                throw DockerParallelError(.protocolViolation, "malformed \(Message.self) (\(body.count) bytes): \(error)")
            }
        }
        return try body.withUnsafeBytes { buffer in
            var reader = WireReader(buffer)
            _ = try reader.byte()
            let message = try Message.decodeBinary(tag: first, from: &reader)
            guard reader.isAtEnd else { throw WireReader.malformed("\(Message.self) has bytes after its end") }
            return message
        }
    }
}

extension TaskSpec.Kind {
    /// The kind's binary layout, as the store keeps it.
    public var binaryEncoded: Data {
        var writer = WireWriter()
        writer.taskKind(self)
        return Data(writer.bytes)
    }

    /// Reads a kind the store kept: binary, or JSON as earlier versions wrote it.
    public static func decodeStored(_ data: Data) throws -> TaskSpec.Kind {
        if data.first == UInt8(ascii: "{") { return try JSONDecoder().decode(TaskSpec.Kind.self, from: data) }
        return try data.withUnsafeBytes { buffer in
            var reader = WireReader(buffer)
            let kind = try reader.taskSpec().kind
            return kind
        }
    }
}
