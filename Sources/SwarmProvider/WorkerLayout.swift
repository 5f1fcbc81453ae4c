/// How many replicas of which worker service give a number of worker slots: a pure decision.
///
/// Every task of one service runs the same number of slots, so `n` workers of at most `p` slots
/// per container are `n / p` replicas of the `p`-slot service and, when `p` does not divide `n`,
/// one replica of an `n % p`-slot service: exactly `n` slots, in as few containers as can be.
struct WorkerLayout: Equatable, Sendable {
    /// Replicas by slots per task; sizes with no replica are absent.
    var replicas: [Int: Int]

    /// The layout of `workers` slots with at most `slotsPerContainer` a task (values below 1
    /// count as 1; fewer than 0 workers as 0).
    init(workers: Int, slotsPerContainer: Int) {
        let perContainer = max(1, slotsPerContainer)
        let workers = max(0, workers)
        replicas = [:]
        if workers / perContainer > 0 { replicas[perContainer] = workers / perContainer }
        if workers % perContainer > 0 { replicas[workers % perContainer] = 1 }
    }

    /// The worker slots in all.
    var slots: Int { replicas.reduce(0) { $0 + $1.key * $1.value } }
}
