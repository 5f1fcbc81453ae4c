import DockerParallelCore
@testable import ECSProvider
import Testing

@Suite struct FargateSizeTests {
    @Test(arguments: [
        (0, 0, 256, 512),
        (256, 2048, 256, 2048),
        (256, 2049, 512, 3072),
        (1024, 2048, 1024, 2048),
        (1000, 100, 1024, 2048),
        (1024, 9000, 2048, 9216),
        (4096, 30720, 4096, 30720),
        (4096, 30721, 8192, 32768),
        (16384, 122880, 16384, 122880),
    ])
    func hardwareIsRoundedUpToAValidCombination(cpu: Int, memory: Int, wantedCPU: Int, wantedMemory: Int) throws {
        let size = try FargateSize(Hardware(cpu: cpu, memory: memory))
        #expect(size.cpu == wantedCPU && size.memory == wantedMemory, "\(size)")
    }

    @Test func everyCombinationIsItsOwnSize() throws {
        for (cpu, memories) in FargateSize.combinations {
            for memory in memories {
                let size = try FargateSize(holding: cpu, memory: memory)
                #expect(size.cpu == cpu && size.memory == memory)
            }
        }
    }

    @Test func tooMuchIsRefusedWithFargatesLimits() {
        #expect {
            try FargateSize(holding: 32768, memory: 1024)
        } throws: { error in
            "\(error)".contains("16384 units") && "\(error)".contains("122880 MB")
        }
        #expect(throws: DockerParallelError.self) { try FargateSize(holding: 1024, memory: 200_000) }
    }

    @Test func describesItselfInVCPUs() {
        #expect("\(try! FargateSize(holding: 256, memory: 512))" == "0.25 vCPU, 512 MB")
        #expect("\(try! FargateSize(holding: 2048, memory: 4096))" == "2 vCPU, 4096 MB")
    }
}

@Suite struct ECSNamesTests {
    @Test func namesFollowTheQueue() {
        let names = ECSNames(queue: "squares")
        #expect(names.cluster == "dockerparallel-squares")
        #expect(names.serverFamily == "dockerparallel-squares-server")
        #expect(names.workerFamily == "dockerparallel-squares-worker")
        #expect(names.secret == "dockerparallel/squares")
        #expect(names.logGroup == "/dockerparallel/squares")
        #expect(names.executionRole == "dockerparallel-squares-execution")
        #expect(names.tags == ["dockerparallel:queue": "squares", "dockerparallel:managed-by": "dockerparallel"])
    }

    @Test func aChangedNameGetsADigestSoTwoQueuesNeverShareOne() {
        let dotted = ECSNames(queue: "a.b")
        let dashed = ECSNames(queue: "a-b")
        #expect(dotted.slug.hasPrefix("a-b-"))
        #expect(dotted.cluster != dashed.cluster)
        #expect(dotted.secret == "dockerparallel/a.b")
    }

    @Test func roleNamesStayWithinIAMsLimit() {
        let long = ECSNames(queue: String(repeating: "q", count: 64))
        #expect(long.executionRole.count <= 64)
        #expect(long.executionRole != ECSNames(queue: String(repeating: "q", count: 63)).executionRole)
    }

    @Test func theTaskDefinitionFamilyIsReadFromItsARN() {
        #expect(ECSProvider.family(ofTaskDefinition: "arn:aws:ecs:us-east-1:1:task-definition/dockerparallel-a-worker:12") == "dockerparallel-a-worker")
    }
}
