/// When a command job stops early, as GNU parallel's `--halt` says: `now` (running commands are
/// killed) or `soon` (no new ones start), once `fail=`, `success=` or `done=` reaches a number
/// of commands or a share of them (`fail=10%`).
package struct HaltPolicy: Sendable, Equatable {
    package enum When: String, Sendable { case now, soon }
    package enum Event: String, Sendable { case fail, success, done }
    package enum Limit: Sendable, Equatable {
        case count(Int)
        case percent(Double)
    }

    package var when: When
    package var event: Event
    package var limit: Limit

    package init(when: When, event: Event, limit: Limit) {
        self.when = when
        self.event = event
        self.limit = limit
    }

    /// Reads GNU parallel's spellings: `now,fail=1`, `soon,fail=20%`, `now,success=1`,
    /// `soon,done=3`, `20%` (`soon,fail=20%`), and the old numbers (`0` never, `1` =
    /// `soon,fail=1`, `2` = `now,fail=1`, `-1` and `-2` the same for `success`).
    /// - Returns: `nil` for `never` and `0`.
    /// - Throws: ``DockerParallelError`` `.invalidArgument` naming the forms it takes.
    package static func parse(_ text: String) throws -> HaltPolicy? {
        let invalid = DockerParallelError(
            .invalidArgument, "--halt takes now|soon,fail|success|done=N or N%, e.g. now,fail=1 or soon,fail=10%, not '\(text)'")
        switch text {
        case "0", "never": return nil
        case "1": return HaltPolicy(when: .soon, event: .fail, limit: .count(1))
        case "2": return HaltPolicy(when: .now, event: .fail, limit: .count(1))
        case "-1": return HaltPolicy(when: .soon, event: .success, limit: .count(1))
        case "-2": return HaltPolicy(when: .now, event: .success, limit: .count(1))
        default: break
        }
        // `--halt 5%` is `soon,fail=5%`.
        if text.hasSuffix("%"), !text.contains(",") { return try parse("soon,fail=" + text) }
        let parts = text.split(separator: ",", maxSplits: 1)
        guard parts.count == 2, let when = When(rawValue: String(parts[0])) else { throw invalid }
        let condition = parts[1].split(separator: "=", maxSplits: 1)
        guard condition.count == 2, let event = Event(rawValue: String(condition[0])) else { throw invalid }
        let value = condition[1]
        if value.hasSuffix("%") {
            guard let percent = Double(value.dropLast()), percent > 0, percent <= 100 else { throw invalid }
            return HaltPolicy(when: when, event: event, limit: .percent(percent))
        }
        guard let count = Int(value), count >= 1 else { throw invalid }
        return HaltPolicy(when: when, event: event, limit: .count(count))
    }

    /// Whether the job halts after a command finished, and with which exit status: GNU
    /// parallel's (the command's own for a limit of one failure, else the failures, at most 101,
    /// or their share in percent; 0 for `success=`).
    /// - Parameters:
    ///   - failed: Commands failed so far, this one included.
    ///   - finished: Commands finished so far.
    ///   - total: Commands in the job.
    ///   - lastExitStatus: This command's exit status (a signal's as 128 + it).
    package func exitStatus(failed: Int, finished: Int, total: Int, lastFailed: Bool, lastExitStatus: Int32) -> Int32? {
        let reached: Int
        switch event {
        case .fail:
            guard lastFailed else { return nil }
            reached = failed
        case .success:
            guard !lastFailed else { return nil }
            reached = finished - failed
        case .done: reached = finished
        }
        let needed: Double = switch limit {
        case .count(let count): Double(count)
        case .percent(let percent): Double(total) * percent / 100
        }
        guard Double(reached) >= needed else { return nil }
        if event == .success { return 0 }
        if case .count(1) = limit { return lastExitStatus }
        if case .percent = limit { return Int32((Double(failed) / Double(max(total, 1)) * 100).rounded(.up)) }
        return Int32(min(failed, 101))
    }

    /// The exit status of a job that ran to its end without halting: with a share as the limit,
    /// the failures' share in percent (GNU parallel's); else `nil`, the usual count of failures.
    package func statusWithoutHalting(failed: Int, total: Int) -> Int32? {
        guard case .percent = limit, event != .success else { return nil }
        return Int32((Double(failed) / Double(max(total, 1)) * 100).rounded(.up))
    }
}
