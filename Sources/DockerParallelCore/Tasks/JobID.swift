/// A job's identity on its cluster's server.
///
/// A job submitted by one process can be collected by another that knows its id (print it with
/// `description`, read it back with ``init(_:)``).
public struct JobID: Hashable, Sendable, Codable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The id as the server knows it.
    public var rawValue: String

    /// An id from its text.
    public init(_ rawValue: String) { self.rawValue = rawValue }

    /// An id from a literal, as in `cluster.cancel(jobID: "job-1")`.
    public init(stringLiteral value: String) { self.rawValue = value }

    /// A new random id, `job-` and twelve hexadecimal digits.
    public static func random() -> JobID {
        var generator = SystemRandomNumberGenerator()
        return JobID("job-" + String(generator.next() & 0xffff_ffff_ffff, radix: 16))
    }

    public var description: String { rawValue }

    /// Decodes an id from a string.
    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    /// Encodes the id as a string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
