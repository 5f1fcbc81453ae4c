/// One input source of a command job, as GNU parallel takes it: the values after `:::`, or the
/// records of a file (`::::`, `-a`) or of standard input.
public struct InputSource: Sendable, Equatable {
    /// The source's values, in order.
    public var values: [String]
    /// Whether it is paired with the source before it (`:::+`, `::::+`) instead of combined with it.
    public var isLinked: Bool

    public init(_ values: [String], linked: Bool = false) {
        self.values = values
        self.isLinked = linked
    }

    /// The records of a file's text: split at `separator` (a newline, or NUL for `--null`), with
    /// a final separator ending the last record rather than starting an empty one. A CRLF file's
    /// records keep their `\r`, as GNU parallel's do.
    public static func records(of text: String, separator: Unicode.Scalar = "\n") -> [String] {
        let scalars = text.unicodeScalars
        guard !scalars.isEmpty else { return [] }
        var records = scalars.split(separator: separator, omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
        if scalars.last == separator { records.removeLast() }
        return records
    }
}

/// How the values of several input sources become the arguments of each command, as GNU
/// parallel makes them (`--colsep`, `--trim`, `-N`/`-n`).
public struct ArgumentLayout: Sendable, Equatable {
    /// Which ends of each value lose their white space (`--trim`; with `--colsep`, both by default).
    public enum Trim: String, Sendable, CaseIterable {
        case none = "n", left = "l", right = "r", both = "lr"
    }

    /// A regular expression that splits each value into columns (`--colsep`), or `nil`.
    public var columnSeparator: String?
    public var trim: Trim
    /// How many input records one command takes (`-N`/`-n`); 0 runs the command once per record
    /// without any.
    public var recordsPerCommand: Int

    public init(columnSeparator: String? = nil, trim: Trim = .none, recordsPerCommand: Int = 1) {
        self.columnSeparator = columnSeparator
        self.trim = trim
        self.recordsPerCommand = recordsPerCommand
    }

    /// The arguments of each command, in GNU parallel's order (see ``records(of:)``).
    /// - Throws: ``DockerParallelError`` `.invalidArgument` for a column separator that is not a
    ///   regular expression.
    public func arguments(of sources: [InputSource]) throws -> [[String]] {
        try records(of: sources).map { $0.flatMap { $0 } }
    }

    /// The records of each command, each record its columns, in GNU parallel's order: every
    /// combination of the sources, the first source changing slowest; a linked source moves
    /// with the one before it (pairs up to the shorter of them). Each combination's values,
    /// split into columns, are one record; `recordsPerCommand` records make one command.
    /// - Throws: ``DockerParallelError`` `.invalidArgument` for a column separator that is not a
    ///   regular expression.
    public func records(of sources: [InputSource]) throws -> [[[String]]] {
        let split = try columnSplitter()
        // Sources paired with `:::+` form one group, whose values move together.
        var groups: [[[String]]] = []
        for source in sources {
            let cells = source.values.map { value in split(value).map(trimmed) }
            if source.isLinked, let last = groups.indices.last {
                let count = min(groups[last].count, cells.count)
                groups[last] = (0..<count).map { groups[last][$0] + cells[$0] }
            } else {
                groups.append(cells)
            }
        }
        guard !groups.isEmpty else { return [] }
        var records: [[String]] = [[]]
        for group in groups {
            records = records.flatMap { record in group.map { record + $0 } }
        }
        guard recordsPerCommand != 1 else { return records.map { [$0] } }
        if recordsPerCommand == 0 { return records.map { _ in [] } }
        return stride(from: 0, to: records.count, by: recordsPerCommand).map { start in
            Array(records[start..<min(start + recordsPerCommand, records.count)])
        }
    }

    private func trimmed(_ value: String) -> String {
        // Perl's \s, as GNU parallel trims.
        let blank: (Unicode.Scalar) -> Bool = { " \t\n\r\u{0B}\u{0C}".unicodeScalars.contains($0) }
        var value = Substring.UnicodeScalarView(value.unicodeScalars)
        if trim == .left || trim == .both { value = Substring.UnicodeScalarView(value.drop(while: blank)) }
        if trim == .right || trim == .both {
            while let last = value.last, blank(last) { value.removeLast() }
        }
        return String(value)
    }

    private func columnSplitter() throws -> (String) -> [String] {
        guard let columnSeparator else { return { [$0] } }
        let pattern: Regex<AnyRegexOutput>
        do {
            pattern = try Regex(columnSeparator)
        } catch {
            throw DockerParallelError(
                .invalidArgument, "--colsep '\(columnSeparator)' is not a regular expression (\(error)); a literal character such as ',' or '\\t' works")
        }
        return { value in value.split(separator: pattern, omittingEmptySubsequences: false).map(String.init) }
    }
}
