/// One lease: a task given to a worker for one attempt. Lease ids never repeat on a server, also
/// across its restarts, so that a late report can always be told from a current one.
public struct LeaseID: Hashable, Sendable, Comparable, Codable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// The number the server gave the lease.
    public var rawValue: UInt64

    /// An id from its number.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// An id from a literal number.
    public init(integerLiteral value: UInt64) { self.rawValue = value }

    public var description: String { "lease-\(rawValue)" }

    public static func < (left: LeaseID, right: LeaseID) -> Bool { left.rawValue < right.rawValue }

    /// Decodes an id from a number.
    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(UInt64.self)
    }

    /// Encodes the id as a number.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
