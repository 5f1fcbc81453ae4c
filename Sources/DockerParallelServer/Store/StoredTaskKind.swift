import DockerParallelCore
import DockerParallelWire
import Foundation

/// How the store keeps a task's kind: a layout of its own, so that the wire's can change without
/// a store migration.
///
/// - a Swift task: `0x01`, then its name in UTF-8;
/// - a chunk of Swift tasks: `0x02`, then its name in UTF-8;
/// - a command: `0x03`, then the argument count and each argument, then the environment's count
///   and each name and value, every count and length a big-endian `UInt32`, strings in UTF-8;
/// - a persistent process's task: `0x04`, then its program as a command's.
///
/// Rows that earlier stores kept as JSON (they start with `{`) or in the wire's layout of
/// protocol 2 (they start with `0x00`) are still read.
enum StoredTaskKind {
    private static let swiftTag: UInt8 = 0x01
    private static let chunkTag: UInt8 = 0x02
    private static let commandTag: UInt8 = 0x03
    private static let processTag: UInt8 = 0x04

    /// The kind's stored bytes.
    static func encode(_ kind: TaskSpec.Kind) -> Data {
        switch kind {
        case .swift(let name):
            return Data([swiftTag]) + Data(name.utf8)
        case .swiftChunk(let name):
            return Data([chunkTag]) + Data(name.utf8)
        case .command(let argv, let environment):
            return program(commandTag, argv, environment)
        case .process(let argv, let environment):
            return program(processTag, argv, environment)
        }
    }

    private static func program(_ tag: UInt8, _ argv: [String], _ environment: [String: String]) -> Data {
        var data = Data([tag])
        func append(_ count: Int) {
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: count).bigEndian) { data.append(contentsOf: $0) }
        }
        func append(_ string: String) {
            append(string.utf8.count)
            data.append(contentsOf: string.utf8)
        }
        append(argv.count)
        for argument in argv { append(argument) }
        append(environment.count)
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) {
            append(name)
            append(value)
        }
        return data
    }

    /// Reads stored bytes back.
    /// - Throws: `.codingFailed` when they are no kind a store wrote.
    static func decode(_ data: Data) throws -> TaskSpec.Kind {
        guard let tag = data.first else { throw malformed("it is empty") }
        let name = { String(decoding: data.dropFirst(), as: UTF8.self) }
        switch tag {
        case swiftTag: return .swift(name: name())
        case chunkTag: return .swiftChunk(name: name())
        case commandTag:
            let (argv, environment) = try program(data)
            return .command(argv: argv, environment: environment)
        case processTag:
            let (argv, environment) = try program(data)
            return .process(argv: argv, environment: environment)
        case UInt8(ascii: "{"): return try JSONDecoder().decode(TaskSpec.Kind.self, from: data)
        case 0x00: return try TaskSpec.Kind.decodeWireLayout(data)
        default: throw malformed("it starts with an unknown byte \(tag)")
        }
    }

    private static func program(_ data: Data) throws -> (argv: [String], environment: [String: String]) {
        var offset = data.startIndex + 1
        func count() throws -> Int {
            guard data.endIndex - offset >= 4 else { throw malformed("it ends early") }
            let value = data[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            offset += 4
            return value
        }
        func string() throws -> String {
            let length = try count()
            guard data.endIndex - offset >= length else { throw malformed("a string runs past its end") }
            defer { offset += length }
            return String(decoding: data[offset..<offset + length], as: UTF8.self)
        }
        var argv: [String] = []
        for _ in 0..<(try count()) { argv.append(try string()) }
        var environment: [String: String] = [:]
        for _ in 0..<(try count()) {
            let name = try string()
            environment[name] = try string()
        }
        guard offset == data.endIndex else { throw malformed("bytes follow its end") }
        return (argv, environment)
    }

    private static func malformed(_ what: String) -> DockerParallelError {
        DockerParallelError(.codingFailed, "a stored task's kind cannot be read: \(what)")
    }
}
