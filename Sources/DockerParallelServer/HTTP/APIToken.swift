import Crypto
import DockerParallelCore
import Foundation

/// The HTTP API's token: derived from the cluster password (SHA-256 of a fixed prefix and the
/// password), so that a dashboard link carries it instead of the password. It opens the HTTP API
/// alone; the binary protocol (clients, workers) wants the password itself.
public enum APIToken {
    /// The token of a cluster password, 64 hex digits.
    public static func derive(from password: ServerPassword) -> String {
        let digest = SHA256.hash(data: Data("dockerparallel-api-token\u{0}\(password.value)".utf8))
        return digest.map { String(format: "%02x", $0) }.joined()
    }
}
