import DockerParallelCore
import Foundation
import NIOCore
import NIOFoundationCompat

/// Packs several encoded inputs (or outputs) into one task's bytes, for tasks too short to be
/// worth a lease each: a count, then each part prefixed by its length (varints).
package enum TaskChunk {
    /// Packs the parts, in order.
    package static func pack(_ parts: [Data]) -> Data {
        var writer = WireWriter(capacity: parts.reduce(8) { $0 + $1.count + 2 })
        writer.array(parts) { $0.data($1) }
        return Data(buffer: writer.buffer, byteTransferStrategy: .noCopy)
    }

    /// Unpacks what ``pack(_:)`` made.
    /// - Throws: `.codingFailed` when the bytes are not a packed chunk.
    package static func unpack(_ data: Data) throws -> [Data] {
        do {
            return try data.withUnsafeBytes { buffer in
                var reader = WireReader(buffer)
                let parts = try reader.array { try $0.data() }
                guard reader.isAtEnd else { throw WireReader.malformed("bytes follow the last part") }
                return parts
            }
        } catch let error as DockerParallelError {
            throw DockerParallelError(.codingFailed, "a chunk of tasks is malformed: \(error.message)")
        }
    }
}
