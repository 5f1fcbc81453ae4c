#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import DockerParallelCore
import Foundation

/// Starting, probing and stopping detached processes.
enum ProcessControl {

    /// Starts a process in a new session, with stdin from /dev/null and output appended to `logFile`.
    static func spawnDetached(executable: String, arguments: [String] = [], environment: [String: String], logFile: String) throws -> pid_t {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw DockerParallelError(
                .invalidArgument, "'\(executable)' is not an executable file: build it, or give the right path of the worker executable")
        }
        switch ChildProcess.spawn(
            argv: [executable] + arguments, environment: environment, output: .file(logFile), grouping: .newSession,
            searchPath: false)
        {
        case .success(let pid):
            return pid
        case .failure(let error):
            throw DockerParallelError(.providerFailed, "cannot start '\(executable)': \(error)")
        }
    }

    /// Whether a process is alive (reaping it first if it is our exited child).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard pid > 0 else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { return false }
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        return !isZombie(pid)
    }

    /// Whether a process has exited and waits to be reaped: a process whose parent exited is
    /// reaped by PID 1, which in a container (or a minimal init) may never do it.
    static func isZombie(_ pid: pid_t) -> Bool {
        #if os(Linux)
        // /proc/PID/stat is "PID (COMMAND) STATE ...", and COMMAND may contain spaces and ')'.
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].trimmingPrefix(" ").first == "Z"
        #else
        return false
        #endif
    }

    /// Sends a signal.
    static func signal(_ pid: pid_t, _ signal: Int32) {
        guard pid > 0 else { return }
        kill(pid, signal)
    }

    /// Sends SIGTERM, waits up to `grace` seconds, then SIGKILL, and waits for the process to go.
    static func terminate(_ pid: pid_t, grace: Double) async {
        guard isAlive(pid) else { return }
        kill(pid, SIGTERM)
        if await waitForExit(pid, timeout: grace) { return }
        kill(pid, SIGKILL)
        _ = await waitForExit(pid, timeout: 5)
    }

    /// Waits until a process is gone; returns whether it went in time.
    static func waitForExit(_ pid: pid_t, timeout: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while isAlive(pid) {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }
}
