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
    /// How long the server has been running.
    public var uptime: Duration
    /// Connected workers.
    public var workers: [Worker]
    /// Jobs on the server.
    public var jobs: [JobStatus]

    /// Creates a report.
    public init(jobQueueName: String, uptime: Duration, workers: [Worker], jobs: [JobStatus]) {
        self.jobQueueName = jobQueueName
        self.uptime = uptime
        self.workers = workers
        self.jobs = jobs
    }

    /// The total worker slots connected.
    public var workerSlots: Int { workers.reduce(0) { $0 + $1.slots } }

    private enum CodingKeys: String, CodingKey {
        case jobQueueName, uptime, workers, jobs
    }

    /// Decodes a report; the uptime is a number of seconds on the wire.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        jobQueueName = try container.decode(String.self, forKey: .jobQueueName)
        let seconds = try container.decode(Double.self, forKey: .uptime)
        guard let uptime = Duration(checkedSeconds: seconds) else {
            throw DecodingError.dataCorruptedError(forKey: .uptime, in: container, debugDescription: "an uptime of \(seconds) s is out of range")
        }
        self.uptime = uptime
        workers = try container.decode([Worker].self, forKey: .workers)
        jobs = try container.decode([JobStatus].self, forKey: .jobs)
    }

    /// Encodes a report; the uptime as a number of seconds.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(jobQueueName, forKey: .jobQueueName)
        try container.encode(uptime.inSeconds, forKey: .uptime)
        try container.encode(workers, forKey: .workers)
        try container.encode(jobs, forKey: .jobs)
    }
}
