import DockerParallelCore
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2))) struct TaskQueueTests {
    let worker = WorkerID(1)
    let other = WorkerID(2)

    func commands(_ count: Int) -> [TaskSpec] {
        (0..<count).map { TaskSpec(index: $0, kind: .command(argv: ["echo", "\($0)"], environment: [:])) }
    }

    func success(_ text: String = "ok") -> AttemptReport { AttemptReport(succeeded: true, exitCode: 0, output: Data(text.utf8)) }

    @Test func leasesInSubmissionOrderAndCommitsOnce() {
        var queue = TaskQueue(leaseDuration: 10)
        #expect(queue.submit(jobID: "j", options: JobOptions(), tasks: commands(3)) == (3, 0))
        let leased = queue.lease(to: worker, limit: 2, now: 0)
        #expect(leased.map(\.task.index) == [0, 1])
        #expect(leased.allSatisfy { $0.attempt == 1 })
        let result = queue.complete(from: worker, leaseID: leased[0].leaseID, jobID: "j", index: 0, report: success())
        #expect(result?.status == .succeeded)
        #expect(result?.output == Data("ok".utf8))
        // The same report again is a duplicate and commits nothing.
        #expect(queue.complete(from: worker, leaseID: leased[0].leaseID, jobID: "j", index: 0, report: success()) == nil)
        #expect(queue.ignoredReports == 1)
        #expect(queue.status(jobID: "j")?.succeeded == 1)
        #expect(queue.status(jobID: "j")?.running == 1)
        #expect(queue.status(jobID: "j")?.queued == 1)
    }

    @Test func dispatchWaitsRunFromWhenATaskBecameReady() {
        var queue = TaskQueue(leaseDuration: 10)
        _ = queue.submit(jobID: "j", options: JobOptions(failureRetries: 1), tasks: commands(2), now: 1)
        let first = queue.lease(to: worker, limit: 1, now: 1.5)
        _ = queue.lease(to: other, limit: 1, now: 4)
        #expect(queue.takeDispatchWaits() == [0.5, 3])
        #expect(queue.takeDispatchWaits().isEmpty)
        // A failed attempt puts its task back: its wait starts again then, not at submission.
        let failure = AttemptReport(succeeded: false, exitCode: 1, output: Data())
        _ = queue.complete(from: worker, leaseID: first[0].leaseID, jobID: "j", index: 0, report: failure, now: 6)
        _ = queue.lease(to: worker, limit: 1, now: 6.25)
        #expect(queue.takeDispatchWaits() == [0.25])
        // Tasks submitted with no time (restored from a store) are not measured.
        _ = queue.submit(jobID: "k", options: JobOptions(), tasks: commands(1))
        #expect(queue.lease(to: other, limit: 1, now: 9).count == 1)
        #expect(queue.takeDispatchWaits().isEmpty)
    }

    @Test func theAttemptLogRecordsEveryLeaseAndLateReports() {
        var queue = TaskQueue(leaseDuration: 10)
        _ = queue.submit(jobID: "j", options: JobOptions(), tasks: commands(2))
        let first = queue.lease(to: worker, name: "alpha", limit: 2, now: 1)
        #expect(queue.takeAttemptLog().map(\.outcome) == [.running, .running])
        // Worker 1's lease on task 0 expires; worker 2 runs it; worker 1's report comes late.
        queue.heartbeat(from: worker, leaseIDs: [first[1].leaseID], now: 8)
        _ = queue.expireLeases(now: 12)
        let second = queue.lease(to: other, name: "beta", limit: 1, now: 12)[0]
        #expect(queue.complete(from: worker, leaseID: first[0].leaseID, jobID: "j", index: 0, report: success(), now: 13) != nil)
        #expect(queue.complete(from: other, leaseID: second.leaseID, jobID: "j", index: 0, report: success(), now: 14) == nil)
        queue.release(from: worker, leaseIDs: [first[1].leaseID], now: 15)
        let log = queue.takeAttemptLog()
        // The late success still commits (a result is as good late); beta's report is then late.
        #expect(log.map(\.outcome) == [.lost, .running, .lost, .succeeded, .late, .released])
        #expect(log.map(\.worker) == ["alpha", "beta", "beta", "worker-1", "worker-2", "alpha"])
        #expect(log[0].error == "its lease expired without a heartbeat")
        #expect(log[2].error == "another attempt succeeded first")
        #expect(log[4].error == "the task already had its result")
        #expect(log[1].attempt == 2 && log[1].started == 12)
        #expect(queue.takeAttemptLog().isEmpty)
        #expect(queue.results(jobID: "j").count == 1)
    }

    @Test func payloadsBeyondTheResidentLimitAreLoadedWhenNeeded() {
        var queue = TaskQueue(leaseDuration: 10, residentLimit: 4)
        let tasks = commands(10)
        _ = queue.submit(jobID: "j", options: JobOptions(), tasks: tasks)
        #expect(queue.spilledCount == 6)
        // Enough in memory: nothing to load yet.
        #expect(queue.spilledKeysToLoad(limit: 100).isEmpty)
        #expect(queue.lease(to: worker, limit: 10, now: 0).map(\.task.index) == [0, 1, 2, 3])
        let keys = queue.spilledKeysToLoad(limit: 3)
        #expect(keys.map(\.index) == [4, 5, 6])
        // One load at a time.
        #expect(queue.spilledKeysToLoad(limit: 3).isEmpty)
        // Task 5's payload is not stored yet: it waits for the next load, in its place.
        queue.load(keys.map { ($0, $0.index == 5 ? nil : tasks[$0.index]) })
        #expect(queue.lease(to: worker, limit: 10, now: 0).map(\.task) == [tasks[4], tasks[6]])
        let rest = queue.spilledKeysToLoad(limit: 100)
        #expect(rest.map(\.index) == [5, 7, 8, 9])
        queue.load(rest.map { ($0, tasks[$0.index]) })
        #expect(queue.lease(to: worker, limit: 10, now: 0).map(\.task.index) == [5, 7, 8, 9])
        #expect(queue.spilledCount == 0)
        #expect(queue.status(jobID: "j")?.running == 10)
    }

    @Test func resubmittingTheSameKeysAddsNothing() {
        var queue = TaskQueue()
        _ = queue.submit(jobID: "j", options: JobOptions(), tasks: commands(5))
        #expect(queue.submit(jobID: "j", options: JobOptions(), tasks: commands(7)) == (2, 5))
        #expect(queue.status(jobID: "j")?.total == 7)
    }

    @Test func anExpiredLeaseGoesBackAndHeartbeatsKeepItAlive() {
        var queue = TaskQueue(leaseDuration: 10)
        _ = queue.submit(jobID: "j", options: JobOptions(), tasks: commands(2))
        let leases = queue.lease(to: worker, limit: 2, now: 0)
        queue.heartbeat(from: worker, leaseIDs: [leases[0].leaseID], now: 8)
        #expect(queue.expireLeases(now: 12).isEmpty)
        // Task 1 had no heartbeat: it is queued again and leased as attempt 2; task 0 is still leased.
        let again = queue.lease(to: other, limit: 5, now: 12)
        #expect(again.map(\.task.index) == [1])
        #expect(again.first?.attempt == 2)
    }

    @Test func aLateSuccessFromAnExpiredLeaseWinsAndTheNewHolderIsIgnored() {
        var queue = TaskQueue(leaseDuration: 1)
        _ = queue.submit(jobID: "j", options: JobOptions(), tasks: commands(1))
        let first = queue.lease(to: worker, limit: 1, now: 0)[0]
        _ = queue.expireLeases(now: 5)
        let second = queue.lease(to: other, limit: 1, now: 5)[0]
        #expect(queue.complete(from: worker, leaseID: first.leaseID, jobID: "j", index: 0, report: success("late"))?.output == Data("late".utf8))
        #expect(queue.complete(from: other, leaseID: second.leaseID, jobID: "j", index: 0, report: success("second")) == nil)
        #expect(queue.results(jobID: "j").count == 1)
        #expect(queue.leaseCount == 0)
    }

    @Test func aLostWorkerRequeuesItsTasksUntilAttemptsRunOut() {
        var queue = TaskQueue()
        _ = queue.submit(jobID: "j", options: JobOptions(maxAttempts: 2), tasks: commands(1))
        _ = queue.lease(to: worker, limit: 1, now: 0)
        #expect(queue.workerLost(worker).isEmpty)
        _ = queue.lease(to: other, limit: 1, now: 1)
        let failed = queue.workerLost(other)
        #expect(failed.count == 1)
        #expect(failed.first?.status == .failed)
        #expect(failed.first?.attempts == 2)
        #expect(failed.first?.error?.contains("worker disconnected") == true)
    }

    @Test func aTaskThatKeepsKillingItsWorkerFailsInTheEnd() {
        var queue = TaskQueue()
        _ = queue.submit(jobID: "j", options: JobOptions(maxAttempts: 3), tasks: commands(2))
        var failed: [TaskResult] = []
        for round in 1...3 {
            let worker = WorkerID(UInt64(round))
            // The worker holds both tasks (one running, one prefetched) when it dies.
            #expect(queue.lease(to: worker, limit: 2, now: 0).count == 2)
            failed += queue.workerLost(worker)
        }
        #expect(failed.map(\.index).sorted() == [0, 1])
        #expect(failed.allSatisfy { $0.status == .failed && $0.attempts == 3 })
    }

    @Test(arguments: [0, 2])
    func aFailingTaskIsRetriedOnlyAsAsked(retries: Int) {
        var queue = TaskQueue()
        _ = queue.submit(jobID: "j", options: JobOptions(failureRetries: retries), tasks: commands(1))
        var result: TaskResult?
        var attempts = 0
        while result == nil, let lease = queue.lease(to: worker, limit: 1, now: 0).first {
            attempts += 1
            result = queue.complete(from: worker, leaseID: lease.leaseID, jobID: "j", index: 0, report: AttemptReport(
                succeeded: false, exitCode: 3, errorOutput: Data("boom\n".utf8), error: "exited with status 3"))
        }
        #expect(attempts == retries + 1)
        #expect(result?.status == .failed)
        #expect(result?.exitCode == 3)
        #expect(result?.lastErrorLines() == "boom")
    }

    @Test func aPermanentFailureIsNotRetried() {
        var queue = TaskQueue()
        _ = queue.submit(jobID: "j", options: JobOptions(failureRetries: 5), tasks: commands(1))
        let lease = queue.lease(to: worker, limit: 1, now: 0)[0]
        let result = queue.complete(from: worker, leaseID: lease.leaseID, jobID: "j", index: 0, report: AttemptReport(
            succeeded: false, permanent: true, error: "command not found"))
        #expect(result?.status == .failed)
        #expect(queue.lease(to: worker, limit: 1, now: 0).isEmpty)
    }

    @Test func releasedTasksGoFirstWithoutSpendingAnAttempt() {
        var queue = TaskQueue()
        _ = queue.submit(jobID: "j", options: JobOptions(), tasks: commands(3))
        let lease = queue.lease(to: worker, limit: 1, now: 0)[0]
        queue.release(from: worker, leaseIDs: [lease.leaseID])
        let next = queue.lease(to: other, limit: 1, now: 0)[0]
        #expect(next.task.index == 0)
        #expect(next.attempt == 1)
    }

    @Test func cancelCommitsEveryUnfinishedTaskOnce() {
        var queue = TaskQueue()
        _ = queue.submit(jobID: "j", options: JobOptions(), tasks: commands(4))
        let lease = queue.lease(to: worker, limit: 1, now: 0)[0]
        _ = queue.complete(from: worker, leaseID: lease.leaseID, jobID: "j", index: 0, report: success())
        _ = queue.lease(to: worker, limit: 1, now: 0)
        let cancellation = queue.cancel(jobID: "j")
        let cancelled = cancellation.results
        #expect(cancelled.map(\.index) == [1, 2, 3])
        #expect(cancellation.abortedLeases.map(\.worker) == [worker])
        #expect(cancelled.allSatisfy { $0.status == .cancelled })
        #expect(queue.status(jobID: "j")?.isComplete == true)
        #expect(queue.lease(to: other, limit: 5, now: 0).isEmpty)
        #expect(queue.cancel(jobID: "j").results.isEmpty)
    }

    @Test func failedAndCancelledTasksCanBeQueuedAgainWithTheirInput() {
        var queue = TaskQueue()
        let tasks = [TaskSpec(index: 0, kind: .swift(name: "T"), input: Data("a".utf8)),
                     TaskSpec(index: 1, kind: .swift(name: "T"), input: Data("b".utf8)),
                     TaskSpec(index: 2, kind: .swift(name: "T"), input: Data("c".utf8))]
        _ = queue.submit(jobID: "j", options: JobOptions(), tasks: tasks)
        let leases = queue.lease(to: worker, limit: 2, now: 0)
        _ = queue.complete(from: worker, leaseID: leases[0].leaseID, jobID: "j", index: 0, report: success())
        _ = queue.complete(from: worker, leaseID: leases[1].leaseID, jobID: "j", index: 1, report: AttemptReport(succeeded: false, error: "no"))
        _ = queue.cancel(jobID: "j", index: 2)
        #expect(queue.retry(jobID: "j") == [1, 2])
        #expect(queue.status(jobID: "j")?.queued == 2)
        #expect(queue.status(jobID: "j")?.succeeded == 1)
        let again = queue.lease(to: other, limit: 5, now: 1).sorted { $0.task.index < $1.task.index }
        #expect(again.map(\.task.input) == [Data("b".utf8), Data("c".utf8)])
        #expect(again.map(\.attempt) == [1, 1])
        #expect(queue.retry(jobID: "j").isEmpty)
    }

    @Test func forgetRemovesTheJob() {
        var queue = TaskQueue()
        _ = queue.submit(jobID: "j", options: JobOptions(), tasks: commands(2))
        _ = queue.lease(to: worker, limit: 1, now: 0)
        queue.forget(jobID: "j")
        #expect(queue.status(jobID: "j") == nil)
        #expect(queue.leaseCount == 0)
        #expect(!queue.hasQueuedTasks)
    }
}
