import Foundation

/// A unit of typed work that runs on a worker.
///
/// Register the type in a ``TaskRegistry`` in an executable that can run as a worker; the client
/// names it by ``name`` and sends its input encoded as JSON.
public protocol ParallelTask: Sendable {
    /// What the task takes.
    associatedtype Input: Codable & Sendable
    /// What the task returns.
    associatedtype Output: Codable & Sendable

    /// The name the task is registered under; the type's name by default.
    static var name: String { get }

    /// Runs the task.
    /// - Throws: Any error; it fails the task and its description is reported to the client.
    static func run(_ input: Input) async throws -> Output
}

extension ParallelTask {
    public static var name: String { String(describing: Self.self) }
}

/// The encoding of Swift task inputs and outputs.
package enum TaskCoding {
    /// Encodes a value.
    package static func encode<Value: Encodable>(_ value: Value) throws -> Data {
        do {
            return try JSONEncoder().encode(value)
        } catch {
            throw DockerParallelError(.codingFailed, "could not encode \(Value.self): \(error)")
        }
    }

    /// Decodes a value.
    package static func decode<Value: Decodable>(_ type: Value.Type, from data: Data) throws -> Value {
        do {
            return try JSONDecoder().decode(Value.self, from: data)
        } catch {
            throw DockerParallelError(.codingFailed, "could not decode \(Value.self): \(error)")
        }
    }
}
