import DockerParallelCore
import Foundation
import Testing

/// The broker's state machine, driven without sockets or clocks: every transition a chaos run
/// relies on.
@Suite(.timeLimit(.minutes(1))) struct BrokerStateMachineTests {
    static let password = ServerPassword("secret")

    func machine(durable: Bool = false, lease: Duration = .seconds(10)) -> BrokerStateMachine {
        BrokerStateMachine(
            configuration: .init(
                jobQueueName: "test", password: Self.password, leaseDuration: lease, isDurable: durable,
                wallClockAtStart: 1_000),
            queue: TaskQueue(leaseDuration: lease.inSeconds))
    }

    func commands(_ count: Int) -> [TaskSpec] {
        (0..<count).map { TaskSpec(index: $0, kind: .command(argv: ["echo", "\($0)"], environment: [:])) }
    }

    func success(_ text: String = "ok") -> AttemptReport { AttemptReport(succeeded: true, exitCode: 0, output: Data(text.utf8)) }

    func jobStatus(_ jobID: String, total: Int, succeeded: Int = 0, cancelled: Int = 0) -> JobStatus {
        var status = JobStatus(jobID: JobID(jobID))
        status.total = total
        status.succeeded = succeeded
        status.cancelled = cancelled
        return status
    }

    /// Opens a connection and says hello.
    func connect(_ broker: inout BrokerStateMachine, _ role: PeerRole, name: String, slots: Int = 0) -> PeerID {
        let id = broker.connectionOpened()
        let actions = broker.received(
            .hello(Hello(role: role, password: "secret", name: name, slots: slots)), requestID: 1, from: id, now: .zero)
        #expect(actions.now == [.init(peer: id, requestID: 1, message: .welcome(leaseDuration: broker.configuration.leaseDuration.inSeconds))])
        return id
    }

    /// The tasks each peer was assigned.
    func assigned(_ actions: BrokerActions) -> [PeerID: [Assignment]] {
        var result: [PeerID: [Assignment]] = [:]
        for output in actions.now {
            if case .assign(let assignments) = output.message { result[output.peer, default: []] += assignments }
        }
        return result
    }

    func results(_ actions: BrokerActions, to peer: PeerID) -> [TaskResult] {
        actions.durable.filter { $0.peer == peer }.flatMap { output -> [TaskResult] in
            if case .results(let results) = output.message { return results }
            return []
        }
    }

    // MARK: A full disk

    /// While the store's disk is full, a new job is refused with a reason that names the fix,
    /// the work taken goes on, and a run sent again for a job it took is still answered.
    @Test func aFullDiskRefusesNewJobsButNotTheWorkItTook() {
        var broker = machine(durable: true)
        let client = connect(&broker, .client, name: "client")
        let worker = connect(&broker, .worker, name: "worker", slots: 1)
        _ = broker.received(.run(jobID: "taken", options: JobOptions(), tasks: commands(2)), requestID: 2, from: client, now: .zero)
        broker.storageChanged(full: "database or disk is full")

        let refused = broker.received(.submit(jobID: "new", options: JobOptions(), tasks: commands(1)), requestID: 3, from: client, now: .zero)
        guard case .error(let code, let message)? = refused.durable.first?.message else {
            Issue.record("a submit on a full disk was not refused: \(refused)")
            return
        }
        #expect(code == .storageFull)
        #expect(message.contains("disk is full (database or disk is full)"))
        #expect(message.contains("free space"))
        #expect(refused.changes.isEmpty)
        #expect(broker.queue.status(jobID: "new") == nil)

        // The taken job's tasks still go out, and its run, sent again, is no new job.
        let dispatched = broker.received(.credit(count: 1), requestID: 0, from: worker, now: .zero)
        #expect(assigned(dispatched)[worker]?.count == 1)
        let again = broker.received(.run(jobID: "taken", options: JobOptions(), tasks: commands(2)), requestID: 4, from: client, now: .zero)
        #expect(!again.durable.contains { if case .error = $0.message { true } else { false } })
        // A known job's next batch is taken too: a job is never cut in half.
        let batch = broker.received(
            .submit(jobID: "taken", options: JobOptions(), tasks: [TaskSpec(index: 2, kind: .command(argv: ["echo"], environment: [:]))]),
            requestID: 6, from: client, now: .zero)
        #expect(batch.durable.first?.message == .submitted(accepted: 1, duplicates: 0))

        broker.storageChanged(full: nil)
        let accepted = broker.received(.submit(jobID: "new", options: JobOptions(), tasks: commands(1)), requestID: 5, from: client, now: .zero)
        #expect(accepted.durable.first?.message == .submitted(accepted: 1, duplicates: 0))
    }

    // MARK: Hello

    @Test func aWrongPasswordIsRefusedAndClosedAndNothingElseIsRead() {
        var broker = machine()
        let id = broker.connectionOpened()
        let actions = broker.received(.hello(Hello(role: .client, password: "wrong", name: "c")), requestID: 7, from: id, now: .zero)
        #expect(actions.close == [id])
        guard case .error(let code, let message)? = actions.now.first?.message else {
            Issue.record("no error was sent")
            return
        }
        #expect(code == .authenticationFailed)
        #expect(message.contains("wrong cluster password for 'test'"))
        #expect(!message.contains("secret"))
        // Whatever the refused connection sends next is ignored.
        #expect(broker.received(.status, requestID: 8, from: id, now: .zero) == BrokerActions())
        #expect(broker.peer(id) == nil)
    }

    @Test func theFirstMessageMustBeHelloAndSpeakThisProtocol() {
        var broker = machine()
        let first = broker.connectionOpened()
        let refused = broker.received(.status, requestID: 1, from: first, now: .zero)
        #expect(refused.now.first?.message == .error(code: .protocolViolation, message: "the first message must be hello"))
        #expect(refused.close == [first])

        let second = broker.connectionOpened()
        var hello = Hello(role: .worker, password: "secret", name: "w")
        hello.protocolVersion = 1
        let old = broker.received(.hello(hello), requestID: 1, from: second, now: .zero)
        #expect(old.close == [second])
        guard case .error(.protocolViolation, let message)? = old.now.first?.message else {
            Issue.record("an old protocol version was not refused")
            return
        }
        #expect(message.contains("protocol version 1 is not supported"))

        let client = connect(&broker, .client, name: "c")
        let again = broker.received(.hello(Hello(role: .client, password: "secret", name: "c")), requestID: 2, from: client, now: .zero)
        #expect(again.durable.first?.message == .error(code: .protocolViolation, message: "hello was already sent on this connection"))
        #expect(again.close.isEmpty)
    }

    @Test func anUnreadableFrameClosesOnlyItsConnection() {
        var broker = machine()
        let worker = connect(&broker, .worker, name: "w", slots: 1)
        let client = connect(&broker, .client, name: "c")
        let actions = broker.unreadable(from: client, requestID: 3, code: .protocolViolation, message: "malformed")
        #expect(actions.close == [client])
        #expect(broker.peer(worker) != nil)
        // A second error on the same connection sends nothing more.
        #expect(broker.unreadable(from: client, requestID: 4, code: .protocolViolation, message: "again") == BrokerActions())
    }

    @Test func aWorkerRefusedForAnUnreadableFrameStillHandsItsLeasesBackWhenItCloses() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let alpha = connect(&broker, .worker, name: "alpha", slots: 1)
        _ = broker.received(.credit(count: 1), requestID: 0, from: alpha, now: .zero)
        let leased = assigned(broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(1)), requestID: 2, from: client, now: .zero))
        #expect(leased[alpha]?.count == 1)
        #expect(broker.unreadable(from: alpha, requestID: 0, code: .protocolViolation, message: "garbage").close == [alpha])
        // Nothing more is read from it, and it gets no new task.
        #expect(broker.received(.credit(count: 5), requestID: 0, from: alpha, now: .zero) == BrokerActions())
        let beta = connect(&broker, .worker, name: "beta", slots: 1)
        #expect(assigned(broker.received(.credit(count: 1), requestID: 0, from: beta, now: .zero)).isEmpty)
        // Once its connection closes, its task goes to another worker at once.
        let closed = broker.connectionClosed(alpha, now: .seconds(1))
        #expect(assigned(closed)[beta]?.map(\.task.index) == [0])
    }

    // MARK: Credit and dispatch

    @Test func workersGetTasksUpToTheirCreditInTurn() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let alpha = connect(&broker, .worker, name: "alpha", slots: 1)
        let beta = connect(&broker, .worker, name: "beta", slots: 1)
        #expect(assigned(broker.received(.credit(count: 2), requestID: 0, from: alpha, now: .zero)).isEmpty)
        _ = broker.received(.credit(count: 2), requestID: 0, from: beta, now: .zero)
        let submitted = broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(5)), requestID: 9, from: client, now: .zero)
        #expect(submitted.durable.first == .init(peer: client, requestID: 9, message: .submitted(accepted: 5, duplicates: 0)))
        #expect(submitted.changes.first == .submit(jobID: "j", options: JobOptions(), tasks: commands(5)))
        let byWorker = assigned(submitted)
        #expect(byWorker[alpha]?.map(\.task.index) == [0, 1])
        #expect(byWorker[beta]?.map(\.task.index) == [2, 3])
        #expect(broker.peer(alpha)?.credit == 0)
        #expect(broker.peer(alpha)?.leases.count == 2)
        // Each lease's counts are stored with the dispatch.
        #expect(submitted.changes.filter { if case .counters = $0 { true } else { false } }.count == 4)
        // The next credit goes to whichever worker is first in turn: the fifth task waits for it.
        let more = broker.received(.credit(count: 1), requestID: 0, from: beta, now: .zero)
        #expect(assigned(more)[beta]?.map(\.task.index) == [4])
    }

    @Test func creditIsCappedBySlotsAndTheMaximumPrefetch() {
        var broker = machine()
        let worker = connect(&broker, .worker, name: "w", slots: 2)
        _ = broker.received(.credit(count: 1_000_000), requestID: 0, from: worker, now: .zero)
        #expect(broker.peer(worker)?.credit == 2 * 4 + BrokerStateMachine.maximumPrefetch)
        // Hostile counts neither overflow nor go below zero.
        _ = broker.received(.credit(count: Int.max), requestID: 0, from: worker, now: .zero)
        _ = broker.received(.completed([], credit: Int.max), requestID: 0, from: worker, now: .zero)
        #expect(broker.peer(worker)?.credit == 2 * 4 + BrokerStateMachine.maximumPrefetch)
        _ = broker.received(.credit(count: Int.min), requestID: 0, from: worker, now: .zero)
        #expect(broker.peer(worker)?.credit == 0)
        // A hello with absurd slots is refused, naming the bound.
        let greedy = broker.connectionOpened()
        let tooMany = broker.received(
            .hello(Hello(role: .worker, password: "secret", name: "g", slots: Int.max)), requestID: 1, from: greedy, now: .zero)
        #expect(tooMany.close == [greedy])
        guard case .error(.invalidArgument, let message)? = tooMany.now.first?.message else {
            Issue.record("absurd slots were accepted")
            return
        }
        #expect(message.contains("a worker runs 0 to"))
        let client = connect(&broker, .client, name: "c")
        let refused = broker.received(.credit(count: 1), requestID: 5, from: client, now: .zero)
        #expect(refused.durable.first?.message == .error(code: .protocolViolation, message: "only workers take tasks"))
    }

    @Test func aDurableSubmitHoldsItsConnectionUntilStored() {
        var broker = machine(durable: true)
        let client = connect(&broker, .client, name: "c")
        let actions = broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(1)), requestID: 2, from: client, now: .zero)
        #expect(actions.pauseReading == [client])
        #expect(actions.afterWrite.contains(.resumeReading(client)))
        #expect(actions.now.isEmpty)
        #expect(actions.durable.map(\.message) == [.submitted(accepted: 1, duplicates: 0)])
        // A resubmit is idempotent.
        let again = broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(1)), requestID: 3, from: client, now: .zero)
        #expect(again.durable.map(\.message) == [.submitted(accepted: 0, duplicates: 1)])
        // Not a submit: no pause.
        #expect(broker.received(.status, requestID: 4, from: client, now: .zero).pauseReading.isEmpty)
    }

    @Test func badSubmitsAreRefusedWithTheReason() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let empty = broker.received(.submit(jobID: "", options: JobOptions(), tasks: commands(1)), requestID: 2, from: client, now: .zero)
        #expect(empty.durable.map(\.message) == [.error(code: .invalidArgument, message: "a job needs a non-empty id")])
        #expect(empty.changes.isEmpty)
        let bad = broker.received(
            .submit(jobID: "j", options: JobOptions(maxAttempts: 0), tasks: commands(1)), requestID: 3, from: client, now: .zero)
        guard case .error(.invalidArgument, _)? = bad.durable.first?.message else {
            Issue.record("zero attempts was accepted")
            return
        }
        #expect(bad.changes.isEmpty)
    }

    // MARK: Results, watches and runs

    @Test func watchersSeeResultsOnceStoredAndALateDuplicateCommitsNothing() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let worker = connect(&broker, .worker, name: "w", slots: 1)
        _ = broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(2)), requestID: 2, from: client, now: .zero)
        let watch = broker.received(.watch(jobID: "j"), requestID: 3, from: client, now: .zero)
        #expect(watch.durable.last?.message == .job(broker.queue.status(jobID: "j") ?? JobStatus(jobID: "x")))
        let leases = assigned(broker.received(.credit(count: 2), requestID: 0, from: worker, now: .zero))[worker] ?? []
        #expect(leases.count == 2)
        let report = Completion(leaseID: leases[0].leaseID, jobID: "j", index: 0, report: success("zero"))
        let done = broker.received(.completed([report], credit: 1), requestID: 0, from: worker, now: .milliseconds(5))
        #expect(done.now.allSatisfy { $0.peer != client })
        #expect(results(done, to: client).map(\.output) == [Data("zero".utf8)])
        #expect(done.changes.contains(.result(results(done, to: client)[0])))
        #expect(broker.peer(worker)?.leases.count == 1)
        // The same report again (a retried send): no result, no message to the watcher.
        let duplicate = broker.received(.completed([report], credit: 0), requestID: 0, from: worker, now: .milliseconds(6))
        #expect(results(duplicate, to: client).isEmpty)
        #expect(broker.queue.status(jobID: "j")?.succeeded == 1)
        // An unknown watch is an error that names the job.
        let unknown = broker.received(.watch(jobID: "nope"), requestID: 4, from: client, now: .zero)
        #expect(unknown.durable.map(\.message) == [.error(code: .invalidArgument, message: "there is no job 'nope' on this server")])
    }

    @Test func aRunIsQuietUntilResultsAndForgottenOnceAllSucceeded() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let worker = connect(&broker, .worker, name: "w", slots: 1)
        _ = broker.received(.credit(count: 1), requestID: 0, from: worker, now: .zero)
        let run = broker.received(.run(jobID: "r", options: JobOptions(), tasks: commands(1)), requestID: 5, from: client, now: .zero)
        #expect(run.durable.isEmpty)
        let lease = assigned(run)[worker]?.first
        #expect(lease?.jobID == "r")
        let done = broker.received(
            .completed([Completion(leaseID: lease?.leaseID ?? 0, jobID: "r", index: 0, report: success())], credit: 1),
            requestID: 0, from: worker, now: .zero)
        #expect(results(done, to: client).count == 1)
        #expect(done.durable.contains { $0.requestID == 5 && $0.message == .job(jobStatus("r", total: 1, succeeded: 1)) })
        #expect(done.changes.contains(.forget(jobID: "r")))
        #expect(broker.queue.status(jobID: "r") == nil)
    }

    @Test func aRunWithAFailedTaskIsKept() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let worker = connect(&broker, .worker, name: "w", slots: 1)
        _ = broker.received(.credit(count: 1), requestID: 0, from: worker, now: .zero)
        let run = broker.received(
            .run(jobID: "r", options: JobOptions(maxAttempts: 1), tasks: commands(1)), requestID: 5, from: client, now: .zero)
        let lease = assigned(run)[worker]?.first?.leaseID ?? 0
        let failure = AttemptReport(succeeded: false, exitCode: 1, error: "exit status 1")
        let done = broker.received(
            .completed([Completion(leaseID: lease, jobID: "r", index: 0, report: failure)], credit: 1), requestID: 0, from: worker, now: .zero)
        #expect(results(done, to: client).first?.status == .failed)
        #expect(!done.changes.contains(.forget(jobID: "r")))
        #expect(broker.queue.status(jobID: "r")?.failed == 1)
    }

    // MARK: Faults

    @Test func anExpiredLeaseGoesToAnotherWorker() {
        var broker = machine(lease: .seconds(2))
        let client = connect(&broker, .client, name: "c")
        let alpha = connect(&broker, .worker, name: "alpha", slots: 1)
        _ = broker.received(.credit(count: 1), requestID: 0, from: alpha, now: .zero)
        let first = assigned(broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(1)), requestID: 2, from: client, now: .zero))
        #expect(first[alpha]?.count == 1)
        let beta = connect(&broker, .worker, name: "beta", slots: 1)
        _ = broker.received(.credit(count: 1), requestID: 0, from: beta, now: .seconds(1))
        // A heartbeat keeps the lease; without one it expires and the task goes to beta.
        _ = broker.received(.heartbeat(leaseIDs: first[alpha]?.map(\.leaseID) ?? []), requestID: 0, from: alpha, now: .seconds(1))
        #expect(assigned(broker.expireLeases(now: .milliseconds(2_500))).isEmpty)
        let expired = broker.expireLeases(now: .seconds(4))
        #expect(assigned(expired)[beta]?.map(\.attempt) == [2])
        #expect(expired.changes.contains { if case .attempt(let record) = $0 { record.outcome == .lost } else { false } })
        // Attempt log times are wall-clock times.
        #expect(expired.changes.contains { if case .attempt(let record) = $0 { record.started >= 1_000 } else { false } })
    }

    /// A worker whose lease expired went silent: its task goes to another worker, not back to
    /// it, and it gets tasks again once it reports.
    @Test func aSilentWorkerGetsNoTaskBackUntilItSpeaks() {
        var broker = machine(lease: .seconds(2))
        let client = connect(&broker, .client, name: "c")
        let alpha = connect(&broker, .worker, name: "alpha", slots: 2)
        _ = broker.received(.credit(count: 2), requestID: 0, from: alpha, now: .zero)
        let first = assigned(broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(1)), requestID: 2, from: client, now: .zero))
        let lease = try! #require(first[alpha]?.first?.leaseID)
        // Alpha had credit to spare, but is silent: its expired task waits for another worker.
        #expect(assigned(broker.expireLeases(now: .seconds(3))).isEmpty)
        #expect(broker.peer(alpha)?.leases.isEmpty == true)
        let beta = connect(&broker, .worker, name: "beta", slots: 1)
        #expect(assigned(broker.received(.credit(count: 1), requestID: 0, from: beta, now: .seconds(4)))[beta]?.map(\.attempt) == [2])
        // Alpha's late report brings its credit back: the one it had left, and the one it sends.
        _ = broker.received(
            .completed([Completion(leaseID: lease, jobID: "j", index: 0, report: success())], credit: 1), requestID: 0, from: alpha,
            now: .seconds(5))
        let next = broker.received(.submit(jobID: "k", options: JobOptions(), tasks: commands(3)), requestID: 3, from: client, now: .seconds(5))
        #expect(assigned(next)[alpha]?.count == 2)
    }

    @Test func aLostWorkersTasksRunElsewhere() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let alpha = connect(&broker, .worker, name: "alpha", slots: 2)
        let beta = connect(&broker, .worker, name: "beta", slots: 2)
        _ = broker.received(.credit(count: 2), requestID: 0, from: alpha, now: .zero)
        let submitted = broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(2)), requestID: 2, from: client, now: .zero)
        #expect(assigned(submitted)[alpha]?.count == 2)
        _ = broker.received(.credit(count: 2), requestID: 0, from: beta, now: .zero)
        let lost = broker.connectionClosed(alpha, now: .seconds(1))
        #expect(assigned(lost)[beta]?.map(\.task.index).sorted() == [0, 1])
        #expect(broker.peer(alpha) == nil)
        #expect(broker.queue.status(jobID: "j")?.running == 2)
        // Its late report, from a connection the broker no longer knows, is ignored.
        #expect(broker.received(.credit(count: 1), requestID: 0, from: alpha, now: .seconds(2)) == BrokerActions())
    }

    @Test func aWorkerOutOfAttemptsFailsTheTaskForItsWatcher() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        _ = broker.received(.submit(jobID: "j", options: JobOptions(maxAttempts: 1), tasks: commands(1)), requestID: 2, from: client, now: .zero)
        _ = broker.received(.watch(jobID: "j"), requestID: 3, from: client, now: .zero)
        let worker = connect(&broker, .worker, name: "w", slots: 1)
        _ = broker.received(.credit(count: 1), requestID: 0, from: worker, now: .zero)
        let lost = broker.connectionClosed(worker, now: .seconds(1))
        let failed = results(lost, to: client)
        #expect(failed.map(\.status) == [.failed])
        #expect(failed.first?.error?.isEmpty == false)
    }

    @Test func cancellingARunningTaskAbortsItOnItsWorker() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let worker = connect(&broker, .worker, name: "w", slots: 2)
        _ = broker.received(.credit(count: 2), requestID: 0, from: worker, now: .zero)
        let leases = assigned(broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(3)), requestID: 2, from: client, now: .zero))[worker] ?? []
        let cancel = broker.received(.cancel(jobID: "j", index: nil), requestID: 4, from: client, now: .seconds(1))
        #expect(cancel.now == [.init(peer: worker, requestID: 0, message: .abort(leaseIDs: leases.map(\.leaseID)))])
        #expect(broker.peer(worker)?.leases.isEmpty == true)
        #expect(cancel.durable.contains { $0.message == .job(jobStatus("j", total: 3, cancelled: 3)) })
        // The worker's report for an aborted lease commits nothing.
        let late = broker.received(
            .completed([Completion(leaseID: leases[0].leaseID, jobID: "j", index: 0, report: success())], credit: 1),
            requestID: 0, from: worker, now: .seconds(2))
        #expect(late.changes.allSatisfy { if case .result = $0 { false } else { true } })
        #expect(broker.queue.status(jobID: "j")?.cancelled == 3)
        let unknown = broker.received(.cancel(jobID: "nope", index: nil), requestID: 5, from: client, now: .zero)
        #expect(unknown.durable.map(\.message) == [.error(code: .invalidArgument, message: "there is no job 'nope' on this server")])
    }

    /// `--halt soon`: queued tasks are cancelled at once, the worker is asked for the ones it
    /// holds, those it gives back are cancelled, and the one it runs finishes and counts.
    @Test func stoppingAJobCancelsWhatHasNotStartedAndLetsRunningTasksFinish() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let worker = connect(&broker, .worker, name: "w", slots: 1)
        _ = broker.received(.credit(count: 2), requestID: 0, from: worker, now: .zero)
        let leases = assigned(broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(4)), requestID: 2, from: client, now: .zero))[worker] ?? []
        #expect(leases.count == 2)
        let stop = broker.received(.stopStarting(jobID: "j"), requestID: 3, from: client, now: .seconds(1))
        #expect(stop.now == [.init(peer: worker, requestID: 0, message: .handBack(leaseIDs: leases.map(\.leaseID)))])
        #expect(broker.queue.status(jobID: "j")?.cancelled == 2)
        // The worker gives back the one it had not started: cancelled, not queued again.
        let released = broker.received(.release(leaseIDs: [leases[1].leaseID]), requestID: 0, from: worker, now: .seconds(2))
        #expect(released.changes.contains { if case .result(let result) = $0 { result.index == leases[1].task.index && result.status == .cancelled } else { false } })
        _ = broker.received(.credit(count: 1), requestID: 0, from: worker, now: .seconds(2))
        #expect(broker.queue.status(jobID: "j")?.cancelled == 3)
        #expect(broker.queue.status(jobID: "j")?.queued == 0)
        // The running one finishes and counts.
        _ = broker.received(
            .completed([Completion(leaseID: leases[0].leaseID, jobID: "j", index: leases[0].task.index, report: success())], credit: 1),
            requestID: 0, from: worker, now: .seconds(3))
        #expect(broker.queue.status(jobID: "j")?.succeeded == 1)
        // Queued again, the job starts tasks again.
        _ = broker.received(.retry(jobID: "j", indices: nil), requestID: 4, from: client, now: .seconds(4))
        #expect(broker.queue.status(jobID: "j")?.cancelled == 0)
        let unknown = broker.received(.stopStarting(jobID: "nope"), requestID: 5, from: client, now: .zero)
        #expect(unknown.durable.map(\.message) == [.error(code: .invalidArgument, message: "there is no job 'nope' on this server")])
    }

    @Test func aDrainingWorkerHandsTasksBackWithoutUsingAttempts() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let alpha = connect(&broker, .worker, name: "alpha", slots: 1)
        _ = broker.received(.credit(count: 3), requestID: 0, from: alpha, now: .zero)
        let leases = assigned(broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(3)), requestID: 2, from: client, now: .zero))[alpha] ?? []
        #expect(leases.count == 3)
        // On SIGTERM the worker hands back what it has not started; it gets nothing more.
        let released = broker.received(.release(leaseIDs: leases.dropFirst().map(\.leaseID)), requestID: 0, from: alpha, now: .seconds(1))
        #expect(assigned(released).isEmpty)
        #expect(broker.peer(alpha)?.credit == 0)
        #expect(broker.peer(alpha)?.leases == [leases[0].leaseID])
        let beta = connect(&broker, .worker, name: "beta", slots: 2)
        let taken = assigned(broker.received(.credit(count: 2), requestID: 0, from: beta, now: .seconds(1)))[beta] ?? []
        #expect(taken.map(\.task.index).sorted() == [1, 2])
        // A handed-back task does not use up an attempt.
        #expect(taken.map(\.attempt) == [1, 1])
    }

    @Test func retryQueuesFailedTasksAgainAndForgetRemovesTheJob() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let worker = connect(&broker, .worker, name: "w", slots: 1)
        _ = broker.received(.credit(count: 1), requestID: 0, from: worker, now: .zero)
        let lease = assigned(broker.received(
            .submit(jobID: "j", options: JobOptions(maxAttempts: 1), tasks: commands(1)), requestID: 2, from: client, now: .zero))[worker]?.first
        let failure = AttemptReport(succeeded: false, exitCode: 3, error: "exit status 3")
        _ = broker.received(
            .completed([Completion(leaseID: lease?.leaseID ?? 0, jobID: "j", index: 0, report: failure)], credit: 1),
            requestID: 0, from: worker, now: .zero)
        let retried = broker.received(.retry(jobID: "j", indices: nil), requestID: 3, from: client, now: .zero)
        #expect(retried.changes.contains(.retry(jobID: "j", indices: [0])))
        #expect(assigned(retried)[worker]?.map(\.task.index) == [0])
        let forgotten = broker.received(.forget(jobID: "j"), requestID: 4, from: client, now: .zero)
        #expect(forgotten.durable.map(\.message) == [.done])
        #expect(forgotten.changes.contains(.forget(jobID: "j")))
        #expect(broker.queue.status(jobID: "j") == nil)
    }

    @Test func statusListsConnectedWorkersAndJobs() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let worker = connect(&broker, .worker, name: "w1", slots: 3)
        _ = broker.received(.credit(count: 1), requestID: 0, from: worker, now: .zero)
        _ = broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(2)), requestID: 2, from: client, now: .zero)
        let status = broker.received(.status, requestID: 3, from: client, now: .seconds(7))
        guard case .status(let report)? = status.durable.first?.message else {
            Issue.record("no status")
            return
        }
        #expect(report.jobQueueName == "test")
        #expect(report.uptime == .seconds(7))
        #expect(report.workers == [ServerReport.Worker(name: "w1", slots: 3, running: 1)])
        #expect(report.jobs.map(\.queued) == [1])
        _ = broker.connectionClosed(worker, now: .seconds(8))
        guard case .status(let after)? = broker.received(.status, requestID: 4, from: client, now: .seconds(8)).durable.first?.message else {
            Issue.record("no status")
            return
        }
        #expect(after.workers.isEmpty)
    }

    @Test func aClientAsksForAWorkerNumberThatTheReportCarries() {
        var broker = machine()
        let client = connect(&broker, .client, name: "c")
        let worker = connect(&broker, .worker, name: "w1", slots: 1)
        #expect(broker.report(now: .zero).desiredWorkers == nil)
        guard case .status(let report)? = broker.received(.setWorkers(count: 4), requestID: 1, from: client, now: .zero).durable.first?.message else {
            Issue.record("no status")
            return
        }
        #expect(report.desiredWorkers == 4)
        // A worker may not, nor may anyone ask for a negative or absurd number: nothing changes.
        for (peer, count) in [(worker, 2), (client, -1), (client, 1_000_000)] {
            guard case .error(let code, let message)? = broker.received(.setWorkers(count: count), requestID: 2, from: peer, now: .zero).durable.first?.message else {
                Issue.record("no refusal of \(count)")
                return
            }
            #expect(code == (peer == worker ? .protocolViolation : .invalidArgument), "\(message)")
        }
        #expect(broker.report(now: .zero).desiredWorkers == 4)
    }

    @Test func theAttemptsLogIsReadFromTheStoreAfterPendingWrites() {
        var broker = machine(durable: true)
        let client = connect(&broker, .client, name: "c")
        _ = broker.received(.submit(jobID: "j", options: JobOptions(), tasks: commands(1)), requestID: 2, from: client, now: .zero)
        let attempts = broker.received(.attempts(jobID: "j", index: 0), requestID: 3, from: client, now: .zero)
        #expect(attempts.afterWrite == [.sendAttempts(jobID: "j", index: 0, peer: client, requestID: 3)])
        #expect(attempts.afterWrite.first?.readsAttempts == true)
    }
}
