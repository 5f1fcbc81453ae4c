import NIOCore

/// A task executor that runs jobs on one NIO event loop.
///
/// Code of a task that prefers it (nonisolated async code, continuations resumed from a read)
/// runs on the loop's thread: work that a channel's read starts goes on there without waking a
/// thread of the shared pool, and writes from it need no hop back to the loop. Only short work
/// belongs here; anything that blocks or computes for long stalls every channel of the loop.
@available(macOS 15, *)
package final class EventLoopTaskExecutor: TaskExecutor {
    /// The loop that runs the jobs.
    package let eventLoop: any EventLoop

    /// Creates an executor on `eventLoop`.
    package init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        // On the loop's own thread this only queues the job; from elsewhere it wakes the loop.
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
