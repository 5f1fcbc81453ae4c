/// The cluster's password, a secret that never prints itself.
///
/// `description` and `debugDescription` show `<redacted>`, so the password cannot leak through
/// string interpolation into logs or status output. Use ``value`` where the secret is really needed.
public struct ServerPassword: Sendable, Codable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The secret itself.
    public let value: String

    /// Wraps an existing password.
    public init(_ value: String) { self.value = value }

    /// A new random password of 26 lowercase letters, as the original generates.
    public static func random() -> ServerPassword {
        var generator = SystemRandomNumberGenerator()
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        return ServerPassword(String((0..<26).map { _ in letters[Int(generator.next() % 26)] }))
    }

    /// Compares with a presented password in time independent of where they differ.
    public func matches(_ presented: String) -> Bool {
        let a = Array(value.utf8)
        let b = Array(presented.utf8)
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<max(a.count, b.count) {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            difference |= x ^ y
        }
        return difference == 0 && a.count == b.count
    }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }

    public init(from decoder: any Decoder) throws {
        value = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
