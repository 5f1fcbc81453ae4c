import DockerParallelCore
import DockerParallelWire
import Foundation

/// How the store keeps a task's kind: a layout of its own, so that the wire's can change without
/// a store migration.
///
/// - a Swift task: `0x01`, then its name in UTF-8;
/// - a chunk of Swift tasks: `0x02`, then its name in UTF-8;
/// - a command: the kind as JSON (it starts with `{`), as the first stores kept every kind.
///
/// Rows that stores of wire protocol 2 kept in the wire's layout (they start with `0x00`) are
/// still read.
enum StoredTaskKind {
    private static let swiftTag: UInt8 = 0x01
    private static let chunkTag: UInt8 = 0x02

    /// The kind's stored bytes.
    static func encode(_ kind: TaskSpec.Kind) throws -> Data {
        switch kind {
        case .swift(let name): Data([swiftTag]) + Data(name.utf8)
        case .swiftChunk(let name): Data([chunkTag]) + Data(name.utf8)
        case .command: try JSONEncoder().encode(kind)
        }
    }

    /// Reads stored bytes back.
    /// - Throws: `.codingFailed` when they are no kind this store wrote.
    static func decode(_ data: Data) throws -> TaskSpec.Kind {
        guard let tag = data.first else {
            throw DockerParallelError(.codingFailed, "a stored task has no kind")
        }
        let name = { String(decoding: data.dropFirst(), as: UTF8.self) }
        switch tag {
        case swiftTag: return .swift(name: name())
        case chunkTag: return .swiftChunk(name: name())
        case UInt8(ascii: "{"): return try JSONDecoder().decode(TaskSpec.Kind.self, from: data)
        case 0x00: return try TaskSpec.Kind.decodeWireLayout(data)
        default: throw DockerParallelError(.codingFailed, "a stored task's kind starts with an unknown byte \(tag)")
        }
    }
}
