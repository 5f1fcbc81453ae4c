import DockerParallelCore
import Foundation
import Testing

/// The pure rules by which a group commit skips rows a later change makes redundant.
@Suite struct StoreChangeTests {
    func attempt(_ lease: LeaseID, index: Int = 0, _ outcome: AttemptOutcome) -> StoreChange {
        .attempt(AttemptRecord(jobID: "j", index: index, attempt: 1, leaseID: lease, worker: "w", started: 1, outcome: outcome))
    }

    func result(_ index: Int) -> StoreChange {
        .result(TaskResult(jobID: "j", index: index, status: .succeeded, attempts: 1))
    }

    @Test func anAttemptsLaterEntryReplacesItsEarlierOnes() {
        let changes = [attempt(1, .running), attempt(2, index: 1, .running), attempt(1, .succeeded)]
        #expect(StoreChange.needed(changes) == [1, 2])
    }

    @Test func laterCountsOrAResultReplaceEarlierCounts() {
        let changes: [StoreChange] = [
            .counters(jobID: "j", index: 0, attempts: 1, failures: 0),
            .counters(jobID: "j", index: 1, attempts: 1, failures: 0),
            .counters(jobID: "j", index: 0, attempts: 2, failures: 1),
            result(1),
        ]
        #expect(StoreChange.needed(changes) == [2, 3])
    }

    @Test func aBarrierKeepsEverythingBeforeIt() {
        let changes: [StoreChange] = [
            .counters(jobID: "j", index: 0, attempts: 1, failures: 0),
            attempt(1, .running),
            .retry(jobID: "j", indices: [0]),
            .counters(jobID: "j", index: 0, attempts: 1, failures: 0),
            attempt(1, .succeeded),
        ]
        #expect(StoreChange.needed(changes) == [0, 1, 2, 3, 4])
        #expect(StoreChange.needed([attempt(1, .running), .forget(jobID: "j"), attempt(1, .lost)]) == [0, 1, 2])
    }

    @Test func submitsAreAlwaysKept() {
        let submit = StoreChange.submit(jobID: "j", options: JobOptions(), tasks: [])
        #expect(StoreChange.needed([submit, submit]) == [0, 1])
    }

    @Test(arguments: [
        (StoreChange.counters(jobID: "j", index: 0, attempts: 1, failures: 0), true, false),
        (StoreChange.forget(jobID: "j"), false, true),
        (StoreChange.retry(jobID: "j", indices: [1]), false, true),
        (StoreChange.submit(jobID: "j", options: JobOptions(), tasks: []), false, false),
    ])
    func whatMayWaitAndWhatIsABarrier(change: StoreChange, mayWait: Bool, isBarrier: Bool) {
        #expect(change.mayWait == mayWait)
        #expect(change.isBarrier == isBarrier)
    }

    @Test func onlyARunningAttemptMayWait() {
        #expect(attempt(1, .running).mayWait)
        #expect(!attempt(1, .succeeded).mayWait)
        #expect(!result(0).mayWait)
        #expect(attempt(1, index: 4, .lost).taskKey == TaskQueue.Key(jobID: "j", index: 4))
        #expect(StoreChange.forget(jobID: "j").taskKey == nil)
    }
}
