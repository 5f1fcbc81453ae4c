/// Heavy tests (chaos runs, real swarms, a thousand workers) take turns: on a machine of two
/// cores one would otherwise starve another's deadlines, and a test would fail for the load its
/// neighbours make rather than for what it tests. Light tests run beside them.
///
/// Wrap the body of such a test: `try await HeavyTests.oneAtATime { … }`. Its time limit must
/// allow for the wait.
public enum HeavyTests {
    private actor Turns {
        private var busy = false
        private var waiting: [CheckedContinuation<Void, Never>] = []

        func take() async {
            guard busy else {
                busy = true
                return
            }
            await withCheckedContinuation { waiting.append($0) }
        }

        func give() {
            if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
        }
    }

    private static let turns = Turns()

    /// Runs `body` when no other heavy test runs.
    public static func oneAtATime<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await turns.take()
        do {
            let result = try await body()
            await turns.give()
            return result
        } catch {
            await turns.give()
            throw error
        }
    }
}
