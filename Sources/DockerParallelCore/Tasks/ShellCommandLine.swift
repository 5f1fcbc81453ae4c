/// A command of a command job as GNU parallel builds it from its words and one command's
/// arguments: the words joined into one shell command line with the arguments shell-quoted in
/// place of the replacement strings (or appended when there are none); or, quoted (`-q`), each
/// word its own argument with no shell in between.
///
/// Replacement strings: `{}` (every argument), `{.}` (without extension), `{/}` (base name),
/// `{//}` (directory), `{/.}` (base name without extension), `{#}` (the command's number), and
/// the same for one argument by position: `{1}`, `{2.}`, `{1/}`, `{1//}`, `{1/.}`, `{-1}` (the
/// last).
public struct ShellCommandLine: Sendable, Equatable {
    public var words: [String]
    /// Whether each word is its own argument (`-q`) instead of part of a shell command line.
    public var isQuoted: Bool
    /// The shell that runs a command line.
    public var shell: String

    /// - Parameter words: The command's words; none makes each command's arguments the command
    ///   itself (`dockerparallel run ::: 'echo a' 'echo b'`, or command lines on standard input).
    /// - Throws: ``DockerParallelError`` `.invalidArgument` when the first word is empty.
    public init(_ words: [String], quoted: Bool = false, shell: String = "/bin/sh") throws {
        if let first = words.first, first.isEmpty {
            throw DockerParallelError(.invalidArgument, "the command's first word is empty: put the command before ':::', e.g. dockerparallel run echo {} ::: a b")
        }
        self.words = words
        self.isQuoted = quoted
        self.shell = shell
    }

    /// Whether the inputs are the commands (no words were given).
    public var inputsAreCommands: Bool { words.isEmpty }

    /// Whether any word holds a replacement string; without one, the arguments are appended.
    public var usesReplacementStrings: Bool {
        words.contains { word in Self.pieces(of: word).contains { if case .replacement = $0 { true } else { false } } }
    }

    /// The command line as the shell gets it, and as `--dry-run` and the job log show it.
    public func commandLine(arguments: [String], number: Int) -> String {
        if inputsAreCommands { return isQuoted ? arguments.map(Self.quote).joined(separator: " ") : arguments.joined(separator: " ") }
        if isQuoted {
            return expandedWords(arguments: arguments, number: number).map(Self.quote).joined(separator: " ")
        }
        guard usesReplacementStrings else {
            return ([words.joined(separator: " ")] + arguments.map(Self.quote)).joined(separator: " ")
        }
        return words.map { substitute($0, arguments: arguments, number: number, quoting: Self.quote) }.joined(separator: " ")
    }

    /// What a worker runs: the shell with the command line, or the quoted command's own words.
    public func argv(arguments: [String], number: Int) -> [String] {
        isQuoted ? expandedWords(arguments: arguments, number: number) : [shell, "-c", commandLine(arguments: arguments, number: number)]
    }

    /// The quoted command's arguments: each word with the inputs put in as they are; where a
    /// replacement string stands for several inputs, each is its own argument (as the shell
    /// splits GNU parallel's `-q` line).
    private func expandedWords(arguments: [String], number: Int) -> [String] {
        guard !inputsAreCommands else { return arguments }
        guard usesReplacementStrings else { return words + arguments }
        var expanded: [String] = []
        for word in words {
            var current = ""
            for piece in Self.pieces(of: word) {
                switch piece {
                case .text(let text): current += text
                case .replacement(_, .number): current += String(number)
                case .replacement(let position?, let transform): current += value(at: position, of: arguments, transform)
                case .replacement(nil, let transform):
                    for (offset, argument) in arguments.enumerated() {
                        if offset > 0 {
                            expanded.append(current)
                            current = ""
                        }
                        current += transform.apply(to: argument)
                    }
                }
            }
            expanded.append(current)
        }
        return expanded
    }

    /// The argument at a position from 1 (from the end when negative), or nothing.
    private func value(at position: Int, of arguments: [String], _ transform: Transform) -> String {
        let index = position > 0 ? position - 1 : arguments.count + position
        return arguments.indices.contains(index) ? transform.apply(to: arguments[index]) : ""
    }

