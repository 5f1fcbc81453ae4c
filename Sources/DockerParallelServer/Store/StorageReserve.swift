#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Space kept on the store's disk for the work the server has already taken.
///
/// A file of `size` bytes next to the store. When the disk fills, the broker deletes it, so that
/// the results of the tasks it took still fit, and takes no new tasks; it makes the file again,
/// and takes new tasks again, once the disk has room for it twice over.
struct StorageReserve: Sendable {
    /// The reserve file.
    let path: String
    /// Its size in bytes.
    let size: Int

    /// Gives the reserved space back to the disk.
    func release() {
        unlink(path)
    }

    /// Bytes free on the disk, for an unprivileged process.
    var freeBytes: Int? {
        var stats = statvfs()
        let folder = (path as NSString).deletingLastPathComponent
        guard statvfs(folder.isEmpty ? "." : folder, &stats) == 0 else { return nil }
        return Int(stats.f_bavail) * Int(stats.f_frsize)
    }

    /// Makes sure the reserve is there: returns `true` when it is (made now or before), `false`
    /// when the disk lacks room for it and as much again.
    func refill() -> Bool {
        if let attributes = try? FileManager.default.attributesOfItem(atPath: path),
           (attributes[.size] as? NSNumber)?.intValue == size {
            return true
        }
        guard let free = freeBytes, free >= 2 * size else { return false }
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return false }
        // Written, not only sized: a sparse file would reserve nothing.
        let chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var written = 0
        while written < size {
            let count = chunk.withUnsafeBytes { write(descriptor, $0.baseAddress, min(chunk.count, size - written)) }
            guard count > 0 else {
                close(descriptor)
                unlink(temporary)
                return false
            }
            written += count
        }
        close(descriptor)
        return rename(temporary, path) == 0
    }
}
