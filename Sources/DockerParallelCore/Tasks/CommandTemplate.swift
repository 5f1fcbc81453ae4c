/// An argv template with GNU parallel's replacement strings.
///
/// `{}` is the input, `{.}` the input without its extension, `{/}` its base name, `{//}` its
/// directory, `{/.}` its base name without extension, `{#}` the task's number from 1.
/// When no argument holds a replacement string, the input is appended as the last argument.
public struct CommandTemplate: Sendable, Equatable {
    /// The template arguments.
    public var arguments: [String]

    /// Creates a template.
    /// - Throws: ``DockerParallelError`` `.invalidArgument` when `arguments` is empty.
    public init(_ arguments: [String]) throws {
        guard let first = arguments.first, !first.isEmpty else {
            throw DockerParallelError(.invalidArgument, "no command given: put the command after '--', e.g. dockerparallel run -- echo {} ::: a b")
        }
        self.arguments = arguments
    }

    private static let tokens = ["{/.}", "{//}", "{/}", "{.}", "{#}", "{}"]

    /// The argv for one input.
    /// - Parameters:
    ///   - input: The input string.
    ///   - number: The task's number, from 1.
    public func argv(input: String, number: Int) -> [String] {
        let usesToken = arguments.contains { argument in Self.tokens.contains { argument.contains($0) } }
        guard usesToken else { return arguments + [input] }
        return arguments.map { substitute($0, input: input, number: number) }
    }

    private func substitute(_ argument: String, input: String, number: Int) -> String {
        var result = ""
        var rest = Substring(argument)
        outer: while !rest.isEmpty {
            for token in Self.tokens where rest.hasPrefix(token) {
                result += value(of: token, input: input, number: number)
                rest = rest.dropFirst(token.count)
                continue outer
            }
            result.append(rest.removeFirst())
        }
        return result
    }

    private func value(of token: String, input: String, number: Int) -> String {
        let base = input.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? input
        func dropExtension(_ s: String) -> String {
            guard let dot = s.lastIndex(of: "."), dot != s.startIndex,
                  !s[dot...].contains("/") else { return s }
            return String(s[..<dot])
        }
        switch token {
        case "{}": return input
        case "{#}": return String(number)
        case "{/}": return base
        case "{/.}": return dropExtension(base)
        case "{.}": return dropExtension(input)
        case "{//}":
            guard let slash = input.lastIndex(of: "/") else { return "." }
            return slash == input.startIndex ? "/" : String(input[..<slash])
        default: return token
        }
    }
}