    private func substitute(_ word: String, arguments: [String], number: Int, quoting: (String) -> String) -> String {
        Self.pieces(of: word).map { piece in
            switch piece {
            case .text(let text): return text
            case .replacement(let position, let transform):
                if transform == .number { return String(number) }
                guard let position else { return arguments.map { quoting(transform.apply(to: $0)) }.joined(separator: " ") }
                // A missing one is nothing at all, as in GNU parallel (not an empty argument).
                let index = position > 0 ? position - 1 : arguments.count + position
                guard arguments.indices.contains(index) else { return "" }
                return quoting(transform.apply(to: arguments[index]))
            }
        }.joined()
    }

    /// A value quoted for a Bourne shell as GNU parallel quotes it: unchanged when it holds only
    /// letters, digits and `-_.+/`, else in single quotes.
    public static func quote(_ value: String) -> String {
        if value.isEmpty { return "''" }
        let plain = value.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-_.+/".unicodeScalars.contains(scalar))
        }
        if plain { return value }
        var quoted = "'" + value.replacingOccurrences(of: "'", with: #"'"'"'"#) + "'"
        if quoted.hasPrefix("''") { quoted.removeFirst(2) }
        if quoted.hasSuffix("''") { quoted.removeLast(2) }
        return quoted
    }

    enum Transform: Equatable {
        case whole, noExtension, baseName, directory, baseNameNoExtension, number

        func apply(to value: String) -> String {
            switch self {
            case .whole, .number: value
            case .noExtension: Self.dropExtension(value)
            case .baseName: Self.baseName(value)
            case .directory: Self.directory(value)
            case .baseNameNoExtension: Self.dropExtension(Self.baseName(value))
            }
        }

        /// GNU parallel's `s:\.[^/.]*$::`: `.hidden` loses everything, `dir.d/file` nothing.
        static func dropExtension(_ value: String) -> String {
            guard let dot = value.lastIndex(of: "."), !value[value.index(after: dot)...].contains("/") else { return value }
            return String(value[..<dot])
        }

        static func baseName(_ value: String) -> String {
            guard let slash = value.lastIndex(of: "/") else { return value }
            return String(value[value.index(after: slash)...])
        }

        /// Perl's `dirname`: trailing slashes go first (`a/b/` is in `a`), and the folder's own.
        static func directory(_ value: String) -> String {
            var path = Substring(value)
            while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
            guard let slash = path.lastIndex(of: "/") else { return "." }
            var folder = path[..<slash]
            while folder.count > 1, folder.hasSuffix("/") { folder = folder.dropLast() }
            return folder.isEmpty ? "/" : String(folder)
        }
    }

    enum Piece: Equatable {
        case text(String)
        case replacement(position: Int?, Transform)
    }

    private static let suffixes: [(String, Transform)] = [
        ("/.", .baseNameNoExtension), ("//", .directory), ("/", .baseName), (".", .noExtension), ("", .whole),
    ]

    /// A word cut into literal text and replacement strings.
    static func pieces(of word: String) -> [Piece] {
        var pieces: [Piece] = []
        var text = ""
        var rest = Substring(word)
        while let open = rest.firstIndex(of: "{") {
            text += rest[..<open]
            rest = rest[open...]
            if let close = rest.firstIndex(of: "}"), let piece = replacement(String(rest[rest.index(after: open)..<close])) {
                if !text.isEmpty { pieces.append(.text(text)) }
                text = ""
                pieces.append(piece)
                rest = rest[rest.index(after: close)...]
            } else {
                text.append(rest.removeFirst())
            }
        }
        text += rest
        if !text.isEmpty { pieces.append(.text(text)) }
        return pieces
    }

    /// The replacement string between braces, if `inner` is one.
    private static func replacement(_ inner: String) -> Piece? {
        if inner == "#" { return .replacement(position: nil, .number) }
        var digits = Substring(inner)
        let negative = digits.first == "-"
        if negative { digits = digits.dropFirst() }
        let number = digits.prefix { $0.isASCII && $0.isNumber }
        guard negative ? !number.isEmpty : true else { return nil }
        for (suffix, transform) in suffixes where digits.dropFirst(number.count) == suffix {
            guard let value = Int(number) else { return number.isEmpty ? .replacement(position: nil, transform) : nil }
            // GNU parallel takes {0} as {}.
            guard value != 0 else { return negative ? nil : .replacement(position: nil, transform) }
            return .replacement(position: negative ? -value : value, transform)
        }
        return nil
    }
}
