import Foundation

/// One profile of AWS's shared files: its settings from `~/.aws/config` with those of
/// `~/.aws/credentials` over them.
package struct AWSProfile: Sendable, Equatable {
    /// The profile's name (`default` unless `AWS_PROFILE` says otherwise).
    package var name: String
    /// The settings, names lower-cased (`aws_access_key_id`, `region`, `role_arn`, …).
    package var settings: [String: String]

    /// Creates a profile.
    package init(name: String, settings: [String: String]) {
        self.name = name
        self.settings = settings
    }

    /// A setting's value, `nil` when absent or empty.
    package subscript(_ key: String) -> String? {
        guard let value = settings[key.lowercased()], !value.isEmpty else { return nil }
        return value
    }

    /// The profile the environment selects: `AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else `default`.
    /// - Returns: The name, and whether the environment named it.
    package static func selectedName(environment: [String: String]) -> (name: String, isExplicit: Bool) {
        for variable in ["AWS_PROFILE", "AWS_DEFAULT_PROFILE"] {
            if let name = environment[variable]?.trimmingCharacters(in: .whitespaces), !name.isEmpty { return (name, true) }
        }
        return ("default", false)
    }
}

/// Where AWS's shared credentials and config files are, and how to read a profile from them.
///
/// The credentials file names sections `[name]`; the config file `[profile name]`, except the
/// default profile, which may be `[default]` or `[profile default]`.
package struct AWSSharedFiles: Sendable, Equatable {
    /// The credentials file: `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
    package var credentialsPath: String
    /// The config file: `AWS_CONFIG_FILE`, else `~/.aws/config`.
    package var configPath: String

    /// Locates the files.
    /// - Parameters:
    ///   - environment: The process's environment (its `HOME`, `AWS_SHARED_CREDENTIALS_FILE` and
    ///     `AWS_CONFIG_FILE` are read).
    ///   - homeDirectory: The directory `~` stands for (default the environment's `HOME`).
    package init(environment: [String: String], homeDirectory: String? = nil) {
        let home = homeDirectory ?? environment["HOME"] ?? NSHomeDirectory()
        func expand(_ path: String) -> String {
            path == "~" ? home : path.hasPrefix("~/") ? home + path.dropFirst() : path
        }
        credentialsPath = expand(environment["AWS_SHARED_CREDENTIALS_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "~/.aws/credentials")
        configPath = expand(environment["AWS_CONFIG_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "~/.aws/config")
    }

    /// The named profile, from either file or both, or `nil` when neither has it (or neither exists).
    /// - Throws: An error naming the file when one exists but cannot be read.
    package func profile(named name: String) throws -> AWSProfile? {
        let credentials = try Self.sections(ofFile: credentialsPath)
        let config = try Self.sections(ofFile: configPath)
        let fromConfig = name == "default" ? (config["profile default"] ?? config["default"]) : config["profile \(name)"]
        let fromCredentials = credentials[name]
        guard fromConfig != nil || fromCredentials != nil else { return nil }
        return AWSProfile(name: name, settings: (fromConfig ?? [:]).merging(fromCredentials ?? [:]) { _, credential in credential })
    }

    /// The sections of an INI file, or none when it does not exist.
    /// - Throws: An error naming the file when it exists but cannot be read.
    static func sections(ofFile path: String) throws -> [String: [String: String]] {
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return parse(String(decoding: data, as: UTF8.self))
        } catch {
            throw SharedFileError(description: "cannot read \(path): \(error.localizedDescription); check its permissions")
        }
    }

    /// Parses INI text as the AWS CLI does: `[section]` headers, `name = value` lines (names
    /// lower-cased), `#` and `;` comment lines; indented lines continue the previous value (an
    /// `s3 =` block's nested settings), and settings before any section are ignored.
    package static func parse(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        var lastKey: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if let first = rawLine.first, first == " " || first == "\t" {
                if let current, let lastKey { sections[current]?[lastKey, default: ""] += "\n" + line }
                continue
            }
            if line.hasPrefix("["), line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                current = name
                lastKey = nil
                if sections[name] == nil { sections[name] = [:] }
                continue
            }
            guard let current, let separator = line.firstIndex(where: { $0 == "=" || $0 == ":" }) else { continue }
            let key = line[..<separator].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: separator)...].trimmingCharacters(in: .whitespaces)
            sections[current]?[key] = value
            lastKey = key
        }
        return sections
    }

    /// `path` with the home directory written `~`, for messages.
    func abbreviated(_ path: String, home: String?) -> String {
        guard let home, !home.isEmpty, path.hasPrefix(home + "/") else { return path }
        return "~" + path.dropFirst(home.count)
    }
}

/// A shared file that exists but cannot be read.
struct SharedFileError: Error, CustomStringConvertible {
    var description: String
}
