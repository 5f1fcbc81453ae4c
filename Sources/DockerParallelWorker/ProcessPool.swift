#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import DockerParallelCore
import Foundation
import NIOConcurrencyHelpers

/// The long-lived processes of a worker's ``TaskSpec/Kind/process(argv:environment:)`` tasks: at
/// most one per slot, kept between tasks and reused by the next task of the same program, so that
/// a task costs a round trip, not an interpreter's start-up. The frames are
/// ``PersistentProcessProtocol``'s.
final class ProcessPool: Sendable {
    /// Which program a process runs.
    struct Key: Hashable, Sendable {
        var argv: [String]
        var environment: [String: String]
    }

    private struct State {
        var idle: [PersistentProcess] = []
        var live = 0
        var closed = false
    }

    /// Processes kept at most (the worker's slots).
    let capacity: Int
    private let state = NIOLockedValueBox(State())
    private let startSeconds: Double

    init(capacity: Int, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.capacity = max(1, capacity)
        self.startSeconds = environment["DOCKERPARALLEL_PROCESS_START_SECONDS"].flatMap(Double.init)
            .flatMap { $0 > 0 ? $0 : nil } ?? PersistentProcessProtocol.defaultStartSeconds
        // A process that dies while the worker writes to it must not take the worker with it.
        signal(SIGPIPE, SIG_IGN)
    }

    /// Runs one task in a process of its program, starting one if none is idle.
    func run(_ assignment: Assignment, key: Key) async -> AttemptReport {
        guard !key.argv.isEmpty, !key.argv[0].isEmpty else {
            return AttemptReport(succeeded: false, permanent: true, error: "the task has an empty program")
        }
        let (process, evicted) = take(key)
        if !evicted.isEmpty {
            // Reaping can wait for the kernel to free a big process's memory: not on this thread.
            Thread { for old in evicted { old.stop() } }.start()
        }
        let running = NIOLockedValueBox<PersistentProcess?>(process)
        let cancelled = NIOLockedValueBox(false)
        let payload = PersistentProcessProtocol.taskPayload(
            jobID: assignment.jobID, index: assignment.task.index, attempt: assignment.attempt, input: assignment.task.input)
        let startSeconds = startSeconds
        let (report, kept) = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<(AttemptReport, PersistentProcess?), Never>) in
                Thread {
                    var process = process
                    if process == nil {
                        switch PersistentProcess.start(key) {
                        case .success(let started):
                            process = started
                            running.withLockedValue { $0 = started }
                            if cancelled.withLockedValue({ $0 }) { started.kill() }
                        case .failure(let report):
                            continuation.resume(returning: (report, nil))
                            return
                        }
                    }
                    guard let process else { return }
                    let report = process.exchange(payload, timeout: assignment.timeout, startSeconds: startSeconds)
                    // A cancel from now on finds no process to kill; one that came during the
                    // exchange may have killed it, and a killed process is not kept.
                    let wasCancelled = running.withLockedValue { running -> Bool in
                        running = nil
                        return cancelled.withLockedValue { $0 }
                    }
                    if wasCancelled { process.stop() }
                    continuation.resume(returning: (report, process.isAlive ? process : nil))
                }.start()
            }
        } onCancel: {
            cancelled.withLockedValue { $0 = true }
            // Under the lock: the thread clears `running` under it before it reaps the process,
            // so this never signals a pid that was reused.
            running.withLockedValue { $0?.kill() }
        }
        if let kept {
            if let surplus = give(kept) { surplus.stop() }
        } else {
            state.withLockedValue { $0.live -= 1 }
        }
        return report
    }

    /// An idle process of the program, or none (the caller starts one); and the idle processes of
    /// other programs that must go to keep within ``capacity``.
    private func take(_ key: Key) -> (PersistentProcess?, evicted: [PersistentProcess]) {
        state.withLockedValue { state in
            // An idle process that died meanwhile (killed for memory, say) is dropped, not
            // handed the next task.
            let dead = state.idle.filter { $0.hasExited() }
            if !dead.isEmpty {
                state.idle.removeAll { process in dead.contains { $0 === process } }
                state.live -= dead.count
            }
            if let index = state.idle.lastIndex(where: { $0.key == key }) {
                return (state.idle.remove(at: index), [])
            }
            var evicted: [PersistentProcess] = []
            // The least recently used go first.
            while state.live >= capacity, !state.idle.isEmpty {
                evicted.append(state.idle.removeFirst())
                state.live -= 1
            }
            state.live += 1
            return (nil, evicted)
        }
    }

    /// Puts a process back; returns it when the pool is closed and it must stop instead.
    private func give(_ process: PersistentProcess) -> PersistentProcess? {
        state.withLockedValue { state in
            if state.closed {
                state.live -= 1
                return process
            }
            state.idle.append(process)
            return nil
        }
    }

    /// Stops every idle process; processes running a task stop when it ends.
    func close() {
        let idle = state.withLockedValue { state -> [PersistentProcess] in
            state.closed = true
            defer { state.idle.removeAll() }
            state.live -= state.idle.count
            return state.idle
        }
        for process in idle { process.stop() }
    }

    /// The pids of the idle processes (for tests).
    var idleProcessIDs: [pid_t] { state.withLockedValue { $0.idle.map(\.pid) } }
}

