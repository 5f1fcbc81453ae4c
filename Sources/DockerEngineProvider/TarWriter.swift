import Foundation

/// Writes a tar archive (ustar) in memory: directories and regular files, owned by root.
struct TarWriter {
    private(set) var data = Data()
    private var directories: Set<String> = []
    /// Whether files bring entries for their folders. Off for archives unpacked over an existing
    /// tree: an entry for `lib/` would replace a base image's `lib -> usr/lib` link.
    var addsParentDirectories = true

    /// Adds a directory and its parents (mode 0755 unless given).
    mutating func addDirectory(_ path: String, mode: Int = 0o755) {
        let clean = Self.relative(path)
        guard !clean.isEmpty, !directories.contains(clean) else { return }
        let parent = (clean as NSString).deletingLastPathComponent
        if !parent.isEmpty { addDirectory(parent) }
        directories.insert(clean)
        appendHeader(name: clean + "/", mode: mode, size: 0, type: "5")
    }

    /// Adds a file with these contents at `path`, creating its folders.
    mutating func addFile(_ path: String, contents: Data, mode: Int) {
        let clean = Self.relative(path)
        let parent = (clean as NSString).deletingLastPathComponent
        if !parent.isEmpty, addsParentDirectories { addDirectory(parent) }
        appendHeader(name: clean, mode: mode, size: contents.count, type: "0")
        data.append(contents)
        let padding = (512 - contents.count % 512) % 512
        data.append(Data(count: padding))
    }

    /// The archive with its two closing zero blocks.
    func finished() -> Data {
        data + Data(count: 1024)
    }

    private static func relative(_ path: String) -> String {
        path.split(separator: "/").joined(separator: "/")
    }

    private mutating func appendHeader(name: String, mode: Int, size: Int, type: Character) {
        var header = [UInt8](repeating: 0, count: 512)
        var nameField = name
        var prefix = ""
        if name.utf8.count > 100 {
            // ustar splits a long name at a slash: up to 155 bytes of prefix, 100 of name.
            let parts = name.split(separator: "/", omittingEmptySubsequences: false)
            var cut = parts.count - 1
            while cut > 0, parts[cut...].joined(separator: "/").utf8.count <= 100 { cut -= 1 }
            prefix = parts[...cut].joined(separator: "/")
            nameField = parts[(cut + 1)...].joined(separator: "/")
        }
        func put(_ text: String, at offset: Int, length: Int) {
            for (index, byte) in text.utf8.prefix(length).enumerated() { header[offset + index] = byte }
        }
        func octal(_ value: Int, at offset: Int, length: Int) {
            put(String(String(value, radix: 8).suffix(length - 1)).leftPadded(to: length - 1), at: offset, length: length - 1)
        }
        put(nameField, at: 0, length: 100)
        octal(mode, at: 100, length: 8)
        octal(0, at: 108, length: 8)
        octal(0, at: 116, length: 8)
        octal(size, at: 124, length: 12)
        octal(Int(Date().timeIntervalSince1970), at: 136, length: 12)
        put("        ", at: 148, length: 8)
        header[156] = UInt8(ascii: type.unicodeScalars.first!)
        put("ustar", at: 257, length: 6)
        put("00", at: 263, length: 2)
        put("root", at: 265, length: 32)
        put("root", at: 297, length: 32)
        put(prefix, at: 345, length: 155)
        let checksum = header.reduce(0) { $0 + Int($1) }
        put(String(String(checksum, radix: 8)).leftPadded(to: 6) + "\0 ", at: 148, length: 8)
        data.append(contentsOf: header)
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}
