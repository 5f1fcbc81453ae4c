import ArgumentParser
import DockerParallel
import DockerParallelCore
import Foundation

/// The options of `run` and `submit` that say where inputs come from and how they become
/// commands, spelled as GNU parallel spells them.
struct InputOptionGroup: ParsableArguments {
    @Option(name: [.customShort("a"), .customLong("arg-file")], help: ArgumentHelp(
        "Read inputs from FILE, one a line ('-' for standard input).",
        discussion: "Several files combine like several ::: sources, before them.", valueName: "file"))
    var argFiles: [String] = []

    @Option(help: ArgumentHelp("Split each input into columns {1} {2} … at this regular expression.", valueName: "regex"))
    var colsep: String?

    @Option(help: ArgumentHelp("Remove white space from the inputs' ends: n (none), l, r or lr (with --colsep, lr unless given).", valueName: "n|l|r|lr"))
    var trim: String?

    @Option(name: .customShort("N", allowingJoined: true), help: ArgumentHelp(
        "Inputs per command: {} is all of them, {1} … {N} each (-N0: none).", valueName: "count"))
    var inputsPerCommand: Int?

    @Flag(name: [.customShort("0"), .customLong("null")], help: "Inputs read from files and standard input end with NUL, not a newline.")
    var null = false

    @Option(name: [.customShort("d"), .customLong("delimiter")], help: ArgumentHelp(
        "Inputs read from files and standard input end with this character (\\n, \\t and \\0 understood).", valueName: "char"))
    var delimiter: String?

    @Flag(name: [.customShort("q"), .customLong("quote")], help: ArgumentHelp(
        "Run the command's words as they are, without a shell.",
        discussion: "Without -q, the words form one shell command line with the inputs quoted in it, as GNU parallel runs them."))
    var quote = false

    @Flag(name: [.customShort("k"), .customLong("keep-order")], help: "Accepted for GNU parallel's sake: outputs always come in input order.")
    var keepOrder = false

    /// The separator of records read from files and standard input.
    func recordSeparator() throws -> Unicode.Scalar {
        if null { return "\0" }
        guard let delimiter else { return "\n" }
        switch delimiter {
        case "\\n": return "\n"
        case "\\t": return "\t"
        case "\\0": return "\0"
        default:
            guard delimiter.unicodeScalars.count == 1, let character = delimiter.unicodeScalars.first else {
                throw ValidationError("-d takes one character (or \\n, \\t, \\0), not '\(delimiter)'")
            }
            return character
        }
    }

    func layout(inputsPerCommand otherSpelling: Int? = nil) throws -> ArgumentLayout {
        // GNU parallel trims columns at both ends unless told otherwise.
        let given = self.trim ?? (colsep == nil ? "n" : "lr")
        guard let trim = ArgumentLayout.Trim(rawValue: given == "rl" ? "lr" : given) else {
            throw ValidationError("--trim takes n, l, r or lr, not '\(given)'")
        }
        let perCommand = inputsPerCommand ?? otherSpelling ?? 1
        guard perCommand >= 0 else { throw ValidationError("-N must not be negative, got \(perCommand)") }
        return ArgumentLayout(columnSeparator: colsep, trim: trim, recordsPerCommand: perCommand)
    }
}

/// A command job as the command line gives it: `[--] COMMAND ARGS… [::: INPUT… | :::+ INPUT… |
/// :::: FILE… | ::::+ FILE…]…`, with inputs from `-a` files, and from standard input when there is
/// no other source.
struct CommandJob: Sendable {
    var command: ShellCommandLine
    /// Each command's input records, each record its columns (for `--results`' folders).
    var records: [[[String]]]
    /// Each command's arguments, in order: its records' columns.
    var arguments: [[String]]
    /// Each command's number (`{#}`), from 1; gaps where `--resume` skips commands.
    var numbers: [Int]

    init(command: ShellCommandLine, records: [[[String]]]) {
        self.command = command
        self.records = records
        self.arguments = records.map { $0.flatMap { $0 } }
        self.numbers = Array(records.indices.map { $0 + 1 })
    }

    /// The job without the commands whose numbers are in `done`.
    func skipping(_ done: Set<Int>) -> CommandJob {
        selecting(numbers.indices.filter { !done.contains(numbers[$0]) })
    }

    /// The job of the commands at these positions, in this order.
    func selecting(_ positions: [Int]) -> CommandJob {
        var job = self
        job.records = positions.map { records[$0] }
        job.arguments = positions.map { arguments[$0] }
        job.numbers = positions.map { numbers[$0] }
        return job
    }

    /// The command line of the command at `index`, as the shell gets it.
    func commandLine(_ index: Int) -> String {
        command.commandLine(arguments: arguments[index], number: numbers[index])
    }

    /// How the task for `arguments[index]` is named in messages: its arguments.
    func describe(_ index: Int) -> String {
        "input " + arguments[index].joined(separator: " ")
    }

    static let separators = [":::", ":::+", "::::", "::::+"]

