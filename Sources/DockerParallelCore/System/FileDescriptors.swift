#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Helpers for starting child processes.
public enum FileDescriptors {
    /// Marks every open descriptor above standard error close-on-exec, so that a child process
    /// inherits only its standard streams: no sockets of the server or worker, and no pipe of
    /// whoever started this process (which would otherwise never see end-of-file).
    public static func markInheritedCloseOnExec() {
        let directory = FileManager.default.fileExists(atPath: "/proc/self/fd") ? "/proc/self/fd" : "/dev/fd"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names {
            guard let fd = Int32(name), fd > 2 else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 && flags & FD_CLOEXEC == 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }
}
