import Dispatch
import DockerParallelCore
import DockerParallelWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Writes the broker's changes to its store in batches, then performs what had to wait for them
/// (submit acknowledgements, results shown to clients, reads of the store), in the order they
/// were enqueued.
///
/// One serial queue writes; while it writes, new changes gather into the next batch.
final class GroupCommitter: Sendable {
    private struct Pending {
        var changes: [StoreChange] = []
        var outputs: [Broker.Output] = []
        var afterWrite: [Broker.AfterWrite] = []
        var draining = false
        /// When the oldest change in it was enqueued.
        var since: DispatchTime?
    }

    private let store: (any BrokerStore)?
    /// Whether changes are written anywhere (otherwise what waits for them is done at once).
    var isDurable: Bool { store != nil }
    private let loadedHandler = NIOLockedValueBox<(@Sendable ([(key: TaskQueue.Key, spec: TaskSpec?)]) -> Void)?>(nil)
    private let pending = NIOLockedValueBox(Pending())
    private let queue = DispatchQueue(label: "dockerparallel.group-commit")
    /// Changes that may wait (see ``StoreChange/mayWait``), with when they were enqueued. Only
    /// the committer's queue touches them.
    private let waiting = NIOLockedValueBox<(changes: [StoreChange], since: [DispatchTime], timerSet: Bool)>(([], [], false))

    /// How long a lease's start may wait for its end before it is written anyway.
    static let maximumWait = DispatchTimeInterval.milliseconds(250)
    /// How many changes may wait at once.
    static let maximumWaiting = 65_536
    private let onFailure: @Sendable (any Error) -> Void
    /// Space given back when the disk fills, so that what was taken can still be stored.
    private let reserve: StorageReserve?
    /// Why the store cannot write now (its disk is full), while it cannot.
    private let storageFull = NIOLockedValueBox<String?>(nil)
    private let storageHandler = NIOLockedValueBox<(@Sendable (String?) -> Void)?>(nil)
    /// A batch that found the disk full, tried again on its own (before what came since) until
    /// it is written. Only the committer's queue touches it.
    private let stuck = NIOLockedValueBox<Pending?>(nil)
    /// Set once the server stops: retries and the watch for room end.
    private let closed = NIOLockedValueBox(false)
    /// How long a write that found the disk full waits before it is tried again.
    static let retryWhenFull = DispatchTimeInterval.milliseconds(250)
    /// Whether an event loop writes a small batch itself (see ``startWriting()``).
    private let writesSmallBatchesOnEventLoop: Bool
    private let metrics: ServerMetrics?

    /// Creates a committer; with no store, outputs are performed at once.
    /// - Parameters:
    ///   - reserve: Space to give back when the disk fills (see ``StorageReserve``).
    ///   - onFailure: Called when a write fails for another reason than a full disk; the
    ///     server should stop.
    ///   - metrics: Where the commit latency is recorded.
    init(
        store: (any BrokerStore)?, reserve: StorageReserve? = nil, writesSmallBatchesOnEventLoop: Bool = true,
        metrics: ServerMetrics? = nil, onFailure: @escaping @Sendable (any Error) -> Void
    ) {
        self.store = store
        self.metrics = metrics
        self.reserve = reserve
        self.writesSmallBatchesOnEventLoop = writesSmallBatchesOnEventLoop
        self.onFailure = onFailure
    }

    /// Sets what hears that the disk filled up (with why) or has room again (`nil`).
    func onStorageChange(_ handler: @escaping @Sendable (String?) -> Void) {
        storageHandler.withLockedValue { $0 = handler }
    }

    /// Sets what receives payloads loaded from the store.
    func onLoaded(_ handler: @escaping @Sendable ([(key: TaskQueue.Key, spec: TaskSpec?)]) -> Void) {
        loadedHandler.withLockedValue { $0 = handler }
    }

    /// Queues a broker event's changes for the store, with the frames and work that wait for
    /// them. Call it under the broker's lock, so that changes keep the order of events.
    /// - Returns: What needs no wait and must be done now, after the lock is released (never
    ///   under it: writing to a channel can call back into the broker).
    func enqueue(_ effects: Broker.Effects) -> Immediate {
        guard store != nil else { return Immediate(outputs: effects.durable, work: effects.afterWrite) }
        let startDrain = pending.withLockedValue { pending -> Bool? in
            // Nothing to store or read and nothing waiting: no reason to wait (and order is kept).
            if effects.changes.isEmpty && effects.afterWrite.isEmpty && !pending.draining { return nil }
            if pending.since == nil && !effects.changes.isEmpty { pending.since = .now() }
            pending.changes += effects.changes
            pending.outputs += effects.durable
            pending.afterWrite += effects.afterWrite
            if pending.draining { return false }
            pending.draining = true
            return true
        }
        switch startDrain {
        case nil: return Immediate(outputs: effects.durable, work: [])
        case true?: return Immediate(startsWriting: true)
        case false?: return Immediate()
        }
    }

