import Foundation

/// How a worker talks to the long-lived process of a ``TaskSpec/Kind/process(argv:environment:)``
/// task (an R or Python interpreter that stays up between tasks).
///
/// The worker starts the process once per slot and keeps it while tasks of the same program come.
/// The process reads frames on descriptor 3 and writes frames on descriptor 4; its standard output
/// and error are captured as a command's, for the task it is running. Every frame is
/// `length: UInt32 (big-endian) | type: UInt8 | payload`, where `length` counts the type and the
/// payload:
///
/// - `H` (process → worker), once, when the process is ready; the payload is ignored.
/// - `T` (worker → process), a task: `attempt: UInt32 | index: UInt32 | jobIDLength: UInt16 |
///   jobID (UTF-8) | input`, every number big-endian.
/// - `R` (process → worker): the task succeeded; the payload is its output.
/// - `F` (process → worker): the task failed: `flags: UInt8 | message (UTF-8)`; flag bit 0 says
///   retrying cannot help.
///
/// A process that exits or stops answering during a task fails that attempt (and is started
/// again for the next); one that exits before it is ready fails the task for good, with the end
/// of its standard error; a reply over ``outputLimit`` fails the task for good.
package enum PersistentProcessProtocol {
    /// The frame types.
    package static let ready: UInt8 = UInt8(ascii: "H")
    package static let task: UInt8 = UInt8(ascii: "T")
    package static let result: UInt8 = UInt8(ascii: "R")
    package static let failure: UInt8 = UInt8(ascii: "F")
    /// The largest output a task may return.
    package static let outputLimit = 32 * 1024 * 1024
    /// How long a process has to say it is ready, unless `DOCKERPARALLEL_PROCESS_START_SECONDS`
    /// says otherwise.
    package static let defaultStartSeconds: Double = 120

    /// A `T` frame's payload.
    package static func taskPayload(jobID: String, index: Int, attempt: Int, input: Data) -> Data {
        var data = Data()
        func append<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.bigEndian) { data.append(contentsOf: $0) }
        }
        append(UInt32(truncatingIfNeeded: attempt))
        append(UInt32(truncatingIfNeeded: index))
        let id = Data(jobID.utf8)
        append(UInt16(truncatingIfNeeded: id.count))
        data.append(id)
        data.append(input)
        return data
    }

    /// A frame: its header, then the payload.
    package static func frame(_ type: UInt8, _ payload: Data) -> Data {
        var data = Data()
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: payload.count + 1).bigEndian) { data.append(contentsOf: $0) }
        data.append(type)
        data.append(payload)
        return data
    }
}
