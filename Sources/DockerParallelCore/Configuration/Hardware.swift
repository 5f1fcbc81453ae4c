/// The hardware a server or worker container asks for.
///
/// CPU is counted in units where 1024 is one core, as in the original DockerParallel and in ECS.
public struct Hardware: Sendable, Hashable, Codable {
    /// CPU units; 1024 units are one core.
    public var cpu: Int
    /// Memory in megabytes.
    public var memory: Int
    /// An optional provider-specific hardware id (an instance type, a node pool).
    public var id: String?

    /// Creates a hardware request.
    /// - Parameters:
    ///   - cpu: CPU units, 1024 per core.
    ///   - memory: Memory in MB.
    ///   - id: A provider-specific id, or `nil`.
    public init(cpu: Int, memory: Int, id: String? = nil) {
        self.cpu = cpu
        self.memory = memory
        self.id = id
    }

    /// The default worker hardware: one core and 2048 MB.
    public static let defaultWorker = Hardware(cpu: 1024, memory: 2048)
    /// The default server hardware: a quarter core and 2048 MB.
    public static let defaultServer = Hardware(cpu: 256, memory: 2048)
}
