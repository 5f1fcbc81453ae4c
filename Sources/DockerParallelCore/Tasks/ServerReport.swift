import Foundation

/// What the server reports of itself.
public struct ServerReport: Sendable, Codable, Equatable {
    /// One connected worker.
    public struct Worker: Sendable, Codable, Equatable {
        /// Its name.
        public var name: String
        /// Its slots.
        public var slots: Int
        /// Tasks it runs now.
        public var running: Int
        /// Creates a worker entry.
        public init(name: String, slots: Int, running: Int) {
            self.name = name
            self.slots = slots
            self.running = running
        }
    }

    /// The job queue name.
    public var jobQueueName: String
    /// How long the server has been running (since its last start).
    public var uptime: Duration
    /// How many times the server was started again on its store after its first start (killed,
    /// crashed, or its machine gone): its tasks and results carried on each time.
    public var restarts: Int
    /// When the server started on its store for the first time; `nil` without a store.
    public var firstStarted: Date?
    /// Connected workers.
    public var workers: [Worker]
    /// Jobs on the server.
    public var jobs: [JobStatus]
    /// The worker number last asked of the server (HTTP API, `scale`), which a supervisor
    /// applies; `nil` when none was asked since the server started.
    public var desiredWorkers: Int?

    /// Creates a report.
    public init(
        jobQueueName: String, uptime: Duration, restarts: Int = 0, firstStarted: Date? = nil, workers: [Worker],
        jobs: [JobStatus]
    ) {
        self.jobQueueName = jobQueueName
        self.uptime = uptime
        self.restarts = restarts
        self.firstStarted = firstStarted
        self.workers = workers
        self.jobs = jobs
    }

    /// The total worker slots connected.
    public var workerSlots: Int { workers.reduce(0) { $0 + $1.slots } }

    private enum CodingKeys: String, CodingKey {
        case jobQueueName, uptime, restarts, firstStarted, workers, jobs, desiredWorkers
    }

    /// Decodes a report; the uptime is a number of seconds on the wire, the first start seconds
    /// since 1970.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        jobQueueName = try container.decode(String.self, forKey: .jobQueueName)
        let seconds = try container.decode(Double.self, forKey: .uptime)
        guard let uptime = Duration(checkedSeconds: seconds) else {
            throw DecodingError.dataCorruptedError(forKey: .uptime, in: container, debugDescription: "an uptime of \(seconds) s is out of range")
        }
        self.uptime = uptime
        restarts = try container.decodeIfPresent(Int.self, forKey: .restarts) ?? 0
        firstStarted = try container.decodeIfPresent(Double.self, forKey: .firstStarted).map(Date.init(timeIntervalSince1970:))
        workers = try container.decode([Worker].self, forKey: .workers)
        jobs = try container.decode([JobStatus].self, forKey: .jobs)
        desiredWorkers = try container.decodeIfPresent(Int.self, forKey: .desiredWorkers)
    }

    /// Encodes a report; the uptime as a number of seconds.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(jobQueueName, forKey: .jobQueueName)
        try container.encode(uptime.inSeconds, forKey: .uptime)
        try container.encode(restarts, forKey: .restarts)
        try container.encodeIfPresent(firstStarted?.timeIntervalSince1970, forKey: .firstStarted)
        try container.encode(workers, forKey: .workers)
        try container.encode(jobs, forKey: .jobs)
        try container.encodeIfPresent(desiredWorkers, forKey: .desiredWorkers)
    }
}
