import Foundation

/// Debian's chromium, headless, for tests of the dashboard: loads a page, lets its scripts run,
/// and returns the DOM. Without chromium the browser tests are skipped, unless
/// `DOCKERPARALLEL_REQUIRE_BROWSER=1` (as `.ci/run` sets), which makes it a failure.
public enum HeadlessBrowser {
    /// Where Debian puts chromium.
    public static let path = "/usr/bin/chromium"

    /// Whether the browser tests run here.
    public static let enabled = FileManager.default.isExecutableFile(atPath: path)
        || ProcessInfo.processInfo.environment["DOCKERPARALLEL_REQUIRE_BROWSER"] == "1"

    /// The page's DOM after its scripts ran for `milliseconds` of (virtual) time; on a thread of
    /// its own, so that waiting never blocks the tests' shared threads.
    public static func dom(_ url: String, milliseconds: Int = 4000) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    let profile = NSTemporaryDirectory() + "dp-chromium-\(UUID().uuidString.prefix(8))"
                    defer { try? FileManager.default.removeItem(atPath: profile) }
                    return try programOutput(path, [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile)",
                        "--dump-dom", "--virtual-time-budget=\(milliseconds)", url,
                    ])
                })
            }.start()
        }
    }

    /// Loads the page again and again until its DOM contains every one of `texts`, and returns
    /// that DOM: a page that updates live shows its data a moment after it loads, sooner or later
    /// depending on the machine's load.
    /// - Throws: ``WaitTimedOut`` naming what was missing, when `timeout` seconds pass first.
    public static func dom(_ url: String, containing texts: [String], timeout: Double = 60) async throws -> String {
        var last = ""
        do {
            return try await waitUntil("the page shows \(texts)", timeout: timeout, interval: 0.2) { () -> String? in
                last = try await dom(url, milliseconds: 3000)
                return texts.allSatisfy(last.contains) ? last : nil
            }
        } catch is WaitTimedOut {
            let missing = texts.filter { !last.contains($0) }
            throw WaitTimedOut(what: "the page shows \(missing) (it showed: \(last.drop { $0 != "<" }.prefix(1500)))", timeout: timeout)
        }
    }
}
