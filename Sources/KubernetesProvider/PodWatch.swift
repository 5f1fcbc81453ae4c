import DockerParallelCore
import Foundation
import Logging
import ProviderKit

/// A cluster's pods as the API server last told them, kept current by a watch: a list, then a
/// watch from the list's resource version, watched again from the last version it saw when it
/// ends, and listed again when the API answers that the version is too old (410 Gone) or the
/// stream breaks. Readers wait for a change instead of polling.
package actor PodWatch {
    private let client: KubernetesClient
    private let selector: LabelSelector
    private let logger: Logger
    private let watchTimeout: Duration
    private var pods: [String: Pod] = [:]
    private var isLive = false
    private var generation = 0
    private var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var nextWaiter = 0
    private var isStopped = false
    private let loop = LoopHandle()

    /// Creates a watch of the pods with these labels; it starts with the first read.
    package init(client: KubernetesClient, selector: LabelSelector, logger: Logger, watchTimeout: Duration = .seconds(240)) {
        self.client = client
        self.selector = selector
        self.logger = logger
        self.watchTimeout = watchTimeout
    }

    deinit { loop.cancel() }

    /// The pods now, from the watch; while it cannot list (the API fails), or once stopped, from
    /// a list of its own, which throws the API's error.
    package func current() async throws -> [Pod] {
        start()
        if !isLive, !isStopped { await waitForChange(until: ContinuousClock.now + .seconds(5)) }
        if isLive { return Array(pods.values) }
        return try await client.list(Pod.self, .pods, selector: selector).items
    }

    /// Waits until the pods change or `deadline` passes.
    package func waitForChange(until deadline: ContinuousClock.Instant) async {
        start()
        let seen = generation
        let id = nextWaiter
        nextWaiter += 1
        let timer = Task { [weak self] in
            try? await Task.sleep(until: deadline)
            await self?.wake(id)
        }
        await withCheckedContinuation { continuation in
            if generation != seen || ContinuousClock.now >= deadline {
                continuation.resume()
            } else {
                waiters[id] = continuation
            }
        }
        timer.cancel()
    }

    /// Stops watching for good: later reads list the pods themselves.
    package func stop() {
        isStopped = true
        loop.cancel()
        isLive = false
        changed()
    }

    /// Stops watching, from anywhere (the provider's `deinit`).
    package nonisolated func cancel() { loop.cancel() }

    private func wake(_ id: Int) {
        waiters.removeValue(forKey: id)?.resume()
    }

    private func changed() {
        generation += 1
        let waiting = waiters
        waiters = [:]
        for continuation in waiting.values { continuation.resume() }
    }

    /// Starts the watch's loop once. The loop holds the watch only for one list-and-watch
    /// cycle at a time, so a watch nobody holds any more ends after its cycle (or at once, by
    /// ``cancel()`` from its provider's `deinit`).
    private func start() {
        guard !isStopped, !loop.isStarted else { return }
        loop.start { [weak self] in
            var failures = 0
            while !Task.isCancelled, let watch = self {
                failures = await watch.cycle(failures: failures)
            }
        }
    }

    private func replace(_ items: [Pod]) {
        pods = Dictionary(items.compactMap { pod in pod.metadata.name.map { ($0, pod) } }, uniquingKeysWith: { _, new in new })
        isLive = true
        changed()
    }

    private func apply(_ type: String, _ pod: Pod) {
        guard let name = pod.metadata.name else { return }
        switch type {
        case "ADDED", "MODIFIED": pods[name] = pod
        case "DELETED": pods[name] = nil
        default: return
        }
        changed()
    }

    private func broke() {
        isLive = false
        changed()
    }

    /// Lists the pods, then watches them until the watch ends or fails; returns the number of
    /// failures in a row, after waiting a backoff for them.
    private func cycle(failures: Int) async -> Int {
        do {
            let (items, listVersion) = try await client.list(Pod.self, .pods, selector: selector)
            replace(items)
            var version = listVersion
            while !Task.isCancelled {
                let lines = try await client.watch(.pods, selector: selector, resourceVersion: version, timeout: watchTimeout)
                for try await line in lines {
                    version = try handle(line) ?? version
                }
                // The watch's time ran out: go on from the last version seen.
                guard version != nil else { break }
            }
            return 0
        } catch is CancellationError {
            return failures
        } catch {
            if error is WatchExpired {
                logger.debug("the pods' watch expired (410 Gone): listing them again")
            } else {
                broke()
                logger.debug("the pods' watch broke: watching again", metadata: ["error": "\(error)"])
            }
            // A first expiry lists again at once; repeated ones, and failures, back off.
            if failures > 0 || !(error is WatchExpired) {
                try? await Task.sleep(for: .milliseconds(min(5000, 250 << min(failures + 1, 5))))
            }
            return failures + 1
        }
    }

    /// Applies one event; returns the resource version it carries.
    private func handle(_ line: Data) throws -> String? {
        struct Head: Decodable { var type: String }
        let head = try JSONDecoder().decode(Head.self, from: line)
        switch head.type {
        case "ERROR":
            let status = try? JSONDecoder().decode(WatchEvent<APIStatus>.self, from: line).object
            if status?.code == 410 { throw WatchExpired() }
            throw DockerParallelError(
                .providerFailed, "the pods' watch failed: \(status?.message ?? String(decoding: line, as: UTF8.self))")
        case "BOOKMARK":
            struct Bookmark: Decodable { var object: Meta }
            struct Meta: Decodable { var metadata: ObjectMeta }
            return try? JSONDecoder().decode(Bookmark.self, from: line).object.metadata.resourceVersion
        default:
            let event = try JSONDecoder().decode(WatchEvent<Pod>.self, from: line)
            // The selector is checked here too: an API that ignores it (the test emulator) sends every pod.
            if selector.matches(event.object.metadata.labels) { apply(event.type, event.object) }
            return event.object.metadata.resourceVersion
        }
    }
}

/// The task of a watch's loop, cancellable from outside the actor.
final class LoopHandle: @unchecked Sendable {
    // Every access to `task` holds `lock`.
    private let lock = NSLock()
    private var task: Task<Void, Never>?

    var isStarted: Bool { lock.withLock { task != nil } }

    func start(_ body: @escaping @Sendable () async -> Void) {
        lock.withLock { if task == nil { task = Task { await body() } } }
    }

    func cancel() {
        lock.withLock { task?.cancel() }
    }
}