    static func parse(_ words: [String], options: InputOptionGroup, inputsPerCommand: Int? = nil, known: [String]) throws -> CommandJob {
        var words = words
        if let first = words.first, first.hasPrefix("-"), first != "--", first != "-" {
            throw ValidationError(UnknownOption.message(for: first, known: known))
        }
        if words.first == "--" { words.removeFirst() }
        let separator = try options.recordSeparator()
        let end = words.firstIndex { separators.contains($0) } ?? words.endIndex
        let command: ShellCommandLine
        do {
            command = try ShellCommandLine(Array(words[..<end]), quoted: options.quote)
        } catch let error as DockerParallelError {
            throw ValidationError(error.message)
        }
        var sources = try options.argFiles.map { InputSource(try records(ofFile: $0, separator: separator)) }
        var rest = words[end...]
        while let marker = rest.first {
            rest = rest.dropFirst()
            let values = rest.prefix { !separators.contains($0) }
            rest = rest.dropFirst(values.count)
            let linked = marker.hasSuffix("+")
            if marker.hasPrefix("::::") {
                guard !values.isEmpty else { throw ValidationError("\(marker) needs a file name after it") }
                // `::::+` links every file after it.
                for file in values {
                    sources.append(InputSource(try records(ofFile: file, separator: separator), linked: linked))
                }
            } else {
                sources.append(InputSource(Array(values), linked: linked))
            }
        }
        if sources.isEmpty { sources = [InputSource(records(of: FileHandle.standardInput.readDataToEndOfFile(), separator: separator))] }
        do {
            return CommandJob(command: command, records: try options.layout(inputsPerCommand: inputsPerCommand).records(of: sources))
        } catch let error as DockerParallelError {
            throw ValidationError(error.message)
        }
    }

    private static func records(ofFile path: String, separator: Unicode.Scalar) throws -> [String] {
        if path == "-" { return records(of: FileHandle.standardInput.readDataToEndOfFile(), separator: separator) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read the input file '\(path)': it does not exist or is not readable")
        }
        return records(of: data, separator: separator)
    }

    private static func records(of data: Data, separator: Unicode.Scalar) -> [String] {
        InputSource.records(of: String(decoding: data, as: UTF8.self), separator: separator)
    }
}

/// The error for an option `run` or `submit` does not know, naming the nearest one it does.
enum UnknownOption {
    /// GNU parallel options that have another name or no counterpart here.
    static let gnuOnly: [String: String] = [
        "--sshlogin": "workers run on the cluster's provider: give --provider and --cluster instead",
        "-S": "workers run on the cluster's provider: give --provider and --cluster instead",
        "--pipe": "inputs are arguments here; --pipe is not supported",
        "--xargs": "-N sets how many inputs one command takes",
        "-X": "-N sets how many inputs one command takes",
        "-m": "-N sets how many inputs one command takes",
        "--shuf": "inputs always run in their order",
        "--plus": "the replacement strings are {} {.} {/} {//} {/.} {#} and {1} {1.} … by position",
        "--rpl": "the replacement strings are {} {.} {/} {//} {/.} {#} and {1} {1.} … by position",
        "--semaphore": "not supported",
        "--sem": "not supported",
        "--env": "give the command's environment on the worker (docs/cli.md)",
        "--files": "use --results DIR to keep each output in a file",
        "--header": "not supported; drop the header line from the input",
    ]

    static func message(for option: String, known: [String]) -> String {
        let name = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? option
        if let advice = gnuOnly[name] {
            return "\(name) is a GNU parallel option this tool does not support: \(advice)"
        }
        let nearest = known.min { distance(name, $0) < distance(name, $1) }
        let hint = nearest.map { " (the nearest it supports is \($0))" } ?? ""
        return "\(name) is not an option of this command\(hint); put the command after '--' if '\(name)' belongs to it"
    }

    /// The edit distance between two option names (insertions, deletions, substitutions and
    /// swaps of neighbours).
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var beforePrevious = Array(0...b.count)
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                // Two letters swapped count as one edit (--tga is --tag).
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], beforePrevious[j - 2] + 1)
                }
            }
            beforePrevious = previous
            previous = current
        }
        return previous[b.count]
    }

    /// The option names a command's help lists.
    static func names(of command: any ParsableCommand.Type) -> [String] {
        let help = command.helpMessage(columns: 10_000)
        let names = help.matches(of: /(?:^|[\s\[,|(])(--?[A-Za-z0-9][\w-]*)/).map { String($0.output.1) }
        return Array(Set(names)).sorted()
    }
}

/// Retry and time-limit options of a job.
struct JobOptionGroup: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Seconds one command may run before it is killed, or N% of the median run time of those finished (run only).",
        valueName: "seconds|N%"))
    var timeout: String?

    @Option(help: ArgumentHelp(
        "Runs of a command that fails, in all (0 and 1 run it once; GNU parallel's 0 retries forever).", valueName: "count"))
    var retries: Int = 1

    @Option(help: "Attempts of a task whose worker was lost.")
    var maxAttempts: Int = 3

    /// `--timeout N%`: the share of the median run time after which a command is killed.
    func timeoutShareOfMedian() throws -> Double? {
        guard let timeout, timeout.hasSuffix("%") else { return nil }
        guard let percent = Double(timeout.dropLast()), percent > 0 else {
            throw ValidationError("--timeout N% takes a positive share of the median run time, not \(timeout)")
        }
        return percent / 100
    }

    func options() throws -> JobOptions {
        var limit: Duration?
        if let timeout, !timeout.hasSuffix("%") {
            guard let seconds = Double(timeout), seconds > 0, let checked = Duration(checkedSeconds: seconds) else {
                throw ValidationError("--timeout must be a positive number of seconds or N%, not \(timeout)")
            }
            limit = checked
        }
        guard retries >= 0 else { throw ValidationError("--retries must not be negative, got \(retries)") }
        let options = JobOptions(maxAttempts: maxAttempts, failureRetries: max(retries, 1) - 1, timeout: limit)
        do {
            try options.validate()
        } catch let error as DockerParallelError {
            throw ValidationError(error.message)
        }
        return options
    }
}