    /// Frames and work for right away.
    struct Immediate {
        var outputs: [Broker.Output] = []
        var work: [Broker.AfterWrite] = []
        /// The first change since the last write: writing must start.
        var startsWriting = false
    }

    /// Does what ``enqueue(_:)`` returned.
    func perform(_ immediate: Immediate) {
        Self.perform(immediate.outputs)
        for work in immediate.work { perform(work) }
        if immediate.startsWriting { startWriting() }
    }

    /// Changes at most that an event loop writes itself.
    static let inlineLimit = 16

    /// Starts a write. On an event loop, once the loop has read what is ready now, a small batch
    /// is written on the loop's own thread (still serially with the committer's queue): a lone
    /// change, as in one task's round trip, then wakes no other thread on its way to the store
    /// and back. A larger batch goes to the committer's queue, which goes on writing while the
    /// loop reads, so that under load the two run side by side.
    ///
    /// The small write blocks the loop for one SQLite transaction (tens of microseconds with
    /// `synchronous=NORMAL`), which is why it is the faster path: handing it to the committer's
    /// thread and back costs two thread wake-ups, more than the write. `bench/run` measures
    /// both ("round trip, durable" and "durable, store writes off the event loop").
    private func startWriting() {
        guard writesSmallBatchesOnEventLoop, let loop = MultiThreadedEventLoopGroup.currentEventLoop else {
            queue.async { self.drain() }
            return
        }
        loop.execute {
            let small = self.pending.withLockedValue { $0.changes.count <= Self.inlineLimit }
            if small {
                self.queue.sync { self.drain(batches: 1) }
            } else {
                self.queue.async { self.drain() }
            }
        }
    }

    /// Writes everything enqueued so far, and performs what waited for it.
    /// - Returns: How many changes could not be written (the disk is full).
    func flush() async -> Int {
        await withCheckedContinuation { continuation in
            queue.async {
                self.drain()
                self.writeWaiting()
                let unwritten = (self.stuck.withLockedValue { $0?.changes.count } ?? 0)
                    + self.pending.withLockedValue { $0.changes.count }
                    + self.waiting.withLockedValue { $0.changes.count }
                continuation.resume(returning: unwritten)
            }
        }
    }

    /// Ends the retries of a full disk and the watch for room: the server stopped.
    func close() {
        closed.withLockedValue { $0 = true }
    }

    /// Writes what is pending, batch after batch, until nothing is; after `batches` batches
    /// the rest is left to the committer's queue.
    private func drain(batches: Int = .max) {
        var written = 0
        while written < batches, let batch = takeBatch() {
            written += 1
            do {
                recordCommit(of: try write(batch.changes, barrier: batch.afterWrite.contains { $0.readsAttempts }), since: batch.since)
                Self.perform(batch.outputs)
                for work in batch.afterWrite { perform(work) }
            } catch let error where store?.isFull(error) ?? false {
                // Nothing was written, and nothing that waits for it is done: the batch is tried
                // again on its own, before what came since, until there is space.
                stuck.withLockedValue { $0 = batch }
                diskFilled(error)
                queue.asyncAfter(deadline: .now() + Self.retryWhenFull) { [weak self] in
                    guard let self, !self.closed.withLockedValue({ $0 }) else { return }
                    self.drain()
                }
                return
            } catch {
                // Nothing is acknowledged that is not durable: the waiting peers get no answer
                // and the server stops, so that a restart resumes from what was stored.
                onFailure(error)
            }
        }
        // Still draining after its last batch: what came meanwhile is the queue's.
        if written == batches, !isIdle() {
            queue.async { self.drain() }
            return
        }
        scheduleWaitingWrite()
    }

    /// Whether nothing is pending; writing then stops.
    private func isIdle() -> Bool {
        if stuck.withLockedValue({ $0 != nil }) { return false }
        return pending.withLockedValue { pending in
            let idle = pending.changes.isEmpty && pending.outputs.isEmpty && pending.afterWrite.isEmpty
            if idle { pending.draining = false }
            return idle
        }
    }

    /// Takes the batch that found the disk full, else everything pending; `nil`, and writing
    /// stops, when nothing is.
    private func takeBatch() -> Pending? {
        if let batch = stuck.withLockedValue({ stuck in defer { stuck = nil }; return stuck }) { return batch }
        return pending.withLockedValue { pending -> Pending? in
            if pending.changes.isEmpty && pending.outputs.isEmpty && pending.afterWrite.isEmpty {
                pending.draining = false
                return nil
            }
            defer {
                pending.changes = []
                pending.outputs = []
                pending.afterWrite = []
                pending.since = nil
            }
            return pending
        }
    }

