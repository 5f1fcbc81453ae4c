import Foundation

/// Reading and writing platforms' JSON, with errors that say which answer of which platform
/// could not be read and where in it.
package enum JSONModels {
    /// Decodes `T` from a platform's answer.
    /// - Throws: ``RESTError`` `.decodingFailed` naming the platform, the request and the JSON path
    ///   of the problem (`[0].State: expected a String, found a number`).
    package static func decode<T: Decodable>(_ type: T.Type, from data: Data, platform: String, request: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw RESTError(.decodingFailed, platform: platform, request: request, message: describe(error), underlying: error)
        } catch {
            throw RESTError(.decodingFailed, platform: platform, request: request, message: "\(error)")
        }
    }

    /// Encodes a request body.
    /// - Throws: ``RESTError`` `.encodingFailed`.
    package static func encode(_ value: any Encodable, platform: String, request: String) throws -> Data {
        do {
            return try JSONEncoder().encode(value)
        } catch {
            throw RESTError(.encodingFailed, platform: platform, request: request, message: "\(error)")
        }
    }

    /// The message in a JSON error body, as Docker, Kubernetes and AWS write it (`message`,
    /// `Message`, or `error`), or `nil` when the body holds none.
    @Sendable package static func message(in body: Data) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return nil }
        for key in ["message", "Message", "error"] {
            if let text = object[key] as? String, !text.isEmpty { return text }
        }
        return nil
    }

    /// A decoding error as a person reads it: where, and what was wrong.
    package static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let text = context.codingPath.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
            return text.isEmpty ? "the top level" : String(text.drop { $0 == "." })
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = path(context)
            return "\(parent == "the top level" ? "" : parent + ".")\(key.stringValue): missing"
        case .typeMismatch(let type, let context):
            return "\(path(context)): expected \(type); \(context.debugDescription)"
        case .valueNotFound(let type, let context):
            return "\(path(context)): expected \(type), found null"
        case .dataCorrupted(let context):
            return "\(path(context)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}