/// `kill(2)`, under a name a method called `kill` does not hide.
private func signalGroup(_ pid: pid_t, _ signal: Int32) -> Int32 { kill(pid, signal) }

/// One long-lived process and this side's ends of its pipes. Used by one task at a time.
final class PersistentProcess: @unchecked Sendable {
    let key: ProcessPool.Key
    let pid: pid_t
    private let toProcess: Int32
    private let fromProcess: Int32
    private let standardOutput: Int32
    private let standardError: Int32
    private var ready = false
    private var exited = false
    private var status: Int32 = 0

    private init(key: ProcessPool.Key, pid: pid_t, toProcess: Int32, fromProcess: Int32, standardOutput: Int32, standardError: Int32) {
        self.key = key
        self.pid = pid
        self.toProcess = toProcess
        self.fromProcess = fromProcess
        self.standardOutput = standardOutput
        self.standardError = standardError
    }

    var isAlive: Bool { !exited }

    /// A process, or why none could start.
    enum Started {
        case success(PersistentProcess)
        case failure(AttemptReport)
    }

    /// Starts the program with its frame pipes on descriptors 3 and 4.
    static func start(_ key: ProcessPool.Key) -> Started {
        CommandRunner.spawnLock.lock()
        defer { CommandRunner.spawnLock.unlock() }
        if let usage = ChildProcess.descriptorUsage(),
            usage.free < 2 * CommandRunner.descriptorsPerCommand + CommandRunner.reservedDescriptors
        {
            return .failure(CommandRunner.cannotStart(ChildProcess.Errno(EMFILE), usage: usage))
        }
        // Four pipes: frames each way, standard output and error. Each end is moved above 4, so
        // that placing the child's ends on 3 and 4 cannot overwrite one another.
        var ends: [Int32] = []
        func closeAll() { for fd in ends { close(fd) } }
        for _ in 0..<4 {
            var pair: [Int32] = [-1, -1]
            guard pipe(&pair) == 0 else {
                let failure = ChildProcess.Errno(errno)
                closeAll()
                return .failure(CommandRunner.cannotStart(failure))
            }
            for fd in pair {
                let moved = fcntl(fd, F_DUPFD_CLOEXEC, 10)
                close(fd)
                ends.append(moved)
            }
        }
        guard !ends.contains(where: { $0 < 0 }) else {
            let failure = ChildProcess.Errno(errno)
            closeAll()
            return .failure(CommandRunner.cannotStart(failure))
        }
        // ends: [toChild.read, toChild.write, fromChild.read, fromChild.write, out.read, out.write, err.read, err.write]
        var environment = key.environment
        environment["DOCKERPARALLEL_PROCESS_PROTOCOL"] = "1"
        let spawned = ChildProcess.spawn(
            argv: key.argv, environment: environment, output: .descriptors(output: ends[5], error: ends[7]),
            grouping: .newProcessGroup, searchPath: true, extraDescriptors: [ends[0], ends[3]])
        for index in [0, 3, 5, 7] { close(ends[index]) }
        switch spawned {
        case .success(let pid):
            for fd in [ends[1], ends[2], ends[4], ends[6]] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
            return .success(PersistentProcess(
                key: key, pid: pid, toProcess: ends[1], fromProcess: ends[2], standardOutput: ends[4], standardError: ends[6]))
        case .failure(let error):
            for index in [1, 2, 4, 6] { close(ends[index]) }
            switch error.code {
            case ENOENT:
                return .failure(AttemptReport(
                    succeeded: false, permanent: true, error: "program not found: '\(key.argv[0])' is not on the worker's PATH"))
            case EMFILE, ENFILE, ENOMEM, EAGAIN:
                return .failure(CommandRunner.cannotStart(error))
            default:
                return .failure(AttemptReport(succeeded: false, permanent: true, error: "cannot run '\(key.argv[0])': \(error)"))
            }
        }
    }

