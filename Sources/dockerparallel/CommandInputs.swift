import ArgumentParser
import DockerParallel
import DockerParallelCore

/// `-- COMMAND ARGS… [::: INPUT…]`, with inputs from standard input when there is no `:::`.
enum CommandInputs {
    static func parse(_ words: [String]) throws -> (CommandTemplate, [String]) {
        var words = words
        if words.first == "--" { words.removeFirst() }
        let command: [String]
        var inputs: [String]
        if let separator = words.firstIndex(of: ":::") {
            command = Array(words[..<separator])
            inputs = Array(words[(separator + 1)...])
        } else {
            command = words
            inputs = []
            while let line = readLine(strippingNewline: true) { inputs.append(line) }
        }
        do {
            return (try CommandTemplate(command), inputs)
        } catch let error as DockerParallelError {
            throw ValidationError(error.message)
        }
    }
}

/// Retry and time-limit options of a job.
struct JobOptionGroup: ParsableArguments {
    @Option(help: "Seconds one task may run before it is killed.")
    var timeout: Double?

    @Option(help: "Retries of a task whose command failed.")
    var retries: Int = 0

    @Option(help: "Attempts of a task whose worker was lost.")
    var maxAttempts: Int = 3

    func options() throws -> JobOptions {
        var limit: Duration?
        if let timeout {
            guard timeout > 0, let checked = Duration(checkedSeconds: timeout) else {
                throw ValidationError("--timeout must be a positive number of seconds, not \(timeout)")
            }
            limit = checked
        }
        let options = JobOptions(maxAttempts: maxAttempts, failureRetries: retries, timeout: limit)
        do {
            try options.validate()
        } catch let error as DockerParallelError {
            throw ValidationError(error.message)
        }
        return options
    }
}
