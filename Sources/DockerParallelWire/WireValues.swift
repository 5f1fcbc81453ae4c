import DockerParallelCore
import Foundation
import NIOCore

// The binary layout of the values inside messages.

extension WireWriter {
    mutating func lease(_ id: LeaseID) {
        varint(id.rawValue)
    }

    mutating func taskSpec(_ spec: TaskSpec) {
        int(spec.index)
        switch spec.kind {
        case .command(let argv, let environment):
            byte(0)
            program(argv, environment)
        case .process(let argv, let environment):
            byte(3)
            program(argv, environment)
        case .swift(let name):
            byte(1)
            string(name)
        case .swiftChunk(let name):
            byte(2)
            string(name)
        }
        data(spec.input)
    }

    private mutating func program(_ argv: [String], _ environment: [String: String]) {
        array(argv) { $0.string($1) }
        array(environment.sorted { $0.key < $1.key }) {
            $0.string($1.key)
            $0.string($1.value)
        }
    }

    mutating func options(_ options: JobOptions) {
        int(options.maxAttempts)
        int(options.failureRetries)
        optional(options.timeout?.inSeconds) { $0.double($1) }
    }

    mutating func report(_ report: AttemptReport) {
        byte((report.succeeded ? 1 : 0) | (report.permanent ? 2 : 0))
        optional(report.exitCode) { $0.int(Int($1)) }
        data(report.output)
        data(report.errorOutput)
        optional(report.error) { $0.string($1) }
    }

    mutating func result(_ result: TaskResult) {
        string(result.jobID.rawValue)
        int(result.index)
        byte(result.status.wireTag)
        int(result.attempts)
        optional(result.exitCode) { $0.int(Int($1)) }
        data(result.output)
        data(result.errorOutput)
        optional(result.error) { $0.string($1) }
    }

    mutating func status(_ status: JobStatus) {
        string(status.jobID.rawValue)
        for count in [status.total, status.queued, status.running, status.succeeded, status.failed, status.cancelled] {
            int(count)
        }
    }

    mutating func assignment(_ assignment: Assignment) {
        lease(assignment.leaseID)
        string(assignment.jobID)
        taskSpec(assignment.task)
        int(assignment.attempt)
        optional(assignment.timeout) { $0.double($1) }
    }

    mutating func completion(_ completion: Completion) {
        lease(completion.leaseID)
        string(completion.jobID)
        int(completion.index)
        report(completion.report)
    }
}

extension WireReader {
    mutating func lease() throws -> LeaseID {
        LeaseID(try varint())
    }

    mutating func taskSpec() throws -> TaskSpec {
        let index = try int()
        let kind: TaskSpec.Kind
        switch try byte() {
        case 0:
            let (argv, environment) = try program()
            kind = .command(argv: argv, environment: environment)
        case 3:
            let (argv, environment) = try program()
            kind = .process(argv: argv, environment: environment)
        case 1:
            kind = .swift(name: try string())
        case 2:
            kind = .swiftChunk(name: try string())
        case let tag:
            throw Self.malformed("unknown task kind \(tag)")
        }
        return TaskSpec(index: index, kind: kind, input: try data())
    }

    private mutating func program() throws -> (argv: [String], environment: [String: String]) {
        let argv = try array { try $0.string() }
        let pairs = try array { (try $0.string(), try $0.string()) }
        return (argv, Dictionary(pairs, uniquingKeysWith: { _, last in last }))
    }

    mutating func options() throws -> JobOptions {
        let maxAttempts = try int()
        let failureRetries = try int()
        let timeout = try optional { reader -> Duration in
            let seconds = try reader.double()
            guard let duration = Duration(checkedSeconds: seconds) else { throw Self.malformed("a timeout of \(seconds) s is out of range") }
            return duration
        }
        return JobOptions(maxAttempts: maxAttempts, failureRetries: failureRetries, timeout: timeout)
    }

    mutating func report() throws -> AttemptReport {
        let flags = try byte()
        guard flags < 4 else { throw Self.malformed("unknown report flags \(flags)") }
        return AttemptReport(
            succeeded: flags & 1 != 0, permanent: flags & 2 != 0, exitCode: try optional { try $0.int32() },
            output: try data(), errorOutput: try data(), error: try optional { try $0.string() })
    }

    mutating func result() throws -> TaskResult {
        let jobID = try string()
        let index = try int()
        guard let status = TaskStatus(wireTag: try byte()) else { throw Self.malformed("unknown task status") }
        return TaskResult(
            jobID: JobID(jobID), index: index, status: status, attempts: try int(), exitCode: try optional { try $0.int32() },
            output: try data(), errorOutput: try data(), error: try optional { try $0.string() })
    }

    mutating func status() throws -> JobStatus {
        var status = JobStatus(jobID: JobID(try string()))
        status.total = try int()
        status.queued = try int()
        status.running = try int()
        status.succeeded = try int()
        status.failed = try int()
        status.cancelled = try int()
        return status
    }

    mutating func assignment() throws -> Assignment {
        Assignment(
            leaseID: try lease(), jobID: try string(), task: try taskSpec(), attempt: try int(),
            timeout: try optional { try $0.double() })
    }

    mutating func completion() throws -> Completion {
        Completion(leaseID: try lease(), jobID: try string(), index: try int(), report: try report())
    }
}

extension TaskStatus {
    var wireTag: UInt8 {
        switch self {
        case .succeeded: 0
        case .failed: 1
        case .cancelled: 2
        }
    }

    init?(wireTag: UInt8) {
        switch wireTag {
        case 0: self = .succeeded
        case 1: self = .failed
        case 2: self = .cancelled
        default: return nil
        }
    }
}

extension TaskSpec.Kind {
    /// Reads a kind kept in the wire's task layout, as stores of wire protocol 2 kept them.
    package static func decodeWireLayout(_ data: Data) throws -> TaskSpec.Kind {
        try data.withUnsafeBytes { buffer in
            var reader = WireReader(buffer)
            return try reader.taskSpec().kind
        }
    }
}
