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
    private static let spawnLock = NIOLock()

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

    private static func runBlocking(
        argv: [String], environment: [String: String], timeout: Double?, processID: NIOLockedValueBox<ChildState>
    ) -> AttemptReport {
        var stdoutPipe: [Int32] = [0, 0]
        var stderrPipe: [Int32] = [0, 0]
        // Pipes are made close-on-exec and the child spawned under one lock, so that a command
        // started at the same time on another slot never inherits this command's pipes.
        spawnLock.lock()
        var spawnLocked = true
        defer { if spawnLocked { spawnLock.unlock() } }
        guard pipe(&stdoutPipe) == 0, pipe(&stderrPipe) == 0 else {
            return AttemptReport(succeeded: false, error: "cannot create pipes: \(String(cString: strerror(errno)))")
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
            let reason = error.code == ENOENT
                ? "command not found: '\(argv[0])' is not on the worker's PATH"
                : "cannot run '\(argv[0])': \(error)"
            return AttemptReport(succeeded: false, permanent: true, error: reason)
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
                error: "killed by signal \(status & 0x7f)")
        }
        return AttemptReport(
            succeeded: exitCode == 0, exitCode: exitCode, output: output, errorOutput: errorOutput,
            error: exitCode == 0 ? nil : "exited with status \(exitCode)")
    }
}
