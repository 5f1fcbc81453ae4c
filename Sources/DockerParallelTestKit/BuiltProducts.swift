import Foundation

/// The products `swift build` put next to the running test bundle.
public enum BuiltProducts {
    /// The path of a built executable (`dockerparallel`): the nearest folder above this
    /// process's executable that holds it.
    public static func path(of name: String) -> String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: executable).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent(name).path), url.path != "/" {
            url.deleteLastPathComponent()
        }
        return url.appendingPathComponent(name).path
    }
}
