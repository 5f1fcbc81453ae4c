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
    #if os(Linux)
    /// glibc's `POSIX_SPAWN_SETSID`, which Swift does not import (it is a GNU extension).
    private static let spawnSetSessionFlag: Int32 = 0x80
    #else
    private static let spawnSetSessionFlag: Int32 = POSIX_SPAWN_SETSID
    #endif

    /// Starts a process in a new session, with stdin from /dev/null and output appended to `logFile`.
    static func spawnDetached(executable: String, arguments: [String] = [], environment: [String: String], logFile: String) throws -> pid_t {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw DockerParallelError(
                .invalidArgument, "'\(executable)' is not an executable file: build it, or give the right path of the worker executable")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaultSignals, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setflags(&attributes, Int16(spawnSetSessionFlag | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        let cArguments = ([executable] + arguments).map { strdup($0) } + [nil]
        let cEnvironment = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        FileDescriptors.markInheritedCloseOnExec()
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, cArguments, cEnvironment)
        guard result == 0 else {
            throw DockerParallelError(.providerFailed, "cannot start '\(executable)': \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// Whether a process is alive (reaping it first if it is our exited child).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard pid > 0 else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { return false }
        return kill(pid, 0) == 0 || errno == EPERM
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
