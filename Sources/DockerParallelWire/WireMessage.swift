import DockerParallelCore
import Foundation
import NIOCore

/// A message with a compact binary layout for its frequent cases; the others stay JSON.
///
/// A binary body starts with its case's tag byte; a JSON body starts with `{` (0x7B), which no
/// tag uses, so a reader tells them apart by the first byte.
package protocol WireMessage: Codable {
    /// Writes the binary layout, tag first; returns `false` for a case that is sent as JSON.
    func encodeBinary(into writer: inout WireWriter) -> Bool
    /// Reads the case with this tag.
    static func decodeBinary(tag: UInt8, from reader: inout WireReader) throws -> Self
}

extension ClientMessage: WireMessage {
    private enum Tag: UInt8 {
        case credit = 1, complete, completed, submit, heartbeat, release, run
    }

    package func encodeBinary(into writer: inout WireWriter) -> Bool {
        switch self {
        case .credit(let count):
            writer.byte(Tag.credit.rawValue)
            writer.int(count)
        case .complete(let leaseID, let jobID, let index, let report):
            writer.byte(Tag.complete.rawValue)
            writer.completion(Completion(leaseID: leaseID, jobID: jobID, index: index, report: report))
        case .completed(let completions, let credit):
            writer.byte(Tag.completed.rawValue)
            writer.array(completions) { $0.completion($1) }
            writer.int(credit)
        case .submit(let jobID, let options, let tasks):
            writer.byte(Tag.submit.rawValue)
            writer.string(jobID)
            writer.options(options)
            writer.array(tasks) { $0.taskSpec($1) }
        case .run(let jobID, let options, let tasks):
            writer.byte(Tag.run.rawValue)
            writer.string(jobID)
            writer.options(options)
            writer.array(tasks) { $0.taskSpec($1) }
        case .heartbeat(let leaseIDs):
            writer.byte(Tag.heartbeat.rawValue)
            writer.array(leaseIDs) { $0.lease($1) }
        case .release(let leaseIDs):
            writer.byte(Tag.release.rawValue)
            writer.array(leaseIDs) { $0.lease($1) }
        default:
            return false
        }
        return true
    }

    package static func decodeBinary(tag: UInt8, from reader: inout WireReader) throws -> ClientMessage {
        switch Tag(rawValue: tag) {
        case .credit?:
            return .credit(count: try reader.int())
        case .complete?:
            let completion = try reader.completion()
            return .complete(leaseID: completion.leaseID, jobID: completion.jobID, index: completion.index, report: completion.report)
        case .completed?:
            return .completed(try reader.array { try $0.completion() }, credit: try reader.int())
        case .submit?:
            return .submit(jobID: try reader.string(), options: try reader.options(), tasks: try reader.array { try $0.taskSpec() })
        case .run?:
            return .run(jobID: try reader.string(), options: try reader.options(), tasks: try reader.array { try $0.taskSpec() })
        case .heartbeat?:
            return .heartbeat(leaseIDs: try reader.array { try $0.lease() })
        case .release?:
            return .release(leaseIDs: try reader.array { try $0.lease() })
        case nil:
            throw WireReader.malformed("unknown client message tag \(tag)")
        }
    }
}

extension ServerMessage: WireMessage {
    private enum Tag: UInt8 {
        case assign = 0x81, results, job, submitted, abort
    }

    package func encodeBinary(into writer: inout WireWriter) -> Bool {
        switch self {
        case .assign(let assignments):
            writer.byte(Tag.assign.rawValue)
            writer.array(assignments) { $0.assignment($1) }
        case .results(let results):
            writer.byte(Tag.results.rawValue)
            writer.array(results) { $0.result($1) }
        case .job(let status):
            writer.byte(Tag.job.rawValue)
            writer.status(status)
        case .submitted(let accepted, let duplicates):
            writer.byte(Tag.submitted.rawValue)
            writer.int(accepted)
            writer.int(duplicates)
        case .abort(let leaseIDs):
            writer.byte(Tag.abort.rawValue)
            writer.array(leaseIDs) { $0.lease($1) }
        default:
            return false
        }
        return true
    }

    package static func decodeBinary(tag: UInt8, from reader: inout WireReader) throws -> ServerMessage {
        switch Tag(rawValue: tag) {
        case .assign?: return .assign(try reader.array { try $0.assignment() })
        case .results?: return .results(try reader.array { try $0.result() })
        case .job?: return .job(try reader.status())
        case .submitted?: return .submitted(accepted: try reader.int(), duplicates: try reader.int())
        case .abort?: return .abort(leaseIDs: try reader.array { try $0.lease() })
        case nil: throw WireReader.malformed("unknown server message tag \(tag)")
        }
    }
}