    /// Writes a batch together with the changes still waiting. Those that a later change made
    /// redundant are dropped; those that may wait and are young wait on, unless the batch has a
    /// barrier (a removal, or a read of the attempt log).
    /// - Returns: Whether anything was written, and when the oldest change written that had
    ///   waited from an earlier batch was enqueued.
    @discardableResult
    private func write(_ changes: [StoreChange], barrier: Bool) throws -> (wrote: Bool, oldestWaited: DispatchTime?) {
        guard let store else { return (false, nil) }
        let now = DispatchTime.now()
        let (before, beforeSince) = waiting.withLockedValue { waiting in
            defer { waiting.changes = []; waiting.since = [] }
            return (waiting.changes, waiting.since)
        }
        let all = before + changes
        let since = beforeSince + Array(repeating: now, count: changes.count)
        let flushAll = barrier || changes.contains { $0.isBarrier }
        let limit = now.uptimeNanoseconds - Self.nanoseconds(Self.maximumWait)
        let needed = StoreChange.needed(all)
        // A task whose attempt ends or whose result is written gets its waiting changes written
        // with it, so that its stored count always matches its attempt log.
        var settled = Set<TaskQueue.Key>()
        for position in needed where !all[position].mayWait {
            if let key = all[position].taskKey { settled.insert(key) }
        }
        var toWrite: [StoreChange] = []
        var oldestWaited: DispatchTime?
        var toWait: [StoreChange] = []
        var toWaitSince: [DispatchTime] = []
        for position in needed {
            let change = all[position]
            let mayWait = change.mayWait && !(change.taskKey.map(settled.contains) ?? false)
            if !flushAll && mayWait && since[position].uptimeNanoseconds > limit && toWait.count < Self.maximumWaiting {
                toWait.append(change)
                toWaitSince.append(since[position])
            } else {
                toWrite.append(change)
                if position < before.count, oldestWaited.map({ since[position] < $0 }) ?? true { oldestWaited = since[position] }
            }
        }
        do {
            try store.write(toWrite)
        } catch {
            // Nothing was written: what waited waits on; the caller keeps `changes`.
            waiting.withLockedValue { waiting in
                waiting.changes = before + waiting.changes
                waiting.since = beforeSince + waiting.since
            }
            throw error
        }
        waiting.withLockedValue { waiting in
            waiting.changes = toWait
            waiting.since = toWaitSince
        }
        return (!toWrite.isEmpty, oldestWaited)
    }

    /// Times a write that wrote something, from the oldest change it wrote (`since`: when the
    /// batch's own first change was enqueued).
    private func recordCommit(of written: (wrote: Bool, oldestWaited: DispatchTime?), since: DispatchTime? = nil) {
        guard written.wrote, let metrics, let oldest = [since, written.oldestWaited].compactMap({ $0 }).min() else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        metrics.recordCommit(nanoseconds: now > oldest.uptimeNanoseconds ? now - oldest.uptimeNanoseconds : 0)
    }

    /// Writes every waiting change (on the committer's queue).
    private func writeWaiting() {
        do {
            try write([], barrier: true)
        } catch {
            failed(error)
        }
    }

    /// A write of waiting changes failed: they wait on while the disk is full; the server
    /// stops for any other failure.
    private func failed(_ error: any Error) {
        if store?.isFull(error) ?? false {
            diskFilled(error)
        } else {
            onFailure(error)
        }
    }

    /// The disk is full: the first time, the reserve goes, the broker stops taking new tasks,
    /// and the disk is watched until it has room again.
    private func diskFilled(_ error: any Error) {
        let reason = "\(error)"
        let first = storageFull.withLockedValue { full -> Bool in
            defer { full = reason }
            return full == nil
        }
        guard first else { return }
        reserve?.release()
        storageHandler.withLockedValue { $0 }?(reason)
        watchForRoom()
    }

    /// Until the disk has room for the reserve twice over, looks again every half second; then
    /// makes the reserve again and lets the broker take new tasks.
    private func watchForRoom() {
        queue.asyncAfter(deadline: .now() + .milliseconds(500)) { [weak self] in
            guard let self, !self.closed.withLockedValue({ $0 }) else { return }
            guard self.reserve?.refill() ?? true else {
                self.watchForRoom()
                return
            }
            self.storageFull.withLockedValue { $0 = nil }
            self.storageHandler.withLockedValue { $0 }?(nil)
        }
    }

    /// Whether the disk is full now, and why: for the server's start.
    var storageFullReason: String? { storageFull.withLockedValue { $0 } }

