import ArgumentParser
import DockerParallel
import Foundation

/// GNU parallel's job log (`--joblog FILE`): a header, then one tab-separated line per finished
/// command, written as each finishes, so that `--resume` and `--resume-failed` can tell after a
/// crash what still has to run.
///
/// Columns: Seq (the command's number), Host (the worker that ran it), Starttime (seconds since
/// 1970), JobRuntime (seconds), Send (0), Receive (bytes of standard output), Exitval (-1 when
/// it did not exit by itself), Signal (the signal that ended it, else 0), Command.
final class JobLog: @unchecked Sendable {
    static let header = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"

    private let handle: FileHandle
    private let lock = NSLock()

    /// Opens the log: a new one (with its header) unless `appending` to one that exists.
    init(path: String, appending: Bool) throws {
        let exists = FileManager.default.fileExists(atPath: path)
        if !(appending && exists) {
            guard FileManager.default.createFile(atPath: path, contents: Data(Self.header.utf8)) else {
                throw ValidationError("cannot write the job log '\(path)': check that its folder exists and is writable")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw ValidationError("cannot write the job log '\(path)': check that it is writable")
        }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    /// The numbers of the commands a log says need not run again: every one it lists
    /// (`--resume`), or only those that succeeded (`--resume-failed`).
    static func done(in path: String, failedToo: Bool) throws -> Set<Int> {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        var done: Set<Int> = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n").dropFirst() {
            let columns = line.split(separator: "\t", maxSplits: 8, omittingEmptySubsequences: false)
            guard columns.count >= 8, let number = Int(columns[0]) else { continue }
            if failedToo || (columns[6] == "0" && columns[7] == "0") { done.insert(number) }
        }
        return done
    }

    /// Appends the line of one finished command.
    func record(number: Int, result: TaskResult, attempt: AttemptRecord?, command: String) {
        let started = attempt?.started ?? Date().timeIntervalSince1970
        let runtime = attempt.flatMap { record in record.ended.map { $0 - record.started } } ?? 0
        let (exitValue, signal) = Self.exit(of: result)
        let columns = [
            String(number), attempt?.worker ?? ":", String(format: "%.3f", started), String(format: "%10.3f", runtime), "0",
            String(result.output.count), String(exitValue), String(signal), command.replacingOccurrences(of: "\n", with: " "),
        ]
        let line = columns.joined(separator: "\t") + "\n"
        lock.withLock { handle.write(Data(line.utf8)) }
    }

    /// Exitval and Signal as GNU parallel logs them: a command that did not exit by itself has
    /// -1 and the signal that ended it (a time limit's kill is 9).
    static func exit(of result: TaskResult) -> (Int32, Int32) {
        if let code = result.exitCode { return (code, 0) }
        if result.status == .succeeded { return (0, 0) }
        let signal = result.error?.firstMatch(of: /signal (\d+)/).flatMap { Int32($0.1) } ?? 9
        return (-1, signal)
    }

    func close() {
        lock.withLock { try? handle.close() }
    }
}
