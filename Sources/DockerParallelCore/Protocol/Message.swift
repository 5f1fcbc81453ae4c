import Foundation

/// The role a connection plays.
package enum PeerRole: String, Sendable, Codable {
    /// A program that submits work and collects results.
    case client
    /// A worker that leases and runs tasks.
    case worker
}

/// The first message on every connection.
package struct Hello: Sendable, Codable, Equatable {
    /// The wire protocol version the peer speaks.
    package var protocolVersion: Int
    /// What the peer is.
    package var role: PeerRole
    /// The cluster password.
    package var password: String
    /// A name for status output.
    package var name: String
    /// Worker slots (workers only).
    package var slots: Int
    /// The Swift tasks the worker can run (workers only).
    package var taskNames: [String]

    /// The protocol version this build speaks.
    package static let currentProtocolVersion = 3

    /// Creates a hello.
    package init(role: PeerRole, password: String, name: String, slots: Int = 0, taskNames: [String] = []) {
        self.protocolVersion = Self.currentProtocolVersion
        self.role = role
        self.password = password
        self.name = name
        self.slots = slots
        self.taskNames = taskNames
    }
}

/// A message to the server.
package enum ClientMessage: Sendable, Codable, Equatable {
    /// Authenticates the connection; must come first.
    case hello(Hello)
    /// Adds tasks to a job; idempotent per (job, index).
    case submit(jobID: String, options: JobOptions, tasks: [TaskSpec])
    /// A worker can take `count` more tasks.
    case credit(count: Int)
    /// A worker still runs these leases.
    case heartbeat(leaseIDs: [LeaseID])
    /// A worker's report of one attempt.
    case complete(leaseID: LeaseID, jobID: String, index: Int, report: AttemptReport)
    /// A worker's reports of several attempts, with the credit their freed slots give back.
    case completed([Completion], credit: Int)
    /// A worker hands these leases back unfinished.
    case release(leaseIDs: [LeaseID])
    /// Streams a job's results: those committed already, then each new one.
    case watch(jobID: String)
    /// Submits a whole job and watches it, in one message: no `submitted` reply, the results and
    /// statuses stream as for ``watch(jobID:)`` (the first status with the first results), and
    /// the server forgets the job once every task has succeeded (a job with a failed task
    /// stays, to be retried). A small `map` in one round trip.
    case run(jobID: String, options: JobOptions, tasks: [TaskSpec])
    /// Cancels a job, or one of its tasks.
    case cancel(jobID: String, index: Int?)
    /// Starts no more of a job's tasks (`--halt soon`): queued ones are cancelled, workers hand
    /// back those they hold but have not started (cancelled too), running ones finish. Replies
    /// `job`.
    case stopStarting(jobID: String)
    /// Removes a job and its results from the server.
    case forget(jobID: String)
    /// Queues a job's failed and cancelled tasks again (all of them, or these indices).
    case retry(jobID: String, indices: [Int]?)
    /// Asks for the server's status.
    case status
    /// Streams the attempt log of a job, or of one of its tasks: `attempts` replies, then `done`.
    case attempts(jobID: String, index: Int?)
    /// Streams a job's tasks as submitted (their commands, or Swift tasks and inputs), by index:
    /// `tasks` replies, then `done`. A server with a store keeps them; one without cannot answer.
    case tasks(jobID: String)
    /// Asks for this many workers. The server only records the number (it reports it as
    /// ``ServerReport/desiredWorkers``): whoever supervises the cluster (`dockerparallel
    /// supervise`, `DockerCluster.supervise(followingRequests: true)`) starts or stops workers to match. Replies `status`.
    case setWorkers(count: Int)
}

extension ClientMessage {
    /// Whether the message adds tasks (`submit` or `run`): the server reads nothing more from
    /// the connection until they are stored.
    package var isSubmit: Bool {
        switch self {
        case .submit, .run: true
        default: false
        }
    }
}

/// A message from the server.
package enum ServerMessage: Sendable, Codable, Equatable {
    /// The hello was accepted.
    case welcome(leaseDuration: Double)
    /// A request failed, or the connection is being closed.
    case error(code: DockerParallelError.Code, message: String)
    /// A submit was stored.
    case submitted(accepted: Int, duplicates: Int)
    /// Tasks for a worker.
    case assign([Assignment])
    /// Leases a worker must stop running, without reporting them (their tasks were cancelled).
    case abort(leaseIDs: [LeaseID])
    /// Leases a worker gives back (`release`) unless it has started them: their job starts no
    /// more tasks, and those it started finish.
    case handBack(leaseIDs: [LeaseID])
    /// Results of a watched job.
    case results([TaskResult])
    /// The state of a job; sent after results while watching, and in reply to cancel.
    case job(JobStatus)
    /// A request that needs no other answer was done.
    case done
    /// The server's status.
    case status(ServerReport)
    /// Part of a job's attempt log, oldest first.
    case attempts([AttemptRecord])
    /// Part of a job's tasks, by index.
    case tasks([TaskSpec])
}