    /// Makes the reserve at start-up; without room for it, the server starts as if the disk
    /// had just filled.
    func prepareReserve() {
        guard let reserve, !reserve.refill() else { return }
        storageFull.withLockedValue { $0 = "less than \(2 * reserve.size / 1_048_576) MiB free on the store's disk" }
        watchForRoom()
    }

    /// When changes wait and no batch follows, writes them once they are old enough.
    private func scheduleWaitingWrite() {
        let schedule = waiting.withLockedValue { waiting -> Bool in
            guard !waiting.changes.isEmpty, !waiting.timerSet else { return false }
            waiting.timerSet = true
            return true
        }
        guard schedule else { return }
        queue.asyncAfter(deadline: .now() + Self.maximumWait) { [weak self] in
            guard let self, !self.closed.withLockedValue({ $0 }) else { return }
            self.waiting.withLockedValue { $0.timerSet = false }
            do {
                self.recordCommit(of: try self.write([], barrier: false))
            } catch {
                self.failed(error)
            }
            self.scheduleWaitingWrite()
        }
    }

    private static func nanoseconds(_ interval: DispatchTimeInterval) -> UInt64 {
        switch interval {
        case .seconds(let value): UInt64(value) * 1_000_000_000
        case .milliseconds(let value): UInt64(value) * 1_000_000
        case .microseconds(let value): UInt64(value) * 1_000
        case .nanoseconds(let value): UInt64(value)
        default: 0
        }
    }

    /// Work that needs the store's current content (on the committer's queue) or waits for a write.
    private func perform(_ work: Broker.AfterWrite) {
        switch work {
        case .resumeReading(let channel):
            channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        case .loadPayloads(let keys):
            guard let store else { return }
            do {
                let payloads = try store.payloads(keys)
                loadedHandler.withLockedValue { $0 }?(payloads)
            } catch {
                onFailure(error)
            }
        case .sendAttempts(let jobID, let index, let channel, let requestID):
            let frames: [Frame]
            if let store {
                do {
                    let records = try store.attempts(jobID: jobID, index: index)
                    frames = stride(from: 0, to: records.count, by: 1024).map {
                        Broker.frame(.attempts(Array(records[$0..<min($0 + 1024, records.count)])), requestID: requestID)
                    } + [Broker.frame(.done, requestID: requestID)]
                } catch {
                    frames = [Broker.frame(.error(code: .providerFailed, message: "cannot read the attempt log: \(error)"), requestID: requestID)]
                }
            } else {
                frames = [Broker.frame(
                    .error(code: .invalidArgument, message: "this server keeps no attempt log: start it with a store (--store FILE)"),
                    requestID: requestID)]
            }
            Self.perform(frames.map { (channel, $0) })
        case .sendTasks(let jobID, let channel, let requestID):
            let frames: [Frame]
            if let store {
                do {
                    let tasks = try store.tasks(jobID: jobID)
                    frames = stride(from: 0, to: tasks.count, by: 1024).map {
                        Broker.frame(.tasks(Array(tasks[$0..<min($0 + 1024, tasks.count)])), requestID: requestID)
                    } + [Broker.frame(.done, requestID: requestID)]
                } catch {
                    frames = [Broker.frame(.error(code: .providerFailed, message: "cannot read the job's tasks: \(error)"), requestID: requestID)]
                }
            } else {
                frames = [Broker.frame(
                    .error(code: .invalidArgument, message: "this server keeps no tasks once they are done: start it with a store (--store FILE)"),
                    requestID: requestID)]
            }
            Self.perform(frames.map { (channel, $0) })
        }
    }

    /// Writes frames, in order per channel, with one flush per channel; off its event loop, one
    /// hop to the loop per channel instead of one per frame.
    static func perform(_ outputs: [Broker.Output]) {
        guard outputs.count > 1 else {
            if let output = outputs.first { output.channel.writeAndFlush(output.frame, promise: nil) }
            return
        }
        var order: [ObjectIdentifier] = []
        var byChannel: [ObjectIdentifier: (channel: any Channel, frames: [Frame])] = [:]
        for output in outputs {
            let id = ObjectIdentifier(output.channel)
            if byChannel[id] == nil {
                order.append(id)
                byChannel[id] = (output.channel, [])
            }
            byChannel[id]!.frames.append(output.frame)
        }
        for id in order {
            let (channel, frames) = byChannel[id]!
            if channel.eventLoop.inEventLoop {
                writeAndFlush(frames, to: channel)
            } else {
                channel.eventLoop.execute { writeAndFlush(frames, to: channel) }
            }
        }
    }

    private static func writeAndFlush(_ frames: [Frame], to channel: any Channel) {
        for frame in frames { channel.write(frame, promise: nil) }
        channel.flush()
    }
}
