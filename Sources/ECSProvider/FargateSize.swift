import DockerParallelCore

/// A task size Fargate accepts: CPU units and memory in MiB, from its table of valid
/// combinations.
///
/// Fargate runs a task only at one of its combinations (0.25 vCPU with 0.5, 1 or 2 GB; 1 vCPU
/// with 2 to 8 GB in 1 GB steps; …; 16 vCPU with 32 to 120 GB in 8 GB steps). A request is
/// rounded up to the smallest combination that holds it, CPU first.
public struct FargateSize: Sendable, Hashable, CustomStringConvertible {
    /// CPU units, 1024 a vCPU.
    public var cpu: Int
    /// Memory in MiB.
    public var memory: Int

    /// Every valid combination, by CPU, memory ascending.
    public static let combinations: [(cpu: Int, memory: [Int])] = [
        (256, [512, 1024, 2048]),
        (512, Array(stride(from: 1024, through: 4096, by: 1024))),
        (1024, Array(stride(from: 2048, through: 8192, by: 1024))),
        (2048, Array(stride(from: 4096, through: 16384, by: 1024))),
        (4096, Array(stride(from: 8192, through: 30720, by: 1024))),
        (8192, Array(stride(from: 16384, through: 61440, by: 4096))),
        (16384, Array(stride(from: 32768, through: 122880, by: 8192))),
    ]

    /// The smallest valid size that holds `cpu` units and `memory` MiB.
    /// - Throws: `.invalidArgument` when no Fargate task is that large, naming the largest.
    public init(holding cpu: Int, memory: Int) throws {
        for (units, memories) in Self.combinations where units >= cpu {
            if let fitting = memories.first(where: { $0 >= memory }) {
                self.cpu = units
                self.memory = fitting
                return
            }
        }
        throw DockerParallelError(
            .invalidArgument,
            "no Fargate task has \(cpu) CPU units and \(memory) MB: Fargate's largest is 16384 units (16 vCPU) with up to 122880 MB, and 4096 units hold at most 30720 MB. Ask less CPU or memory per container.")
    }

    /// The size for a container asking `hardware` (a size of 0 asks the least).
    public init(_ hardware: Hardware) throws {
        try self.init(holding: hardware.cpu, memory: hardware.memory)
    }

    /// "1 vCPU, 2048 MB".
    public var description: String {
        let vcpu = cpu % 1024 == 0 ? "\(cpu / 1024)" : String(Double(cpu) / 1024)
        return "\(vcpu) vCPU, \(memory) MB"
    }
}
