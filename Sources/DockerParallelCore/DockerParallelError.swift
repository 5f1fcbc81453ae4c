/// The error every DockerParallel module throws: a code to match on, a message a person can act
/// on, and an optional underlying cause.
public struct DockerParallelError: Error, Sendable, CustomStringConvertible {
    /// What kind of problem this is. A struct of static values, so codes can grow.
    public struct Code: Hashable, Sendable, Codable, CustomStringConvertible {
        /// The code's name.
        public let name: String
        /// Creates a code.
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// An argument or input is not acceptable.
        public static let invalidArgument = Code("invalidArgument")
        /// The cluster with this name does not exist.
        public static let clusterNotFound = Code("clusterNotFound")
        /// The server is not running.
        public static let serverNotRunning = Code("serverNotRunning")
        /// The server could not start.
        public static let serverStartFailed = Code("serverStartFailed")
        /// A connection could not be made or was lost.
        public static let connectionFailed = Code("connectionFailed")
        /// The password was wrong or missing.
        public static let authenticationFailed = Code("authenticationFailed")
        /// A message could not be read.
        public static let protocolViolation = Code("protocolViolation")
        /// A task name is not registered in the worker.
        public static let unknownTask = Code("unknownTask")
        /// A task's input or output could not be encoded or decoded.
        public static let codingFailed = Code("codingFailed")
        /// One or more tasks failed.
        public static let tasksFailed = Code("tasksFailed")
        /// The job was cancelled.
        public static let cancelled = Code("cancelled")
        /// The provider does not support this operation.
        public static let unsupported = Code("unsupported")
        /// A provider operation failed.
        public static let providerFailed = Code("providerFailed")
        /// Something did not happen in time.
        public static let timedOut = Code("timedOut")
        /// The cluster is in a state where the operation is not allowed.
        public static let invalidState = Code("invalidState")
        /// The server's disk is full: it takes no new work until space returns.
        public static let storageFull = Code("storageFull")
    }

    /// The kind of problem.
    public var code: Code
    /// What went wrong and what to do next.
    public var message: String
    /// The error that caused this one, if any.
    public var underlying: (any Error & Sendable)?

    /// Creates an error.
    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        if let underlying { return "\(message) (\(underlying))" }
        return message
    }
}
