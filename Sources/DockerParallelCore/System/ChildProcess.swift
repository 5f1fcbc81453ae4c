#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Starts child processes with `posix_spawn`: stdin from `/dev/null`, default signal handling,
/// an empty signal mask, this process's environment plus the given entries, and no inherited
/// descriptors but the standard three.
package enum ChildProcess {
    /// Where the child's standard output and error go.
    package enum Output {
        /// Both appended to a file, created with mode 0600.
        case file(String)
        /// Onto these descriptors (the write ends of pipes, close-on-exec), with `dup2`.
        case descriptors(output: Int32, error: Int32)
    }

    /// How the child is grouped.
    package enum Grouping {
        /// A new session, detached from this process's terminal and process group.
        case newSession
        /// A new process group, so that the child and its own children can be signalled together.
        case newProcessGroup
    }

    #if os(Linux)
    /// glibc's `POSIX_SPAWN_SETSID`, which Swift does not import (it is a GNU extension).
    private static let setSessionFlag: Int32 = 0x80
    #else
    private static let setSessionFlag: Int32 = POSIX_SPAWN_SETSID
    #endif

    /// Starts a child.
    /// - Parameters:
    ///   - argv: The program and its arguments; `argv[0]` is looked up on `PATH` when `searchPath` is true.
    ///   - environment: Entries added to (or replacing those of) this process's environment.
    ///   - output: Where standard output and error go.
    ///   - grouping: A new session or a new process group.
    ///   - searchPath: Whether to look `argv[0]` up on `PATH`.
    ///   - extraDescriptors: Descriptors the child gets as 3, 4, … in this order (for example the
    ///     ends of pipes to a persistent process); each must be above 4 and close-on-exec here.
    /// - Returns: The child's pid, or the `errno` of the failure (`ENOENT` for a missing program).
    package static func spawn(
        argv: [String], environment: [String: String], output: Output, grouping: Grouping, searchPath: Bool,
        extraDescriptors: [Int32] = []
    ) -> Result<pid_t, Errno> {
        guard let program = argv.first, !program.isEmpty else { return .failure(Errno(ENOENT)) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        switch output {
        case .file(let path):
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        case .descriptors(let out, let error):
            posix_spawn_file_actions_adddup2(&actions, out, 1)
            posix_spawn_file_actions_adddup2(&actions, error, 2)
        }
        for (offset, descriptor) in extraDescriptors.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, descriptor, Int32(3 + offset))
        }

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
        var flags = Int32(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
        switch grouping {
        case .newSession:
            flags |= setSessionFlag
        case .newProcessGroup:
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        markInheritedCloseOnExec()
        var pid: pid_t = 0
        let result = searchPath
            ? posix_spawnp(&pid, program, &actions, &attributes, cArguments, cEnvironment)
            : posix_spawn(&pid, program, &actions, &attributes, cArguments, cEnvironment)
        return result == 0 ? .success(pid) : .failure(Errno(result))
    }

    /// Marks every open descriptor above standard error close-on-exec, so that a child inherits
    /// no socket of the server or worker, and no pipe of whoever started this process (which would
    /// otherwise never see end-of-file).
    package static func markInheritedCloseOnExec() {
        let directory = FileManager.default.fileExists(atPath: "/proc/self/fd") ? "/proc/self/fd" : "/dev/fd"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names {
            guard let fd = Int32(name), fd > 2 else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 && flags & FD_CLOEXEC == 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    /// How many descriptors this process has open, of how many its open-file limit allows.
    package struct DescriptorUsage: Sendable, Equatable {
        /// Open descriptors numbered below the limit (only those take a place the limit counts).
        package var open: Int
        /// The soft `RLIMIT_NOFILE`.
        package var limit: Int
        /// The descriptors that can still be opened.
        package var free: Int { max(0, limit - open) }
    }

    /// This process's open descriptors and its open-file limit, from `/proc/self/fd`; `nil` where
    /// there is no such folder, or when the limit is unlimited. A process that cannot open the folder
    /// for lack of a descriptor is reported full.
    package static func descriptorUsage() -> DescriptorUsage? {
        var limits = rlimit()
        #if os(Linux)
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limits) == 0 else { return nil }
        #else
        guard getrlimit(RLIMIT_NOFILE, &limits) == 0 else { return nil }
        #endif
        guard limits.rlim_cur < rlim_t(Int32.max) else { return nil }  // RLIM_INFINITY is larger
        let limit = Int(limits.rlim_cur)
        guard let directory = opendir("/proc/self/fd") else {
            return errno == EMFILE || errno == ENFILE ? DescriptorUsage(open: limit, limit: limit) : nil
        }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var open = 0
        while let entry = readdir(directory) {
            let fd = withUnsafeBytes(of: entry.pointee.d_name) { name -> Int? in
                name.prefix { $0 != 0 }.reduce(Int?(0)) { value, byte in
                    guard let value, byte >= 48, byte <= 57 else { return nil }
                    return value * 10 + Int(byte - 48)
                }
            }
            if let fd, fd < limit, fd != Int(own) { open += 1 }
        }
        // The folder's own descriptor is free again once it is closed.
        return DescriptorUsage(open: open, limit: limit)
    }

    /// An `errno` value with its message.
    package struct Errno: Error, Sendable, Equatable, CustomStringConvertible {
        /// The value.
        package var code: Int32
        /// Wraps a value.
        package init(_ code: Int32) { self.code = code }
        package var description: String { String(cString: strerror(code)) }
    }
}
