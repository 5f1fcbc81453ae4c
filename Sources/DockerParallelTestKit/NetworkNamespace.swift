#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A network namespace on this machine, joined to the machine's own by a veth pair with
/// link-local addresses: a program started in it reaches this machine only over that link,
/// which a test takes down and brings back to cut the program off (a partition) while
/// everything else on the machine carries on.
///
/// Make one with ``withNetworkNamespace(_:)``. It needs root and iproute2's `ip` (Linux);
/// ``unavailableReason`` says what is missing.
public struct NetworkNamespace: Sendable {
    /// The namespace's name (`dp-part-…`), as `ip netns` knows it.
    public let name: String
    /// The address of the pair's end in this machine's namespace, where a server listens for
    /// the namespace's programs.
    public let hostAddress: String
    /// The address of the pair's end inside the namespace.
    public let namespaceAddress: String
    private let hostInterface: String
    private let namespaceInterface: String

    /// Why namespaces cannot be made here, or `nil` when they can.
    public static var unavailableReason: String? {
        guard getuid() == 0 else { return "network namespaces need root" }
        guard let ip = ipExecutable else { return "iproute2's `ip` is not installed" }
        guard (try? run(ip, ["netns", "list"])) != nil else { return "`ip netns` does not work here" }
        return nil
    }

    /// Takes the link down inside the namespace: nothing passes either way until
    /// ``restoreLink()``. The host's end keeps its address, so that peers on this machine
    /// still reach a server listening there.
    public func cutLink() throws {
        try Self.ip(["-n", name, "link", "set", namespaceInterface, "down"])
    }

    /// Brings the link back up.
    public func restoreLink() throws {
        try Self.ip(["-n", name, "link", "set", namespaceInterface, "up"])
    }

    /// A process (not yet started) that runs `executable` inside the namespace.
    /// - Throws: When `ip` is missing.
    public func process(_ executable: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.requireIP())
        // `ip netns exec` replaces itself with the program: the process's id is the program's.
        process.arguments = ["netns", "exec", name, executable] + arguments
        return process
    }

    // MARK: Making and removing

    /// Makes a namespace and its link, up.
    fileprivate static func make() throws -> NetworkNamespace {
        if let reason = unavailableReason {
            throw NamespaceError(description: "cannot make a network namespace: \(reason)")
        }
        let tag = UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(8)
        // A /30 in 169.254.0.0/16 that no interface here uses yet.
        let used = (try? run(try requireIP(), ["-4", "-o", "address", "show"])) ?? ""
        var (third, fourth) = (0, 0)
        repeat {
            (third, fourth) = (Int.random(in: 1...254), 4 * Int.random(in: 0...61))
        } while used.contains(" 169.254.\(third).\(fourth + 1)/") || used.contains(" 169.254.\(third).\(fourth + 2)/")
        let namespace = NetworkNamespace(
            name: "dp-part-\(tag)", hostAddress: "169.254.\(third).\(fourth + 1)",
            namespaceAddress: "169.254.\(third).\(fourth + 2)", hostInterface: "dp\(tag)h", namespaceInterface: "dp\(tag)n")
        do {
            try ip(["netns", "add", namespace.name])
            try ip(["link", "add", namespace.hostInterface, "type", "veth", "peer", "name", namespace.namespaceInterface])
            try ip(["link", "set", namespace.namespaceInterface, "netns", namespace.name])
            try ip(["address", "add", "\(namespace.hostAddress)/30", "dev", namespace.hostInterface])
            try ip(["link", "set", namespace.hostInterface, "up"])
            try ip(["-n", namespace.name, "address", "add", "\(namespace.namespaceAddress)/30", "dev", namespace.namespaceInterface])
            try ip(["-n", namespace.name, "link", "set", namespace.namespaceInterface, "up"])
            try ip(["-n", namespace.name, "link", "set", "lo", "up"])
        } catch {
            namespace.remove()
            throw error
        }
        return namespace
    }

    /// Deletes the namespace, which deletes the veth pair with it.
    fileprivate func remove() {
        guard let ip = Self.ipExecutable else { return }
        _ = try? Self.run(ip, ["netns", "delete", name])
        // The host's end, in case it never got its peer into the namespace.
        _ = try? Self.run(ip, ["link", "delete", hostInterface])
    }

    // MARK: Running ip

    private static let ipExecutable: String? = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    private static func requireIP() throws -> String {
        guard let ip = ipExecutable else { throw NamespaceError(description: "iproute2's `ip` is not installed") }
        return ip
    }

    private static func ip(_ arguments: [String]) throws {
        _ = try run(try requireIP(), arguments)
    }

    /// Runs a program to its end; returns its standard output, or throws with its standard error.
    @discardableResult
    private static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        let errorOutput = Pipe()
        process.standardOutput = output
        process.standardError = errorOutput
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // `ip` writes little: reading one pipe to its end cannot block on the other.
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errorText = String(decoding: errorOutput.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NamespaceError(
                description: "`\(([executable] + arguments).joined(separator: " "))` failed: \(errorText.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return text
    }
}

/// Makes a network namespace joined to this machine's by a link that is up, runs `body`, then
/// removes the namespace and its link; whatever `body` started inside must be stopped by then.
/// - Throws: ``NamespaceError`` when the namespace cannot be made; what `body` throws.
public func withNetworkNamespace<T>(_ body: (NetworkNamespace) async throws -> T) async throws -> T {
    let namespace = try NetworkNamespace.make()
    do {
        let result = try await body(namespace)
        namespace.remove()
        return result
    } catch {
        namespace.remove()
        throw error
    }
}

/// A network namespace could not be made or changed.
public struct NamespaceError: Error, Sendable, CustomStringConvertible {
    /// What failed, and why.
    public var description: String
}
