import Foundation

/// The names and tags of what the provider makes for one cluster (job queue).
///
/// AWS names allow fewer characters than cluster names and IAM's are short: a name that had to
/// change (a `.` replaced, shortened) gets a digest of the queue name, so two queues never share one.
package struct ECSNames: Sendable, Equatable {
    /// The job queue name.
    package let queue: String
    /// The queue as AWS names take it: letters, digits, `-` and `_`.
    package let slug: String

    /// The tag every resource carries with the queue's name.
    package static let queueTag = "dockerparallel:queue"
    /// The tag of what DockerParallel made (and so may delete).
    package static let managedByTag = "dockerparallel:managed-by"
    /// `server` or `worker`, on tasks.
    package static let componentTag = "dockerparallel:component"
    /// The worker slots a worker task runs.
    package static let workersTag = "dockerparallel:workers"
    /// The server's port, on its task.
    package static let portTag = "dockerparallel:port"
    /// The `startedBy` of every task.
    package static let startedBy = "dockerparallel"
    /// The prefix of every cluster's secret.
    package static let secretPrefix = "dockerparallel/"

    /// Names for a queue.
    package init(queue: String) {
        self.queue = queue
        let cleaned = String(queue.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" })
        slug = cleaned == queue ? queue : "\(cleaned)-\(Self.digest(queue, length: 6))"
    }

    /// The ECS cluster made when none is configured.
    package var cluster: String { "dockerparallel-\(slug)" }
    /// The server's task definition family.
    package var serverFamily: String { "dockerparallel-\(slug)-server" }
    /// The workers' task definition family.
    package var workerFamily: String { "dockerparallel-\(slug)-worker" }
    /// The security group.
    package var securityGroup: String { "dockerparallel-\(slug)" }
    /// The CloudWatch Logs group.
    package var logGroup: String { "/dockerparallel/\(queue)" }
    /// The Secrets Manager secret with the password, the TLS keys and the static data.
    package var secret: String { Self.secretPrefix + queue }
    /// The task execution role (IAM names: at most 64 characters).
    package var executionRole: String {
        let name = "dockerparallel-\(slug)-execution"
        guard name.count > 64 else { return name }
        return "dockerparallel-\(slug.prefix(28))-\(Self.digest(queue, length: 8))-execution"
    }

    /// The tags of everything made for the queue.
    package var tags: [String: String] { [Self.queueTag: queue, Self.managedByTag: "dockerparallel"] }

    /// Tags as ECS spells them, sorted.
    func ecsTags(_ extra: [String: String] = [:]) -> [ECSTag] {
        tags.merging(extra) { $1 }.sorted { $0.key < $1.key }.map { ECSTag(key: $0.key, value: $0.value) }
    }

    /// FNV-1a of the text, in hex, cut to `length`.
    static func digest(_ text: String, length: Int) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(String(hash, radix: 16).suffix(length))
    }
}
