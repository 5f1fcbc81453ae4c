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

/// Runs one command as a child process in its own process group, capturing stdout and stderr,
/// with an optional time limit. Cancelling the calling task kills the process group.
enum CommandRunner {
    /// The running child, and whether the attempt was cancelled.
    struct ChildState {
        var pid: pid_t?
        var cancelled = false
    }

    /// The most output kept per stream; beyond it the output is truncated.
    static let outputLimit = 16 * 1024 * 1024
    /// Held while pipes are made and a child spawned, so that no child inherits another's pipes.
    static let spawnLock = NIOLock()

    static func run(argv: [String], environment: [String: String], timeout: Double?) async -> AttemptReport {
        let processID = NIOLockedValueBox(ChildState())
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<AttemptReport, Never>) in
                let thread = Thread {
                    continuation.resume(returning: runBlocking(
                        argv: argv, environment: environment, timeout: timeout, processID: processID))
                }
                thread.start()
            }
        } onCancel: {
            let pid = processID.withLockedValue { state -> pid_t? in
                state.cancelled = true
                return state.pid
            }
            if let pid { kill(-pid, SIGKILL) }
        }
    }

    /// The descriptors a command takes while it starts: two pipes.
    static let descriptorsPerCommand = 4
    /// The descriptors a command leaves free for the worker itself: its runtime opens files now and
    /// then (libdispatch reads `/proc` and stops the whole process when it cannot), and a worker
    /// that reconnects needs a socket.
    static let reservedDescriptors = 8

    private static func runBlocking(
        argv: [String], environment: [String: String], timeout: Double?, processID: NIOLockedValueBox<ChildState>
    ) -> AttemptReport {
        // Pipes are made close-on-exec and the child spawned under one lock, so that a command
        // started at the same time on another slot never inherits this command's pipes.
        spawnLock.lock()
        var spawnLocked = true
        defer { if spawnLocked { spawnLock.unlock() } }
        // A command that would leave the worker without descriptors is not started: the task
        // fails with the reason, and the worker goes on.
        if let usage = ChildProcess.descriptorUsage(), usage.free < descriptorsPerCommand + reservedDescriptors {
            return cannotStart(ChildProcess.Errno(EMFILE), usage: usage)
        }
        var stdoutPipe: [Int32] = [-1, -1]
        var stderrPipe: [Int32] = [-1, -1]
        guard pipe(&stdoutPipe) == 0 else { return cannotStart(ChildProcess.Errno(errno)) }
        guard pipe(&stderrPipe) == 0 else {
            let failure = ChildProcess.Errno(errno)
            close(stdoutPipe[0])
            close(stdoutPipe[1])
            return cannotStart(failure)
        }
        for fd in stdoutPipe + stderrPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let spawned = ChildProcess.spawn(
            argv: argv, environment: environment, output: .descriptors(output: stdoutPipe[1], error: stderrPipe[1]),
            grouping: .newProcessGroup, searchPath: true)
        spawnLock.unlock()
        spawnLocked = false
        close(stdoutPipe[1])
        close(stderrPipe[1])
        let pid: pid_t
        switch spawned {
        case .success(let child):
            pid = child
        case .failure(let error):
            close(stdoutPipe[0])
            close(stderrPipe[0])
            switch error.code {
            case ENOENT:
                return AttemptReport(
                    succeeded: false, permanent: true, error: "command not found: '\(argv[0])' is not on the worker's PATH")
            case EMFILE, ENFILE, ENOMEM, EAGAIN:
                return cannotStart(error)
            default:
                return AttemptReport(succeeded: false, permanent: true, error: "cannot run '\(argv[0])': \(error)")
            }
        }
        // A cancellation that came before the child existed kills it now.
        if processID.withLockedValue({ state in
            state.pid = pid
            return state.cancelled
        }) {
            kill(-pid, SIGKILL)
        }

        var output = Data()
        var errorOutput = Data()
        var timedOut = false
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var fds = [pollfd(fd: stdoutPipe[0], events: Int16(POLLIN), revents: 0),
                   pollfd(fd: stderrPipe[0], events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 65536)
        while fds.contains(where: { $0.fd >= 0 }) {
            var wait: Int32 = -1
            if let deadline, !timedOut {
                let remaining = deadline.timeIntervalSinceNow
                if remaining <= 0 {
                    timedOut = true
                    kill(-pid, SIGKILL)
                    continue
                }
                wait = Int32(min(remaining * 1000 + 1, 1000))
            }
            let ready = poll(&fds, nfds_t(fds.count), wait)
            if ready < 0 && errno != EINTR { break }
            for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
                let count = read(fds[i].fd, &buffer, buffer.count)
                if count > 0 {
                    if i == 0 {
                        if output.count < outputLimit { output.append(contentsOf: buffer[0..<count]) }
                    } else if errorOutput.count < outputLimit {
                        errorOutput.append(contentsOf: buffer[0..<count])
                    }
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    close(fds[i].fd)
                    fds[i].fd = -1
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        processID.withLockedValue { $0.pid = nil }

        let exited = (status & 0x7f) == 0
        let exitCode = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        if timedOut {
            return AttemptReport(
                succeeded: false, exitCode: exitCode, output: output, errorOutput: errorOutput,
                error: "timed out after \(timeout ?? 0) s and was killed")
        }
        if !exited {
            return AttemptReport(
                succeeded: false, exitCode: exitCode, output: output, errorOutput: errorOutput,
                error: killed(by: status & 0x7f))
        }
        return AttemptReport(
            succeeded: exitCode == 0, exitCode: exitCode, output: output, errorOutput: errorOutput,
            error: exitCode == 0 ? nil : "exited with status \(exitCode)")
    }

    /// A command the worker could not start for want of a resource: the task fails, saying which
    /// and what to do; not permanently, since another worker, or this one later, may have room.
    static func cannotStart(_ error: ChildProcess.Errno, usage: ChildProcess.DescriptorUsage? = nil) -> AttemptReport {
        let reason: String
        switch error.code {
        case EMFILE:
            let counts = (usage ?? ChildProcess.descriptorUsage()).map {
                " (the worker has \($0.open) files open of its limit of \($0.limit), and keeps \(reservedDescriptors) for itself)"
            } ?? ""
            reason = "could not start: too many open files (EMFILE)\(counts): raise the worker's open-file limit (ulimit -n, or the container's nofile limit) or give it fewer slots"
        case ENFILE:
            reason = "could not start: the system's table of open files is full (ENFILE): run fewer processes on the worker's machine or raise its fs.file-max"
        case ENOMEM:
            reason = "could not start: out of memory (ENOMEM): give the worker more memory or run fewer tasks on it at once"
        case EAGAIN:
            reason = "could not start: the worker cannot make another process (EAGAIN): raise its process limit (ulimit -u, or the container's pids limit) or give it more memory"
        default:
            reason = "could not start: \(error)"
        }
        return AttemptReport(succeeded: false, error: reason)
    }

    /// What a command that a signal ended is told, naming the signal and, for SIGKILL, the
    /// likeliest sender.
    static func killed(by signal: Int32) -> String {
        switch signal {
        case SIGKILL:
            return "killed by signal 9 (SIGKILL), as the kernel's out-of-memory killer does: if the command may have run out of memory, give the worker more memory or run fewer tasks on it at once"
        case SIGSEGV:
            return "crashed: killed by signal \(signal) (SIGSEGV, an invalid memory access)"
        case SIGBUS:
            return "crashed: killed by signal \(signal) (SIGBUS, a bad memory access)"
        case SIGILL:
            return "crashed: killed by signal \(signal) (SIGILL, an illegal instruction or a failed check)"
        case SIGFPE:
            return "crashed: killed by signal \(signal) (SIGFPE, an arithmetic error)"
        case SIGABRT:
            return "aborted: killed by signal \(signal) (SIGABRT)"
        case SIGTERM:
            return "killed by signal \(signal) (SIGTERM)"
        case SIGINT:
            return "killed by signal \(signal) (SIGINT)"
        case SIGPIPE:
            return "killed by signal \(signal) (SIGPIPE, it wrote to a closed pipe)"
        case SIGXCPU:
            return "killed by signal \(signal) (SIGXCPU, its CPU time limit ran out)"
        default:
            return "killed by signal \(signal)"
        }
    }
}
