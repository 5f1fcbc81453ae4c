import DockerParallelCore
import Foundation
import Testing

/// The worker's state machine, driven without a connection or a clock.
@Suite(.timeLimit(.minutes(1))) struct WorkerStateMachineTests {
    func machine(slots: Int = 2, prefetch: Int = 1, grace: Duration = .seconds(10)) -> WorkerStateMachine {
        WorkerStateMachine(configuration: .init(
            slots: slots, minimumPrefetch: prefetch, maximumPrefetch: 256, heartbeatInterval: .seconds(1),
            shutdownGracePeriod: grace))
    }

    func assignment(_ lease: LeaseID, swift: Bool = false) -> Assignment {
        let kind: TaskSpec.Kind = swift ? .swift(name: "Square") : .command(argv: ["true"], environment: [:])
        return Assignment(leaseID: lease, jobID: "j", task: TaskSpec(index: Int(lease.rawValue), kind: kind), attempt: 1, timeout: nil)
    }

    func completion(_ lease: LeaseID) -> Completion {
        Completion(leaseID: lease, jobID: "j", index: Int(lease.rawValue), report: AttemptReport(succeeded: true, exitCode: 0))
    }

    func started(_ actions: [WorkerAction]) -> [LeaseID] {
        actions.compactMap { if case .start(let assignment, _) = $0 { assignment.leaseID } else { nil } }
    }

    func sent(_ actions: [WorkerAction]) -> [ClientMessage] {
        actions.compactMap { if case .send(let message) = $0 { message } else { nil } }
    }

    @Test func itAsksForItsSlotsAndPrefetchAndStartsUpToItsSlots() {
        var worker = machine(slots: 2, prefetch: 1)
        #expect(worker.connected(now: .zero) == [.send(.credit(count: 3))])
        let actions = worker.assigned([assignment(1), assignment(2), assignment(3)], now: .zero)
        #expect(started(actions) == [1, 2])
        #expect(worker.waiting.map(\.leaseID) == [3])
        #expect(worker.held == [1, 2, 3])
        // A slot frees: the prefetched task starts, and the report goes with one credit.
        let finished = worker.finished(completion(1), duration: .milliseconds(50), now: .milliseconds(50))
        #expect(started(finished) == [3])
        #expect(sent(finished) == [.completed([completion(1)], credit: 1)])
        #expect(worker.held == [2, 3])
    }

    /// `--halt soon`: asked for leases back, it gives those it has not started, with their credit,
    /// and goes on with those it runs.
    @Test func aHandBackReturnsOnlyWhatHasNotStarted() {
        var worker = machine(slots: 1, prefetch: 2)
        _ = worker.connected(now: .zero)
        #expect(started(worker.assigned([assignment(1), assignment(2), assignment(3)], now: .zero)) == [1])
        let actions = worker.handBack([1, 2, 3], now: .milliseconds(10))
        #expect(sent(actions) == [.release(leaseIDs: [2, 3]), .credit(count: 2)])
        #expect(worker.waiting.isEmpty)
        #expect(worker.held == [1])
        // Nothing to give back: nothing said.
        #expect(worker.handBack([1], now: .milliseconds(20)).isEmpty)
        let finished = worker.finished(completion(1), duration: .milliseconds(50), now: .milliseconds(60))
        #expect(started(finished).isEmpty)
        #expect(sent(finished).contains { if case .completed([completion(1)], _) = $0 { true } else { false } })
    }

    @Test func commandsNeverRunInlineAndTinySwiftTasksDo() {
        var worker = machine(slots: 1, prefetch: 0)
        _ = worker.connected(now: .zero)
        let first = worker.assigned([assignment(1, swift: true)], now: .zero)
        #expect(first == [.start(assignment(1, swift: true), inline: false)])
        _ = worker.finished(completion(1), duration: .microseconds(20), now: .zero)
        #expect(worker.assigned([assignment(2, swift: true)], now: .zero).contains(.start(assignment(2, swift: true), inline: true)))
        _ = worker.finished(completion(2), duration: .microseconds(20), now: .zero)
        #expect(worker.assigned([assignment(3)], now: .zero).contains(.start(assignment(3), inline: false)))
    }

    @Test func shortTasksRaiseThePrefetchAndTheirReportsGoInBatches() {
        var worker = machine(slots: 1, prefetch: 1)
        _ = worker.connected(now: .zero)
        _ = worker.assigned((1...5).map { assignment(LeaseID($0)) }, now: .zero)
        // Tasks of 10 µs: the prefetch rises (more credit), and while tasks wait, reports wait.
        let first = worker.finished(completion(1), duration: .microseconds(10), now: .microseconds(10))
        #expect(sent(first).isEmpty)
        let second = worker.finished(completion(2), duration: .microseconds(10), now: .microseconds(20))
        #expect(sent(second).isEmpty)
        // 2 ms later the batch is due, with both reports and all the credit so far.
        let tick = worker.tick(now: .milliseconds(3))
        guard case .completed(let completions, let credit)? = sent(tick).first else {
            Issue.record("the batch was not sent: \(tick)")
            return
        }
        #expect(completions == [completion(1), completion(2)])
        #expect(credit > 2)
    }

    @Test func anIdleWorkerReportsAtOnce() {
        var worker = machine(slots: 1, prefetch: 0)
        _ = worker.connected(now: .zero)
        _ = worker.assigned([assignment(1)], now: .zero)
        // A short task, but nothing waits: its report goes at once, with the raised prefetch's credit.
        let finished = worker.finished(completion(1), duration: .microseconds(10), now: .microseconds(10))
        guard case .completed(let completions, let credit)? = sent(finished).first else {
            Issue.record("the report waited: \(finished)")
            return
        }
        #expect(completions == [completion(1)])
        #expect(credit == 1 + 256)
    }

    @Test func heartbeatsRenewHeldLeasesOnlyWhenDue() {
        var worker = machine(slots: 1, prefetch: 1)
        _ = worker.connected(now: .zero)
        #expect(worker.tick(now: .seconds(5)).isEmpty)
        _ = worker.assigned([assignment(1)], now: .seconds(5))
        // No heartbeat for over a second: the first tick with leases sends one.
        #expect(sent(worker.tick(now: .milliseconds(5_500))) == [.heartbeat(leaseIDs: [1])])
        #expect(sent(worker.tick(now: .milliseconds(6_100))).isEmpty)
        #expect(sent(worker.tick(now: .milliseconds(6_600))) == [.heartbeat(leaseIDs: [1])])
    }

    /// Behind a long task, a task leased ahead would wait however many workers are idle: after a
    /// second it goes back to the server, and its credit is asked for again when the slot frees.
    @Test func aTaskLeasedAheadGoesBackWhenItWaitsBehindALongOne() {
        var worker = machine(slots: 1, prefetch: 1)
        _ = worker.connected(now: .zero)
        _ = worker.assigned([assignment(1), assignment(2)], now: .zero)
        func releases(_ actions: [WorkerAction]) -> [ClientMessage] {
            sent(actions).filter { if case .release = $0 { true } else { false } }
        }
        #expect(releases(worker.tick(now: .milliseconds(900))).isEmpty)
        #expect(releases(worker.tick(now: .milliseconds(1_000))) == [.release(leaseIDs: [2])])
        #expect(worker.held == [1])
        #expect(worker.waiting.isEmpty)
        #expect(releases(worker.tick(now: .seconds(3))).isEmpty)
        let finished = worker.finished(completion(1), duration: .seconds(5), now: .seconds(5))
        guard case .completed(let completions, let credit)? = sent(finished).first else {
            Issue.record("no report: \(finished)")
            return
        }
        #expect(completions == [completion(1)])
        // One for the freed slot, one for the prefetch handed back.
        #expect(credit == 2)
    }

    /// With a slot free, a waiting task starts; none goes back.
    @Test func tasksLeasedAheadOfShortOnesStay() {
        var worker = machine(slots: 2, prefetch: 1)
        _ = worker.connected(now: .zero)
        _ = worker.assigned([assignment(1), assignment(2), assignment(3)], now: .zero)
        _ = worker.finished(completion(1), duration: .milliseconds(500), now: .milliseconds(500))
        #expect(!sent(worker.tick(now: .seconds(2))).contains { if case .release = $0 { true } else { false } })
    }

    @Test func anAbortedTaskIsCancelledAndNotReported() {
        var worker = machine(slots: 1, prefetch: 1)
        _ = worker.connected(now: .zero)
        _ = worker.assigned([assignment(1), assignment(2)], now: .zero)
        let aborted = worker.aborted([1, 2], now: .zero)
        #expect(aborted.first == .cancel([1, 2]))
        #expect(worker.waiting.isEmpty)
        // The cancelled attempt ends; it frees its slot (credit) but sends no report.
        let finished = worker.finished(completion(1), duration: .seconds(1), now: .seconds(1))
        #expect(sent(finished) == [.completed([], credit: 1)])
        #expect(worker.held.isEmpty)
    }

    @Test func aDrainHandsBackWaitingTasksAndClosesWhenRunningOnesEnd() {
        var worker = machine(slots: 1, prefetch: 2)
        _ = worker.connected(now: .zero)
        _ = worker.assigned([assignment(1), assignment(2), assignment(3)], now: .zero)
        let drain = worker.drain(now: .seconds(1))
        #expect(sent(drain) == [.release(leaseIDs: [2, 3])])
        #expect(!drain.contains(.close))
        // New assignments during a drain go straight back.
        #expect(worker.assigned([assignment(4)], now: .seconds(1)) == [.send(.release(leaseIDs: [4]))])
        // The running task finishes within the grace period: its report goes out (with no
        // credit), then the connection closes.
        let finished = worker.finished(completion(1), duration: .seconds(1), now: .seconds(2))
        #expect(sent(finished) == [.completed([completion(1)], credit: 0)])
        #expect(worker.tick(now: .seconds(2)) == [.close])
        #expect(worker.tick(now: .seconds(3)).isEmpty)
    }

    @Test func aDrainPastItsGracePeriodHandsBackWhatStillRuns() {
        var worker = machine(slots: 2, prefetch: 0, grace: .seconds(5))
        _ = worker.connected(now: .zero)
        _ = worker.assigned([assignment(1), assignment(2)], now: .zero)
        #expect(worker.drain(now: .seconds(1)).isEmpty)
        #expect(worker.tick(now: .seconds(5)).allSatisfy { $0 != .close })
        #expect(worker.tick(now: .seconds(7)) == [.send(.release(leaseIDs: [1, 2])), .close])
        #expect(worker.held.isEmpty)
    }

    @Test func aDrainWithNothingHeldClosesAtOnce() {
        var worker = machine()
        _ = worker.connected(now: .zero)
        #expect(worker.drain(now: .seconds(1)) == [.close])
        #expect(worker.drain(now: .seconds(2)).isEmpty)
    }

    @Test func thePrefetchPolicyStaysWithinItsBounds() {
        var policy = PrefetchPolicy(minimum: 1, maximum: 8)
        #expect(policy.record(.milliseconds(100)) == 0)
        var total = 0
        for _ in 0..<100 { total += policy.record(.microseconds(1)) }
        #expect(total == 7)
        #expect(policy.current == 8)
    }
}