    /// Kills the process group; a running exchange sees its pipes close.
    func kill() {
        _ = signalGroup(-pid, SIGKILL)
    }

    /// Kills the process and reaps it.
    func stop() {
        kill()
        reap()
    }

    /// Whether the process has exited (reaped, then, with its pipes closed); it does not wait.
    func hasExited() -> Bool {
        guard !exited else { return true }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return false }
        self.status = status
        exited = true
        for fd in [toProcess, fromProcess, standardOutput, standardError] { close(fd) }
        return true
    }

    private func reap() {
        guard !exited else { return }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        self.status = status
        exited = true
        for fd in [toProcess, fromProcess, standardOutput, standardError] { close(fd) }
    }

    /// How the process ended, in words.
    private var ending: String {
        let signal = status & 0x7f
        if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
        return CommandRunner.killed(by: signal)
    }

    /// Sends one task and waits for its reply, capturing what the process writes meanwhile.
    func exchange(_ payload: Data, timeout: Double?, startSeconds: Double) -> AttemptReport {
        var output = Data()
        var errorOutput = Data()
        var pending = PersistentProcessProtocol.frame(PersistentProcessProtocol.task, payload)
        var sent = 0
        var outputOpen = true
        var errorOpen = true
        var received = Data()
        var timedOut = false
        let startDeadline = ready ? nil : Date().addingTimeInterval(startSeconds)
        // The task's time starts when the process is ready for it.
        var taskDeadline = ready ? timeout.map { Date().addingTimeInterval($0) } : nil
        var buffer = [UInt8](repeating: 0, count: 65536)

        func log() -> Data { Data((output + errorOutput).prefix(CommandRunner.outputLimit)) }
        // The task's output is the process's reply; what it printed meanwhile (standard output,
        // then standard error) is the task's log, its error output.
        func fail(_ message: String, permanent: Bool = false) -> AttemptReport {
            AttemptReport(succeeded: false, permanent: permanent, errorOutput: log(), error: message)
        }
        func drain(_ fd: Int32, into data: inout Data) -> Bool {
            while true {
                let count = read(fd, &buffer, buffer.count)
                if count > 0 {
                    if data.count < CommandRunner.outputLimit { data.append(contentsOf: buffer[0..<count]) }
                    continue
                }
                return count == 0 || (errno != EAGAIN && errno != EINTR) ? false : true
            }
        }
        func died() -> AttemptReport {
            _ = drain(standardOutput, into: &output)
            _ = drain(standardError, into: &errorOutput)
            kill()
            reap()
            if !ready {
                let tail = String(decoding: errorOutput.suffix(2000), as: UTF8.self)
                return fail(
                    "the process '\(key.argv.joined(separator: " ").prefix(80))' \(ending) before it was ready\(tail.isEmpty ? "" : ": \(tail)")",
                    permanent: true)
            }
            return fail("the process running the task \(ending)")
        }

        while true {
            // A frame complete?
            if received.count >= 5 {
                let length = received.prefix(4).reduce(0) { $0 << 8 | Int($1) }
                if length - 1 > PersistentProcessProtocol.outputLimit {
                    kill()
                    reap()
                    return fail(
                        "result too large: \(length - 1) bytes, over the limit of \(PersistentProcessProtocol.outputLimit / (1024 * 1024)) MiB: return less (write big results to shared storage and return their path)",
                        permanent: true)
                }
                if length < 1 {
                    kill()
                    reap()
                    return fail("the process sent a malformed frame (length \(length))")
                }
                if received.count >= 4 + length {
                    let type = received[received.startIndex + 4]
                    let body = Data(received[(received.startIndex + 5)..<(received.startIndex + 4 + length)])
                    received = Data(received.dropFirst(4 + length))
                    switch type {
                    case PersistentProcessProtocol.ready:
                        ready = true
                        taskDeadline = timeout.map { Date().addingTimeInterval($0) }
                        continue
                    case PersistentProcessProtocol.result, PersistentProcessProtocol.failure:
                        // What the process wrote before its reply is in the pipes by now.
                        _ = drain(standardOutput, into: &output)
                        _ = drain(standardError, into: &errorOutput)
                        if type == PersistentProcessProtocol.result {
                            return AttemptReport(succeeded: true, output: body, errorOutput: log())
                        }
                        let permanent = (body.first ?? 0) & 1 != 0
                        return fail(String(decoding: body.dropFirst(), as: UTF8.self), permanent: permanent)
                    default:
                        kill()
                        reap()
                        return fail("the process sent a frame of unknown type \(type)")
                    }
                }
            }
            var fds = [pollfd(fd: fromProcess, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: outputOpen ? standardOutput : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: errorOpen ? standardError : -1, events: Int16(POLLIN), revents: 0)]
            if ready && !pending.isEmpty { fds.append(pollfd(fd: toProcess, events: Int16(POLLOUT), revents: 0)) }
            let now = Date()
            var wait: Int32 = 1000
            for deadline in [ready ? nil : startDeadline, taskDeadline].compactMap({ $0 }) {
                let remaining = deadline.timeIntervalSince(now)
                if remaining <= 0 {
                    if !ready && deadline == startDeadline {
                        kill()
                        reap()
                        let tail = String(decoding: errorOutput.suffix(2000), as: UTF8.self)
                        return fail(
                            "the process '\(key.argv.joined(separator: " ").prefix(80))' did not say it was ready within \(Int(startSeconds)) s (DOCKERPARALLEL_PROCESS_START_SECONDS)\(tail.isEmpty ? "" : ": \(tail)")",
                            permanent: true)
                    }
                    timedOut = true
                }
                wait = min(wait, Int32(max(0, remaining) * 1000 + 1))
            }
            if timedOut {
                kill()
                reap()
                return fail("timed out after \(timeout ?? 0) s and was killed")
            }
            let count = poll(&fds, nfds_t(fds.count), wait)
            if count < 0 && errno != EINTR { return died() }
            if fds[0].revents != 0 {
                let read = read(fromProcess, &buffer, buffer.count)
                if read > 0 {
                    received.append(contentsOf: buffer[0..<read])
                } else if read == 0 || (errno != EAGAIN && errno != EINTR) {
                    return died()
                }
            }
            // A stream at its end is polled no more (it would wake the poll at once, again and again).
            if fds[1].revents != 0 && !drain(standardOutput, into: &output) { outputOpen = false }
            if fds[2].revents != 0 && !drain(standardError, into: &errorOutput) { errorOpen = false }
            if fds.count > 3, fds[3].revents != 0 {
                let written = pending.withUnsafeBytes { bytes in
                    write(toProcess, bytes.baseAddress! + sent, min(bytes.count - sent, 65536))
                }
                if written > 0 {
                    sent += written
                    if sent == pending.count { pending = Data() }
                } else if written < 0 && errno != EAGAIN && errno != EINTR {
                    return died()
                }
            }
        }
    }
}
